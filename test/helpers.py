"""Builders shared by the tests: small real models and checkpoints."""

from __future__ import annotations

import torch

from egnet_core.model import EGNet


def tiny_model(**overrides) -> EGNet:
    """The cheapest real EGNet: ResNet-18 at output stride 32, seeded."""
    torch.manual_seed(0)
    options = {"backbone": "resnet18", "output_stride": 32} | overrides
    return EGNet(**options).eval()
