"""Fixtures shared by the tests."""

from __future__ import annotations

import os

import pytest
from helpers import tiny_model, with_running_statistics

from egnet_core.deploy.export import export_onnx
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
