"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest

from egnet_core.checkpoint import save_checkpoint
from helpers import tiny_model


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", tiny_model())
