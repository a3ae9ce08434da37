"""RawSample -> Sample: the training augmentation and the plain conversion used for evaluation.

Training follows the paper (300×300 crops, Section 5) and common segmentation practice: random scale, pad to
the crop size, random crop, random horizontal flip. ``resize_to`` first resizes the whole image to a fixed size,
aspect ratio not kept, as testing does (1024×512 to 900×900): the network then trains on the stretch it is tested
on. Geometry is applied identically to image and label, and the exposure target is taken from the final crop's
own pixels, so all three stay aligned.

Randomness: with ``seed=None`` (use this for training) every call draws a fresh seed for a
``np.random.Generator`` from torch's global RNG. ``torch.manual_seed`` therefore fixes the augmentation, and a
DataLoader gives each worker, in each epoch, its own stream: it reseeds torch in every worker from the main
process's RNG. A fixed ``seed`` gives the transform a private stream for single-process use (tests,
previews); DataLoader workers would each replay a copy of that stream, so it is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from egnet_core.data.labels import IGNORE_INDEX
from egnet_core.data.sample import RawSample, Sample, to_sample

MIN_CROP = 32


@dataclass
class TrainTransform:
    """Resize (optional), random scale, pad, crop and flip; ``crop_size`` and ``resize_to`` are (height, width)
    or one int for a square."""

    crop_size: tuple[int, int] | int = (300, 300)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    resize_to: tuple[int, int] | int | None = None
    seed: int | None = None
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.crop_size = _size("crop_size", self.crop_size)
        if self.resize_to is not None:
            self.resize_to = _size("resize_to", self.resize_to)
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {self.scale_range}")
        self.scale_range = (float(self.scale_range[0]), float(self.scale_range[1]))
        if self.seed is not None:
            self._rng = np.random.default_rng(self.seed)

    def __call__(self, raw: RawSample) -> Sample:
        if raw.label.shape != raw.image.shape[:2]:
            raise ValueError(
                f"TrainTransform needs a label of its image's size; {raw.name!r} has a {raw.label.shape[1]}×"
                f"{raw.label.shape[0]} label for a {raw.image.shape[1]}×{raw.image.shape[0]} image"
            )
        rng = self._generator()
        image, label = raw.image, raw.label
        if self.resize_to is not None:
            image, label = _resize(image, label, self.resize_to)
        image, label = _rescale(image, label, rng.uniform(*self.scale_range))
        image, label = _pad(image, label, self.crop_size)
        image, label = _random_crop(image, label, self.crop_size, rng)
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return to_sample(image, label)

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            return np.random.default_rng(int(torch.randint(0, 2**63 - 1, ())))
        if get_worker_info() is not None:
            raise RuntimeError(
                f"TrainTransform(seed={self.seed}) would repeat one stream in every DataLoader worker; "
                "use seed=None and torch.manual_seed for reproducible multi-worker loading"
            )
        return self._rng


@dataclass(frozen=True)
class EvalTransform:
    """No augmentation: the sample at its original size (NightCity+ val keeps its 2× label)."""

    def __call__(self, raw: RawSample) -> Sample:
        return to_sample(raw.image, raw.label)


def _size(name: str, value: tuple[int, int] | int) -> tuple[int, int]:
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or any(int(side) != side or side < MIN_CROP for side in size):
        raise ValueError(f"{name} must be (height, width) of whole numbers >= {MIN_CROP}, got {value}")
    return int(size[0]), int(size[1])


def _rescale(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if scale == 1.0:
        return image, label
    height, width = label.shape
    return _resize(image, label, (max(round(height * scale), 1), max(round(width * scale), 1)))


def _resize(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Both to ``size`` (height, width)."""
    if label.shape == size:
        return image, label
    # INTER_NEAREST samples at floor(x / scale), half a pixel off the grid INTER_LINEAR uses; _EXACT takes the
    # source pixel under each output pixel's centre, the one bilinear weights most, so labels match pixels.
    return (
        cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR),  # OpenCV sizes are (width, height)
        cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST_EXACT),
    )


def _pad(image: np.ndarray, label: np.ndarray, crop: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom and right up to the crop size: black pixels, ignored labels."""
    height, width = label.shape
    rows, cols = max(crop[0] - height, 0), max(crop[1] - width, 0)
    if not (rows or cols):
        return image, label
    return (
        np.pad(image, ((0, rows), (0, cols), (0, 0)), constant_values=0),
        np.pad(label, ((0, rows), (0, cols)), constant_values=IGNORE_INDEX),
    )


def _random_crop(
    image: np.ndarray, label: np.ndarray, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    height, width = label.shape
    top, left = int(rng.integers(height - crop[0] + 1)), int(rng.integers(width - crop[1] + 1))
    window = (slice(top, top + crop[0]), slice(left, left + crop[1]))
    return image[window], label[window]
