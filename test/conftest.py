"""Fixtures shared by the tests."""

from __future__ import annotations

import os

import pytest
from helpers import night_frames, tiny_model, with_running_statistics

from egnet_core.config import load_train_config
from egnet_core.data.synthetic import write_nightcity
from egnet_core.deploy.export import export_onnx
from egnet_core.engine.train import train
from egnet_core.model.checkpoint import save_checkpoint
from egnet_ros.dds import use_fastdds_profile

# Set before any test creates a DDS participant in this process (node processes inherit both): discovery on
# this host only, and the profile that carries camera-sized best-effort images, as the console scripts load it.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
use_fastdds_profile()


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", tiny_model())


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The checkpoint of ``with_running_statistics(tiny_model())`` and its static (128×64) and dynamic ONNX exports.

    Made once for the session, so tests only read them; test_export loads the PyTorch model back to compare.
    """
    root = tmp_path_factory.mktemp("export")
    checkpoint = save_checkpoint(root / "model.pt", with_running_statistics(tiny_model()))
    return {
        "checkpoint": checkpoint,
        "static": export_onnx(checkpoint, root / "static.onnx", size=(128, 64)),
        "dynamic": export_onnx(checkpoint, root / "dynamic.onnx", size=(128, 64), dynamic=True),
    }


INT8_SIZE = (128, 64)  # (width, height) of the session's int8 model


@pytest.fixture(scope="session")
def trained_int8(tmp_path_factory):
    """A tiny EGNet (ResNet-18, output stride 32) trained briefly on generated night scenes, so that its labels are
    decided by learnt margins rather than near-ties, and its PT2E int8 file at ``INT8_SIZE``, calibrated on
    generated frames of seed 1 (tests judge it on other frames)."""
    from egnet_core.deploy.int8_pt2e import quantize_pt2e  # needs the 'int8' extra

    root = tmp_path_factory.mktemp("int8")
    data = write_nightcity(root / "data", train=6, val=2, width=128, height=64, seed=0).root
    config = load_train_config(None, [
        f"data.root={data}", f"run.out_dir={root / 'run'}", "model.backbone=resnet18", "model.output_stride=32",
        "data.crop_size=64", "data.workers=0", "data.eval_size=null", "optim.batch_size=4", "optim.lr=0.02",
        "optim.iterations=40", "run.val_every=40", "run.checkpoint_every=40", "run.device=cpu",
    ])
    checkpoint = train(config).final_checkpoint
    int8 = quantize_pt2e(checkpoint, root / "int8.pt2", night_frames(16, seed=1), size=INT8_SIZE)
    return {"checkpoint": checkpoint, "int8": int8.path, "float_modules": int8.float_modules, "data": data}
