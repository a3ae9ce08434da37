"""How a data set's pixels spread over the exposure bins: the paper's Figure 4 (average pixels per image per bin)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from egnet_core.data.exposure import NUM_BINS, bin_names, exposure_bins, exposure_map
from egnet_core.data.sample import RawSample


@dataclass(frozen=True)
class ExposureHistogram:
    """Pixel counts per exposure bin over a set of images."""

    counts: np.ndarray  # (num_bins,) int64, pixels of all images in each bin
    images: int
    bin_names: tuple[str, ...]

    @property
    def mean_pixels_per_image(self) -> np.ndarray:
        """(num_bins,) float64: Figure 4's bar heights."""
        return self.counts / self.images

    @property
    def shares(self) -> np.ndarray:
        """(num_bins,) float64 fraction of all pixels in each bin; sums to 1."""
        return self.counts / self.counts.sum()


class ExposureCounter:
    """Pixels per exposure bin, one image at a time: for streams (a bag) that are read once."""

    def __init__(self, num_bins: int = NUM_BINS) -> None:
        if num_bins < 1:
            raise ValueError(f"num_bins must be at least 1, got {num_bins}")
        self.counts = np.zeros(num_bins, dtype=np.int64)
        self.images = 0

    def add(self, image: np.ndarray) -> None:
        """Count an H×W×3 uint8 RGB image."""
        self.counts += np.bincount(exposure_bins(exposure_map(image), len(self.counts)).ravel(),
                                   minlength=len(self.counts))
        self.images += 1

    def histogram(self) -> ExposureHistogram:
        if self.images == 0:
            raise ValueError("exposure_histogram got no images")
        return ExposureHistogram(counts=self.counts.copy(), images=self.images,
                                 bin_names=tuple(bin_names(len(self.counts))))


def exposure_histogram(dataset_or_images: Dataset | Iterable, num_bins: int = NUM_BINS) -> ExposureHistogram:
    """Count pixels per exposure bin over H×W×3 uint8 RGB images or the RawSamples of a data set.

    Data sets must be built with ``transform=None``: a transformed sample is a random crop, not the image.
    """
    counter = ExposureCounter(num_bins)
    for image in _images(dataset_or_images):
        counter.add(image)
    return counter.histogram()


def plot_exposure_histogram(
    histogram: ExposureHistogram, path: str | os.PathLike, *, title: str = "Exposure distribution"
) -> Path:
    """Write a Figure-4-style bar chart (x: exposure bins, y: average pixels per image) as a PNG; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A bare Figure renders through Agg without pyplot, so no global backend is chosen or needed.
    figure = Figure(figsize=(8, 4.5), layout="tight")
    axes = figure.add_subplot()
    axes.bar(range(len(histogram.counts)), histogram.mean_pixels_per_image, color="#4c72b0")
    axes.set_xticks(range(len(histogram.counts)), histogram.bin_names, rotation=30)
    axes.set_xlabel("Exposure level (V channel of HSV)")
    axes.set_ylabel("Average number of pixels per image")
    axes.set_title(f"{title} ({histogram.images} images)")
    figure.savefig(path, format="png", dpi=100)
    return path


def format_histogram_table(histogram: ExposureHistogram) -> str:
    """Markdown table: one row per exposure bin with the average pixels per image and the share of pixels."""
    rows = ["| Exposure | Pixels per image | Share |", "|---|---:|---:|"]
    for name, mean, share in zip(histogram.bin_names, histogram.mean_pixels_per_image, histogram.shares):
        rows.append(f"| {name} | {mean:,.0f} | {share:.2%} |")
    return "\n".join(rows)


def _images(source: Dataset | Iterable) -> Iterator[np.ndarray]:
    # Index a Dataset explicitly: torch's Dataset does not promise iteration.
    items = (source[i] for i in range(len(source))) if isinstance(source, Dataset) else source
    for item in items:
        if isinstance(item, RawSample):
            yield item.image
        elif isinstance(item, np.ndarray):
            yield item
        else:
            raise TypeError(
                f"exposure_histogram needs H×W×3 uint8 images or RawSamples, got {type(item).__name__}; "
                "build the data set with transform=None"
            )
