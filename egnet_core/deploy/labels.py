"""Labels from logits at any resolution: resized bilinearly to the network's input size, then to the output size,
and the class of the largest logit, the first of tied maxima (as ``argmax``).

At 1024×512 the 19-class logits are 40 MB of float32: resizing them into a fresh tensor (page faults included)
and reading them back for the maximum cost 45–55 ms per frame on a 2-core CPU, as much as an int8 ResNet-18's
convolutions. ``LabelMaps(compiled=True)`` runs the same function through ``torch.compile``, which fuses the resize
and the maximum into one pass that never stores the full-size logits (14–18 ms; the same labels on every pixel
measured, benchmarks/RESULTS.md). The Segmenter's compiled CPU paths and int8 files use it, with networks that
return their logits at the last stage's resolution.

Where the logits are enlarged by a whole factor per axis straight to the output size (a network's output stride, the
frames at its input size: the bench's, a camera's whose size the network takes), the compiled pass is
``upsampled_label_map`` instead: each output row or column is a fixed blend of three neighbouring input ones (one of
the three weights zero), so the resize is broadcasting over shifted copies that Inductor vectorises, with no gathered
loads; it blends as ``F.interpolate`` does, width first, its values within a few units in the last place of
``F.interpolate``'s (the order of the roundings differs). Measured on a 2-core Xeon with AMX (2026-12-02, fourth
session): 1×19×32×64 to 1024×512 in 2.8 ms against 13.8 ms for the compiled ``label_map``, the same labels.
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


def upsampled_label_map(logits: torch.Tensor, output_hw: tuple[int, int]) -> torch.Tensor:
    """``label_map(logits, output_hw, output_hw)`` where ``output_hw`` is a whole multiple of the logits' h×w, as
    three shifted copies per axis (the module docstring's); a size that is not one is refused."""
    logits = logits.float()
    return _enlarged(_enlarged(logits, output_hw[1], dim=3), output_hw[0], dim=2).max(dim=1).indices.to(torch.uint8)


def whole_multiples(logits_hw: tuple[int, int], output_hw: tuple[int, int]) -> bool:
    """Whether ``output_hw`` is a whole multiple (1 included) of ``logits_hw`` on each axis."""
    return all(size >= low and size % low == 0 for low, size in zip(logits_hw, output_hw, strict=True))


def _enlarged(x: torch.Tensor, size: int, *, dim: int) -> torch.Tensor:
    """``x`` bilinearly resized along ``dim`` (align_corners=False) to ``size``, a whole multiple of its length n:
    output i = a·x[k-1] + b·x[k] + c·x[k+1], k = i // factor, the ends replicated."""
    n = x.shape[dim]
    if size % n:
        raise ValueError(f"the fused labels' resize enlarges by whole factors, got {n} to {size}")
    weights = _blend_weights(n, size, x.device).view(3, n, size // n, *([1] * (x.dim() - dim - 1)))
    padded = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim=dim)
    left, middle, right = (padded.narrow(dim, start, n).unsqueeze(dim + 1) for start in range(3))
    return (left * weights[0] + middle * weights[1] + right * weights[2]).flatten(dim, dim + 1)


def _blend_weights(n: int, size: int, device: torch.device) -> torch.Tensor:
    """3×size: the weights of x[k-1], x[k], x[k+1] for each output index, F.interpolate's source indices and
    lambdas (align_corners=False): source = (i + ½)·n/size - ½, at least 0; its floor i0 and i0 + 1, clamped."""
    index = torch.arange(size, device=device)
    source = ((index.float() + 0.5) * (n / size) - 0.5).clamp_min(0)
    first = source.floor().clamp_max(n - 1)
    second_weight = (source - first).clamp(0, 1)
    slot = first.long() - index // (size // n) + 1  # 0 or 1: x[k-1] or x[k]; i0 + 1 is the next slot
    weights = torch.zeros(3, size, device=device)
    weights[slot, index] = 1 - second_weight
    weights[slot + 1, index] = second_weight  # past the end: the replicated last value, as the clamped index
    return weights


class LabelMaps:
    """``label_map``, eager or through ``torch.compile`` (one compilation per logits shape and sizes); compiled, logits
    enlarged by whole factors straight to the output size take ``upsampled_label_map``."""

    def __init__(self, *, compiled: bool) -> None:
        self.compiled = compiled
        self._function = torch.compile(label_map, dynamic=False) if compiled else label_map
        self._upsampled = torch.compile(upsampled_label_map, dynamic=False) if compiled else None

    def __call__(self, logits: torch.Tensor, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> torch.Tensor:
        input_hw, output_hw = tuple(input_hw), tuple(output_hw)
        if self.upsamples(tuple(logits.shape[-2:]), input_hw, output_hw):
            return self._upsampled(logits, output_hw)
        return self._function(logits, input_hw, output_hw)

    def upsamples(self, logits_hw: tuple[int, int], input_hw: tuple[int, int], output_hw: tuple[int, int]) -> bool:
        """Whether logits of ``logits_hw`` take ``upsampled_label_map``: compiled, with one resize, by whole
        factors."""
        return self._upsampled is not None and input_hw == output_hw and whole_multiples(logits_hw, output_hw)
