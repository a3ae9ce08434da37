"""Every network egnet trains and deploys, built from the model config a checkpoint carries."""

from __future__ import annotations

from egnet_core.config import ModelConfig
from egnet_core.model.baselines import TorchvisionSegmentation
from egnet_core.model.egnet import EGNet

Network = EGNet | TorchvisionSegmentation


def build_model(config: ModelConfig) -> Network:
    """EGNet (``arch: egnet``, any variant) or torchvision's DeepLabV3 or FCN (``arch: deeplabv3`` / ``fcn``)."""
    if config.arch == "egnet":
        return EGNet(
            num_classes=config.num_classes,
            backbone=config.backbone,
            output_stride=config.output_stride,
            variant=config.variant,
            backbone_weights=config.backbone_weights,
            w1=config.w1,
            w2=config.w2,
        )
    return TorchvisionSegmentation(arch=config.arch, num_classes=config.num_classes, backbone=config.backbone,
                                   backbone_weights=config.backbone_weights)
