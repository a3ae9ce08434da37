"""The Exposure-Guided Network (Fig. 5 of the paper).

    image ─ S1 (shared) ─┬─ S2 ─ EGL ─ S3 ─ EGL ─ S4 ─ conv ─────────── logits    (segmentation stream)
                         │        ↑          ↑
                         └─ S2 ───┴── S3 ────┴─ S4 ─ conv ─ sigmoid ─── exposure  (exposure stream)

S1..S4 are stages of a torchvision ResNet (``conv1``..``layer1`` is S1, ``layer2``..``layer4`` are S2..S4);
each stream has its own copy of S2..S4, both initialised from the same backbone weights.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from egnet_core.config import ModelConfig
from egnet_core.model.backbone import build_resnet, stage_channels, widen_input
from egnet_core.model.guidance import build_guidance

# Images enter the model as RGB in [0, 1]; ImageNet normalisation happens inside, so the exposure map the
# ablations need (and an exported graph's caller) sees the raw pixels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT_SIZE = 32


class EGNetOutput(NamedTuple):
    logits: torch.Tensor  # B×num_classes×H×W
    exposure: torch.Tensor  # B×1×H×W in [0, 1]; the input's own exposure map for variants without the stream


class EGNet(nn.Module):
    """EGNet and its ablations; ``variant`` picks one of ``config.VARIANTS``.

    ``forward`` takes B×3×H×W float RGB in [0, 1] and returns an ``EGNetOutput`` at the input's size (the logits
    at the last stage's when ``logits_at_input_size`` is False).
    """

    def __init__(
        self,
        num_classes: int = 19,
        backbone: str = "resnet101",
        output_stride: int = 8,
        variant: str = "egnet",
        backbone_weights: str | None = None,
        *,
        w1: float = 1.0,
        w2: float = 0.3,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(
            num_classes=num_classes,
            backbone=backbone,
            output_stride=output_stride,
            variant=variant,
            w1=w1,
            w2=w2,
            backbone_weights=backbone_weights,
        )
        spec = self.config.spec
        resnet = build_resnet(backbone, output_stride=output_stride, weights=backbone_weights)
        _, c2, c3, c4 = stage_channels(resnet)
        conv1 = widen_input(resnet.conv1, 1) if spec.extra_input else resnet.conv1

        self.encoder = nn.Sequential(conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1)  # S1
        self.segmentation_stages = nn.ModuleList([resnet.layer2, resnet.layer3, resnet.layer4])  # S2..S4
        self.exposure_stages = copy.deepcopy(self.segmentation_stages) if spec.exposure_stream else None
        self.guidance = nn.ModuleList(
            [build_guidance(spec.guidance, c, w1=w1, w2=w2) for c in (c2, c3)]  # after S2 and S3
        )
        self.segmentation_head = nn.Conv2d(c4, num_classes, kernel_size=1)
        self.exposure_head = nn.Conv2d(c4, 1, kernel_size=1) if spec.exposure_stream else None
        # False: logits come back at the last stage's resolution, for a caller that resizes them together with
        # its labels (the Segmenter's compiled CPU paths); the exposure map is always at the input's size.
        self.logits_at_input_size = True
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> EGNetOutput:
        if not torch.jit.is_tracing():
            check_images(images)
        size = images.shape[-2:]
        input_exposure = images.amax(dim=1, keepdim=True)  # B×1×H×W, the HSV V channel
        x = (images - self.mean) / self.std
        if self.config.spec.extra_input:
            x = torch.cat([x, input_exposure], dim=1)  # B×4×H×W
        f_s = self.encoder(x)  # B×c1×H/4×W/4
        f_e = f_s if self.exposure_stages is not None else input_exposure
        for index, stage in enumerate(self.segmentation_stages):
            f_s = stage(f_s)  # B×c×H/s×W/s, s = 8, 16 or 32 depending on output_stride
            if self.exposure_stages is not None:
                f_e = self.exposure_stages[index](f_e)
            if index < len(self.guidance):
                f_s = self.guidance[index](f_s, f_e)
        logits = self.segmentation_head(f_s)
        if self.logits_at_input_size:
            logits = _upsample(logits, size)
        if self.exposure_head is None:
            return EGNetOutput(logits=logits, exposure=input_exposure)
        exposure = torch.sigmoid(_upsample(self.exposure_head(f_e), size))
        return EGNetOutput(logits=logits, exposure=exposure)

    def attention_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W_r of the EGL after stage 2 and of the one after stage 3 (Eq. 1; the paper's Figure 9), each
        B×1×h×w in [0, 1] at its stage's resolution, from one forward pass of ``images``. ValueError for a
        variant without EGLs."""
        if not self.config.has_egl:
            raise ValueError(f"EGNet variant {self.config.variant!r} has no Exposure Guidance Layer, so no attention "
                             "maps (Eq. 1): only variant 'egnet' learns them")
        maps: list[torch.Tensor] = []
        # Hooks rather than a second forward: the maps are those of the very pass that makes the logits.
        hooks = [egl.register_forward_hook(lambda egl, inputs, output: maps.append(egl.attention_map(inputs[1])))
                 for egl in self.guidance]
        try:
            self(images)
        finally:
            for hook in hooks:
                hook.remove()
        return maps[0], maps[1]


def check_images(images: torch.Tensor) -> None:
    """Raise ValueError naming the problem unless ``images`` is a B×3×H×W float batch the model accepts."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"EGNet needs a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"EGNet needs B×3×H×W RGB images, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"EGNet needs floating-point images in [0, 1], got dtype {images.dtype}")
    height, width = images.shape[-2:]
    if height < MIN_INPUT_SIZE or width < MIN_INPUT_SIZE:
        raise ValueError(f"EGNet needs images of at least {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE}, got {height}×{width}")


def _upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
