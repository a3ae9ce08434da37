"""Fixtures shared by the tests."""

from __future__ import annotations

import os

import pytest
from helpers import tiny_model

from egnet_core.model.checkpoint import save_checkpoint
from egnet_ros.dds import use_fastdds_profile

# Set before any test creates a DDS participant in this process (node processes inherit both): discovery on
# this host only, and the profile that carries camera-sized best-effort images, as the console scripts load it.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
use_fastdds_profile()


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", tiny_model())
