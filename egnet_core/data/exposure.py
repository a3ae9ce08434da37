"""Exposure maps and exposure bins (Section 3 of the paper, Figure 4 and Table 2).

The exposure of a pixel is the V channel of HSV, ``max(R, G, B)``, scaled to [0, 1]. The paper divides
[0, 1] into ten equal bins; every bin is half-open except the last, which is closed ([0.9, 1.0]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NUM_BINS = 10


@dataclass(frozen=True)
class ExposureHealth:
    """How a camera's frame is exposed, from its exposure map: the shares of pixels in the darkest bin
    (V < 0.1) and in the brightest (V >= 0.9, the closed last bin), and the mean exposure."""

    dark_share: float
    bright_share: float
    mean: float

    @classmethod
    def of(cls, exposure: np.ndarray) -> ExposureHealth:
        """``exposure``: an H×W map in [0, 1] (a predicted one, or ``exposure_map`` of the frame)."""
        bins = exposure_bins(exposure)
        if not bins.size:
            raise ValueError("exposure health needs a non-empty exposure map, got shape "
                             f"{np.shape(exposure)}")
        return cls(dark_share=float((bins == 0).mean()), bright_share=float((bins == NUM_BINS - 1).mean()),
                   mean=float(np.mean(exposure, dtype=np.float64)))


def exposure_map(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 image, RGB or BGR (the maximum does not care) -> H×W float32 exposure in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"exposure_map needs an H×W×3 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"exposure_map needs a uint8 image, got dtype {image.dtype}")
    return image.max(axis=2).astype(np.float32) / np.float32(255)


def exposure_map_torch(images: torch.Tensor) -> torch.Tensor:
    """B×3×H×W images, uint8 or float in [0, 1] -> B×1×H×W float exposure; equal to ``exposure_map``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"exposure_map_torch needs B×3×H×W images, got shape {tuple(images.shape)}")
    peak = images.amax(dim=1, keepdim=True)
    if images.dtype == torch.uint8:
        return peak.to(torch.float32) / 255
    if not images.is_floating_point():
        raise ValueError(f"exposure_map_torch needs uint8 or floating-point images, got {images.dtype}")
    return peak


def exposure_bins(exposure, num_bins: int = NUM_BINS):
    """Bin index 0..num_bins-1 of each exposure value, as int64, for numpy arrays or tensors alike."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    if isinstance(exposure, torch.Tensor):
        if exposure.numel():
            _check_range(float(exposure.min()), float(exposure.max()))
        return (exposure * num_bins).floor_().clamp_(0, num_bins - 1).to(torch.int64)
    exposure = np.asarray(exposure)
    if exposure.size:
        _check_range(float(exposure.min()), float(exposure.max()))
    return np.clip(np.floor(exposure * num_bins), 0, num_bins - 1).astype(np.int64)


def bin_names(num_bins: int = NUM_BINS) -> list[str]:
    """Table 2's column names: '[0.0, 0.1)', ..., '[0.9, 1.0]'."""
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    return [
        f"[{edges[i]:.1f}, {edges[i + 1]:.1f}{']' if i == num_bins - 1 else ')'}" for i in range(num_bins)
    ]


def _check_range(low: float, high: float) -> None:
    if not (0.0 <= low and high <= 1.0):
        raise ValueError(f"exposure values must lie in [0, 1], got values from {low} to {high}")
