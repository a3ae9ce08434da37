"""The one-way boundary: egnet_core works where the ROS side and its packages cannot be imported."""

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from egnet_core.data.synthetic import write_nightcity

ROOT = Path(__file__).resolve().parent.parent

# Runs its argv as `egnet ...` in a Python where rclpy, rosbags and egnet_ros raise ImportError, as in an
# environment where `pip install -e .` was run without the `ros` extra.
WITHOUT_ROS = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = ("rclpy", "rosbags", "egnet_ros")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    import egnet_core
    for module in pkgutil.walk_packages(egnet_core.__path__, "egnet_core."):
        importlib.import_module(module.name)
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    from egnet_core.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _without_ros(*args, cwd):
    return subprocess.run([sys.executable, "-c", WITHOUT_ROS, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_no_egnet_core_module_names_the_ros_side():
    for path in (ROOT / "egnet_core").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in ("egnet_ros", "rclpy", "rosbags"):
            assert name not in text, f"{path.relative_to(ROOT)} names {name}"


@pytest.mark.integration
def test_core_trains_evaluates_and_predicts_without_the_ros_extra(tmp_path):
    data = write_nightcity(tmp_path / "data", train=2, val=2, width=96, height=64, seed=0).root
    trained = _without_ros(
        "train", "--set", "model.backbone=resnet18", "--set", "model.output_stride=32", "--set", "data.crop_size=64",
        "--set", "data.workers=0", "--set", "data.eval_size=null", "--set", "optim.batch_size=2",
        "--set", "optim.iterations=2", "--set", "run.val_every=2", "--set", "run.checkpoint_every=2",
        "--set", f"data.root={data}", "--set", f"run.out_dir={tmp_path / 'run'}", "--set", "run.device=cpu",
        cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (checkpoint,) = sorted((tmp_path / "run" / "checkpoints").glob("iter_*.pt"))
    evaluated = _without_ros("evaluate", "--checkpoint", checkpoint, "--data", data, "--out", tmp_path / "report",
                             "--native-size", "--device", "cpu", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "report" / "metrics.json").is_file()
    image = tmp_path / "night.png"
    cv2.imwrite(str(image), np.full((64, 96, 3), 40, np.uint8))
    predicted = _without_ros("predict", image, "--checkpoint", checkpoint, "--out", tmp_path / "labels",
                             "--device", "cpu", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (tmp_path / "labels" / "night_trainIds.png").is_file()


@pytest.mark.integration
def test_without_the_ros_extra_egnet_bag_says_what_to_install(tmp_path):
    listed = _without_ros("--help", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "bag" in listed.stdout and "needs the 'ros' extra" in listed.stdout
    for command in (["bag"], ["bag", "segment", "drive", "out", "--checkpoint", "egnet.pt"]):
        refused = _without_ros(*command, cwd=tmp_path)
        assert refused.returncode == 2
        assert "egnet bag: error:" in refused.stderr and "pip install -e '.[ros]'" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
