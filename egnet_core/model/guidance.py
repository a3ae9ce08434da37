"""Ways of fusing exposure features into the segmentation stream after stages 2 and 3.

``ExposureGuidance`` is the paper's Exposure Guidance Layer (Section 4.2, Eq. 1); the others are the ablations
of Tables 4 and 5. Each takes the segmentation features ``f_s`` (B×C×h×w) and the exposure features ``f_e``
(B×C×h×w from the exposure stream, or the B×1×H×W input exposure map) and returns new ``f_s``, same shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ExposureGuidance(nn.Module):
    """Eq. (1): f_s' = w1·f_s + w2·f_s ⊙ W_r, with W_r = sigmoid(W ∗ f_e + b) a soft spatial attention map."""

    def __init__(self, exposure_channels: int, *, w1: float = 1.0, w2: float = 0.3) -> None:
        super().__init__()
        # One output channel: the map weights every feature channel at a pixel alike (spatial attention).
        self.attention = nn.Conv2d(exposure_channels, 1, kernel_size=3, padding=1)
        self.w1 = w1
        self.w2 = w2

    def attention_map(self, f_e: torch.Tensor) -> torch.Tensor:
        """W_r, B×1×h×w in [0, 1]."""
        return torch.sigmoid(self.attention(f_e))

    def forward(self, f_s: torch.Tensor, f_e: torch.Tensor) -> torch.Tensor:
        return self.w1 * f_s + self.w2 * f_s * self.attention_map(f_e)


class ExposureMapAttention(nn.Module):
    """Table 5 "as Attention Map": Eq. (1) with W_r replaced by the input's exposure map, resized to h×w."""

    def __init__(self, *, w1: float = 1.0, w2: float = 0.3) -> None:
        super().__init__()
        self.w1 = w1
        self.w2 = w2

    def forward(self, f_s: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        w_r = F.interpolate(exposure, size=f_s.shape[-2:], mode="bilinear", align_corners=False)  # B×1×h×w
        return self.w1 * f_s + self.w2 * f_s * w_r


class ConcatFusion(nn.Module):
    """Table 4 "Concat": [f_s, f_e] projected back to f_s's channels by a 1×1 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, f_s: torch.Tensor, f_e: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([f_s, f_e], dim=1))


class SumFusion(nn.Module):
    """Table 4 "Sum": f_s + f_e (both streams have the same channels at every stage)."""

    def forward(self, f_s: torch.Tensor, f_e: torch.Tensor) -> torch.Tensor:
        return f_s + f_e


class NoGuidance(nn.Module):
    """The segmentation features pass through unchanged (Table 4 "w/o EGL" and the single-stream variants)."""

    def forward(self, f_s: torch.Tensor, f_e: torch.Tensor) -> torch.Tensor:
        return f_s


def build_guidance(kind: str, channels: int, *, w1: float, w2: float) -> nn.Module:
    """The fusion module named by a variant's ``guidance`` field (see ``config.VARIANTS``)."""
    if kind == "attention":
        return ExposureGuidance(channels, w1=w1, w2=w2)
    if kind == "exposure_map":
        return ExposureMapAttention(w1=w1, w2=w2)
    if kind == "concat":
        return ConcatFusion(channels)
    if kind == "sum":
        return SumFusion()
    if kind == "none":
        return NoGuidance()
    raise ValueError(f"unknown guidance kind {kind!r}")
