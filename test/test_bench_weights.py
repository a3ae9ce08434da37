"""egnet_core.deploy.bench_weights: the bench's trained weights are trained once per configuration and code
version, reused after, and never half written."""

import logging
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import with_sigint_default

from egnet_core.cli import main
from egnet_core.deploy.bench_weights import (
    CHECKPOINT_NAME,
    CODE_PARTS,
    bench_weights,
    cache_key,
    code_digest,
    default_cache_dir,
)
from egnet_core.engine.scene_training import DEMO_TRAINING, SceneRecipe
from egnet_core.model.checkpoint import load_model

ROOT = Path(__file__).resolve().parent.parent
# The demo's recipe made tiny: a ResNet-18 at output stride 32 on five 96×64 scenes, two iterations.
TINY = SceneRecipe(overrides=(*DEMO_TRAINING, "model.output_stride=32", "data.crop_size=64", "data.workers=0",
                              "optim.batch_size=2"), iterations=2, train_scenes=4, val_scenes=1, size=(96, 64))


def test_a_configuration_trains_once_and_later_runs_reuse_its_checkpoint(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="egnet_core.deploy.bench_weights")
    first = bench_weights(TINY, tmp_path / "cache", device="cpu")
    assert not first.reused and first.checkpoint == tmp_path / "cache" / first.key / CHECKPOINT_NAME
    assert load_model(first.checkpoint).config.output_stride == 32
    written = first.checkpoint.stat()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.key]  # the training folder is gone
    caplog.clear()

    second = bench_weights(TINY, tmp_path / "cache", device="cpu")
    assert second.reused and second.checkpoint == first.checkpoint and second.key == first.key
    again = second.checkpoint.stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert f"reusing {first.checkpoint}" in caplog.text and "training" not in caplog.text
    assert second.describe() == f"trained 2 it on generated scenes (cache key {first.key})"


def test_another_config_scenes_device_or_code_gives_another_key():
    key = cache_key(TINY, device="cpu", code="a")
    assert cache_key(SceneRecipe(**vars(TINY)), device="cpu", code="a") == key
    others = [
        cache_key(SceneRecipe(**{**vars(TINY), "overrides": (*TINY.overrides, "optim.lr=0.01")}), device="cpu",
                  code="a"),
        cache_key(SceneRecipe(**{**vars(TINY), "iterations": 3}), device="cpu", code="a"),
        cache_key(SceneRecipe(**{**vars(TINY), "seed": 1}), device="cpu", code="a"),
        cache_key(SceneRecipe(**{**vars(TINY), "size": (128, 64)}), device="cpu", code="a"),
        cache_key(TINY, device="cuda", code="a"),
        cache_key(TINY, device="cpu", code="b"),
    ]
    assert len({key, *others}) == 7


def test_the_code_digest_changes_with_the_model_source(tmp_path):
    package = ROOT / "egnet_core"
    copy = tmp_path / "egnet_core"
    for part in CODE_PARTS:
        if part.endswith(".py"):
            copy.mkdir(exist_ok=True)
            shutil.copy(package / part, copy / part)
        else:
            shutil.copytree(package / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_digest(copy) == code_digest(package)
    with (copy / "model" / "egnet.py").open("a") as file:
        file.write("\n# a change to the model\n")
    assert code_digest(copy) != code_digest(package)


# Trains TINY for a long schedule into the cache argv[1] and logs to stderr; the test interrupts it.
TRAIN_FOREVER = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    from egnet_core.deploy.bench_weights import bench_weights
    from egnet_core.engine.scene_training import DEMO_TRAINING, SceneRecipe
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    recipe = SceneRecipe(overrides=(*DEMO_TRAINING, "model.output_stride=32", "data.crop_size=64", "data.workers=0",
                                    "optim.batch_size=2"), iterations=100_000, train_scenes=4, val_scenes=1,
                         size=(96, 64))
    bench_weights(recipe, Path(sys.argv[1]), device="cpu")
""")


@pytest.mark.integration
def test_an_interrupted_training_leaves_nothing_to_reuse(tmp_path):
    cache = tmp_path / "cache"
    process = subprocess.Popen(with_sigint_default([sys.executable, "-c", TRAIN_FOREVER, str(cache)]),
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        seen = []
        for line in process.stderr:  # the run has begun training once the trainer logs its first line
            seen.append(line)
            if line.startswith("INFO:egnet_core.engine.train:training "):
                break
        else:
            pytest.fail("the training never started:\n" + "".join(seen))
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    [key_folder] = cache.iterdir()  # the training folder beside it is removed
    assert list(key_folder.iterdir()) == []


def test_an_unwritable_cache_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder\n")
    cache = tmp_path / "a-file" / "cache"
    with pytest.raises(OSError, match=f"the bench weights cache '{cache}' is not writable .*--weights-cache"):
        bench_weights(TINY, cache, device="cpu")
    assert main(["bench", "--out", str(tmp_path / "bench"), "--weights-cache", str(cache), "--only",
                 "resnet18-os16", "--device", "cpu"]) == 2
    assert f"egnet bench: error: the bench weights cache '{cache}' is not writable" in capsys.readouterr().err


def test_the_default_cache_follows_xdg():
    assert default_cache_dir({"XDG_CACHE_HOME": "/var/cache/me"}) == Path("/var/cache/me/egnet/bench-weights")
    assert default_cache_dir({}) == Path.home() / ".cache" / "egnet" / "bench-weights"
