"""Reading and writing image files, RGB in memory (OpenCV's files are BGR on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# The most pixels a camera frame may have before it is decoded: 4096×4096 holds every video format up to DCI 4K
# and 12 MP machine-vision sensors, while a frame's cost grows with its pixels, not its compressed bytes (a 1 MB
# JPEG of 8192×8192 took 12.9 GB through the network at native size). The node and `egnet bag segment` take it.
MAX_FRAME_PIXELS = 4096 * 4096


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """H×W×3 uint8 RGB; a missing or undecodable file is an error naming it."""
    return cv2.cvtColor(_read(Path(path), "image", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """H×W uint8 label map (ids as stored in the file)."""
    label = _read(Path(path), "label", cv2.IMREAD_UNCHANGED)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label {str(path)!r} must be a single-channel 8-bit image, got {label.dtype} {label.shape}")
    return label


def _read(path: Path, kind: str, flags: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {str(path)!r} does not exist")
    pixels = cv2.imread(str(path), flags)
    if pixels is None:
        raise ValueError(f"{kind} {str(path)!r} could not be decoded as an image")
    return pixels


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    converted = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), converted):
        raise OSError(f"could not write image {str(path)!r}")
    return path
