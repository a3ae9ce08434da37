"""Labels from logits at any resolution: resized bilinearly to the network's input size, then to the output size,
and the class of the largest logit, the first of tied maxima (as ``argmax``).

At 1024×512 the 19-class logits are 40 MB of float32: resizing them into a fresh tensor (page faults included)
and reading them back for the maximum cost 45–55 ms per frame on a 2-core CPU, as much as an int8 ResNet-18's
convolutions. ``LabelMaps(compiled=True)`` runs the same function through ``torch.compile``, which fuses the resize
and the maximum into one pass that never stores the full-size logits (14–18 ms; the same labels on every pixel
measured, benchmarks/RESULTS.md). The Segmenter's compiled CPU paths and int8 files use it, with networks that
return their logits at the last stage's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_map(logits: torch.Tensor, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> torch.Tensor:
    """B×C×h×w logits (any float dtype) -> B×H×W uint8 class ids at ``output_hw``, the logits first resized in
    fp32 to ``input_hw`` (where an EGNet resizes its own) and from there to ``output_hw``."""
    logits = resize(resize(logits.float(), input_hw), output_hw)
    return logits.max(dim=1).indices.to(torch.uint8)  # max's indices are argmax's, a third of its time on NCHW


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×C×H×W bilinearly to ``size`` (height, width), the one resize of network inputs and outputs."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LabelMaps:
    """``label_map``, eager or through ``torch.compile`` (one compilation per logits shape and sizes)."""

    def __init__(self, *, compiled: bool) -> None:
        self.compiled = compiled
        self._function = torch.compile(label_map, dynamic=False) if compiled else label_map

    def __call__(self, logits: torch.Tensor, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> torch.Tensor:
        return self._function(logits, tuple(input_hw), tuple(output_hw))
