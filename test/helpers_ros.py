"""Builders of real sensor_msgs messages for the tests, written independently of egnet_ros."""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

# Padding bytes are set to a value no test image uses in bulk, so a conversion that reads them shows up.
PADDING_BYTE = 0xA5


def make_header(frame_id: str = "camera_optical", sec: int = 1_700_000_000, nanosec: int = 123_456_789) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec = sec
    header.stamp.nanosec = nanosec
    return header


def make_image_msg(pixels: np.ndarray, encoding: str, *, step: int | None = None, bigendian: bool = False) -> Image:
    """An Image whose rows are ``pixels`` already in the encoding's layout (H×W or H×W×bytes), padded to ``step``.

    Multi-byte samples are written in the byte order ``bigendian`` asks for.
    """
    pixels = np.asarray(pixels)
    height, width = pixels.shape[:2]
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    step = rows.shape[1] if step is None else step
    padded = np.full((height, step), PADDING_BYTE, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image(
        header=make_header(), height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=step
    )
    msg.data = array.array("B", padded.tobytes())
    return msg
