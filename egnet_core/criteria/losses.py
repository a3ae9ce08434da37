"""The training objective of Section 4.1: L = α·CE(logits, labels) + β·L1(exposure, V).

A network without an exposure stream (DeepLabV3, FCN, EGNet's single-stream variants) predicts no exposure
map: its objective is α·CE alone (``exposure_term=False``), and the L1 part is reported as 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from egnet_core.data.labels import IGNORE_INDEX
from egnet_core.model.egnet import EGNetOutput


class LossParts(NamedTuple):
    total: torch.Tensor
    segmentation: torch.Tensor  # the CE term, before α
    exposure: torch.Tensor  # the L1 term, before β


class EGNetLoss(nn.Module):
    def __init__(self, *, alpha: float = 1.0, beta: float = 0.01, ignore_index: int = IGNORE_INDEX,
                 exposure_term: bool = True) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.ignore_index = ignore_index
        self.exposure_term = exposure_term

    def forward(self, output: EGNetOutput, labels: torch.Tensor, exposure_target: torch.Tensor) -> LossParts:
        """``labels`` B×H×W int64 train ids; ``exposure_target`` B×1×H×W (or B×H×W) V channel in [0, 1]."""
        if exposure_target.ndim == 3:
            exposure_target = exposure_target.unsqueeze(1)
        if labels.shape != output.logits.shape[:1] + output.logits.shape[2:]:
            raise ValueError(f"labels of shape {tuple(labels.shape)} do not match logits {tuple(output.logits.shape)}")
        if self.exposure_term and exposure_target.shape != output.exposure.shape:
            raise ValueError(
                f"exposure target of shape {tuple(exposure_target.shape)} does not match "
                f"the predicted exposure {tuple(output.exposure.shape)}"
            )
        # Sum over labelled pixels divided by their count (at least 1): the mean CE, and 0 rather than NaN
        # for a batch whose pixels are all ignored.
        ce_sum = F.cross_entropy(output.logits, labels, ignore_index=self.ignore_index, reduction="sum")
        labelled = (labels != self.ignore_index).sum().clamp(min=1)
        segmentation = ce_sum / labelled
        if not self.exposure_term:
            return LossParts(total=self.alpha * segmentation, segmentation=segmentation,
                             exposure=segmentation.new_zeros(()))
        exposure = F.l1_loss(output.exposure, exposure_target.to(output.exposure.dtype))
        return LossParts(
            total=self.alpha * segmentation + self.beta * exposure, segmentation=segmentation, exposure=exposure
        )
