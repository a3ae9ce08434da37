"""Reading and writing image files, RGB in memory (OpenCV's files are BGR on disk).

Images of more than 8 bits per sample (16-bit PNG or TIFF) are scaled to 8 bits by their significant range, not
cut to their top byte: see ``significant_bits``. Label maps are read as the numbers stored, palette PNGs as their
palette indices.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# The most pixels a camera frame may have before it is decoded: 4096×4096 holds every video format up to DCI 4K
# and 12 MP machine-vision sensors, while a frame's cost grows with its pixels, not its compressed bytes (a 1 MB
# JPEG of 8192×8192 took 12.9 GB through the network at native size). The node and `egnet bag segment` take it.
MAX_FRAME_PIXELS = 4096 * 4096

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PALETTE = 3  # PNG colour type of palette images


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """H×W×3 uint8 RGB; a missing or undecodable file is an error naming it.

    A 16-bit file is scaled from its significant range (``significant_bits``) to 0-255, rounding to nearest.
    """
    path = Path(path)
    pixels = _read(path, "image", cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if pixels.dtype == np.uint16:
        top = (1 << significant_bits(path, pixels)) - 1
        pixels = np.round(np.minimum(pixels, top) * (255.0 / top)).astype(np.uint8)
    elif pixels.dtype != np.uint8:  # 32-bit float or integer TIFFs: no camera range to scale from
        raise ValueError(f"image {str(path)!r} holds {pixels.dtype} samples; egnet reads 8- and 16-bit images")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def significant_bits(path: Path, pixels: np.ndarray) -> int:
    """How many low bits of a 16-bit image's samples carry the picture: 16, unless the PNG says otherwise.

    A PNG's ``sBIT`` chunk gives the camera's bit depth b (12 for a 12-bit sensor). The PNG standard asks for such
    samples to be scaled up to 16 bits (shifted left, the low bits zero or copies of the top ones); many camera
    tools store them unscaled instead, as 0..2^b-1. The samples say which: unscaled ones all fit in b bits and
    are not all multiples of 2^(16-b). Those are scaled from 0..2^b-1; everything else (no ``sBIT``, or samples
    scaled as the standard asks) from 0..65535.
    """
    bits = _png_significant_bits(path)
    if bits is None or bits >= 16:
        return 16
    fits = int(pixels.max()) < (1 << bits)
    shifted = not np.any(pixels & np.uint16((1 << (16 - bits)) - 1))
    return bits if fits and not shifted else 16


def read_label(path: str | os.PathLike) -> np.ndarray:
    """H×W uint8 label map: the ids as stored in the file; a palette PNG's palette indices."""
    path = Path(path)
    if _png_header(path).get("colour_type") == _PALETTE:
        # OpenCV expands a palette into colours; Pillow hands out the indices, which are the ids.
        with Image.open(path) as image:
            label = np.asarray(image)
    else:
        label = _read(path, "label", cv2.IMREAD_UNCHANGED)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(
            f"label {str(path)!r} must be a single-channel 8-bit image (grey or palette), got {label.dtype} "
            f"{label.shape}; colour pictures of labels are not label maps"
        )
    return label


def _read(path: Path, kind: str, flags: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {str(path)!r} does not exist")
    pixels = cv2.imread(str(path), flags)
    if pixels is None:
        raise ValueError(f"{kind} {str(path)!r} could not be decoded as an image")
    return pixels


def _png_header(path: Path) -> dict[str, int]:
    """``bit_depth`` and ``colour_type`` from a PNG's IHDR chunk; empty for any other file."""
    if not path.is_file():
        return {}
    with path.open("rb") as file:
        head = file.read(29)
    if len(head) < 29 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return {}
    return {"bit_depth": head[24], "colour_type": head[25]}


def _png_significant_bits(path: Path) -> int | None:
    """The largest colour entry of a PNG's sBIT chunk, None without one (Pillow and OpenCV do not report it).

    sBIT comes before the first IDAT chunk, so only the file's head is read.
    """
    with path.open("rb") as file:
        if file.read(8) != _PNG_SIGNATURE:
            return None
        while len(header := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"IDAT", b"IEND"):
                return None
            data = file.read(length)
            file.seek(4, os.SEEK_CUR)  # CRC
            if kind == b"sBIT" and data:
                # Grey: 1 byte; RGB or palette: 3; grey + alpha: 2; RGBA: 4. The alpha entry is not colour.
                colour = data[:1] if length in (1, 2) else data[:3]
                return max(colour)
    return None


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    converted = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), converted):
        raise OSError(f"could not write image {str(path)!r}")
    return path
