"""Conversions between ``sensor_msgs`` images and numpy arrays, in place of cv_bridge.

cv_bridge is not used because its PyPI port is broken with numpy 2, and the node needs only RGB in and
three fixed encodings out. Every bad message raises :class:`ImageConversionError` naming the bad value,
and every size is checked against the message's own metadata before any pixel memory is allocated.

Decoding reads only the messages' fields, so rclpy's messages and rosbags' (the bag tool's) both work, and
this module needs no ROS install until an rclpy message is built. Outputs are first ``ImageFields``, the
fields of a ``sensor_msgs/Image`` but its header, from which each side builds its own message type.

Copies: ``rgb8`` input comes back as a view into ``msg.data`` (rows with padding stay a strided view);
every other encoding is converted by OpenCV or numpy into a new array. The outputs copy the array into
the message.
"""

from __future__ import annotations

import array
import copy
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from egnet_core.data.imageio import MAX_FRAME_PIXELS

if TYPE_CHECKING:
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header


class ImageConversionError(ValueError):
    """A message that cannot be converted; the text names the field and its value."""


class _Layout(NamedTuple):
    bytes_per_pixel: int
    to_rgb: int | None  # OpenCV conversion code; None where image_to_rgb handles the encoding itself


# OpenCV's four-letter Bayer names (BayerRGGB = BayerBG) follow the sensor's top-left 2×2 block as ROS does;
# its older two-letter names are offset by one row and column.
# YUV 4:2:2 is decoded as BT.601 limited range, as cv_bridge does.
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, None),
    "bgr8": _Layout(3, cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, cv2.COLOR_GRAY2RGB),
    "mono16": _Layout(2, None),
    "yuv422": _Layout(2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": _Layout(2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _Layout(2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": _Layout(2, cv2.COLOR_YUV2RGB_YUY2),
    "bayer_rggb8": _Layout(1, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": _Layout(1, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": _Layout(1, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": _Layout(1, cv2.COLOR_BayerGRBG2RGB),
}
_YUV422 = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)


def image_to_rgb(msg: Image, *, max_frame_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """H×W×3 uint8 RGB from a raw image; one of more than ``max_frame_pixels`` (height*width) is refused.

    ``rgb8`` is returned as a view into ``msg.data``, not a copy: writing to it writes the message, and a caller
    that keeps it after the message is reused must copy it.
    """
    layout = _LAYOUTS.get(msg.encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    _check_size(msg.width, msg.height, max_frame_pixels)
    _check_layout(msg, layout.bytes_per_pixel)
    pixels = _pixel_view(msg, layout.bytes_per_pixel)  # H×W×bytes_per_pixel uint8
    if msg.encoding == "rgb8":
        return pixels
    if msg.encoding == "mono16":
        samples = pixels.view(">u2" if msg.is_bigendian else "<u2")[..., 0]
        return cv2.cvtColor((samples >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(pixels, layout.to_rgb)


def compressed_to_rgb(msg: CompressedImage, *, max_frame_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """H×W×3 uint8 RGB from a JPEG or PNG; the size in the stream's header is checked against
    ``max_frame_pixels`` before decoding, so a small file claiming a huge frame costs nothing.

    The stream's own signature says whether it is JPEG or PNG; ``msg.format`` is only quoted in errors, so
    formats such as ``compressedDepth`` (which prefixes the PNG with its own header) are refused as unreadable.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    size = _compressed_size(data)
    if size is None:
        raise ImageConversionError(
            f"CompressedImage (format {msg.format!r}, {data.size} bytes) is neither a JPEG nor a PNG stream "
            f"with a readable header; first bytes: {data[:8].tobytes()!r}"
        )
    _check_size(size.width, size.height, max_frame_pixels)
    rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)
    if rgb is None:
        raise ImageConversionError(
            f"CompressedImage (format {msg.format!r}, {data.size} bytes) has a {size.width}×{size.height} "
            "header but OpenCV could not decode its data"
        )
    return rgb


class ImageFields(NamedTuple):
    """A ``sensor_msgs/Image`` but its header."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray  # height*step bytes, uint8, one dimension


def labels_fields(labels: np.ndarray) -> ImageFields:
    """``mono8`` of H×W uint8 train ids."""
    _check_array("labels", labels, channels=None, dtype=np.uint8)
    return _fields(labels, "mono8")


def exposure_fields(exposure: np.ndarray) -> ImageFields:
    """``32FC1``, little-endian, of an H×W float32 exposure map."""
    _check_array("exposure", exposure, channels=None, dtype=np.float32)
    return _fields(exposure.astype("<f4", copy=False), "32FC1")


def rgb_fields(rgb: np.ndarray) -> ImageFields:
    """``rgb8`` of an H×W×3 uint8 RGB array."""
    _check_array("rgb", rgb, channels=3, dtype=np.uint8)
    return _fields(rgb, "rgb8")


def labels_to_image(labels: np.ndarray, header: Header) -> Image:
    return to_image_msg(labels_fields(labels), header)


def exposure_to_image(exposure: np.ndarray, header: Header) -> Image:
    return to_image_msg(exposure_fields(exposure), header)


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    return to_image_msg(rgb_fields(rgb), header)


def to_image_msg(fields: ImageFields, header: Header) -> Image:
    """An rclpy ``sensor_msgs/Image`` with a copy of ``header``."""
    from sensor_msgs.msg import Image  # the one place that needs rclpy's messages; see the module docstring

    msg = Image(header=copy.deepcopy(header), height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    # An array.array is the fastest value for the generated setter: with ROS_PYTHON_CHECK_FIELDS=1 it is kept
    # as is, where bytes would be checked value by value in Python (about 200 ms for a 1024×512 float image);
    # otherwise the setter copies it once more, costing the same as bytes.
    data = array.array("B")
    data.frombytes(fields.data.data)
    msg.data = data
    return msg


class _Size(NamedTuple):
    width: int
    height: int


def _check_size(width: int, height: int, max_frame_pixels: int) -> None:
    if width == 0 or height == 0:
        raise ImageConversionError(f"image has zero size: width={width}, height={height}")
    if width * height > max_frame_pixels:
        raise ImageConversionError(
            f"image of width={width} × height={height} = {width * height} pixels exceeds "
            f"max_frame_pixels={max_frame_pixels}"
        )


def _check_layout(msg: Image, bytes_per_pixel: int) -> None:
    if msg.encoding in _YUV422 and msg.width % 2:
        raise ImageConversionError(
            f"{msg.encoding} packs two pixels per U/V pair, so width must be even; got width={msg.width}"
        )
    row_bytes = msg.width * bytes_per_pixel
    if msg.step < row_bytes:
        raise ImageConversionError(
            f"step={msg.step} is smaller than width*bytes_per_pixel = {msg.width}*{bytes_per_pixel} = {row_bytes} "
            f"for encoding {msg.encoding!r}"
        )
    if len(msg.data) < msg.height * msg.step:
        raise ImageConversionError(
            f"data has {len(msg.data)} bytes, fewer than height*step = {msg.height}*{msg.step} = "
            f"{msg.height * msg.step}"
        )


def _pixel_view(msg: Image, bytes_per_pixel: int) -> np.ndarray:
    # Slicing the padded rows and splitting the last axis are both views, so no pixel is copied here.
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=msg.height * msg.step).reshape(msg.height, msg.step)
    return rows[:, : msg.width * bytes_per_pixel].reshape(msg.height, msg.width, bytes_per_pixel)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the frame size; C4, C8 and CC share the range but are other segments.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


def _compressed_size(data: np.ndarray) -> _Size | None:
    """Width and height from a PNG or JPEG header, or None where the header is not one of them.

    Read by hand because OpenCV offers no header-only size query, and decoding first would allocate
    whatever size a corrupt or hostile header claims.
    """
    head = data[:24].tobytes()
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return _Size(width=int.from_bytes(head[16:20], "big"), height=int.from_bytes(head[20:24], "big"))
    if head.startswith(b"\xff\xd8"):
        return _jpeg_frame_size(data)
    return None


def _jpeg_frame_size(data: np.ndarray) -> _Size | None:
    position = 2
    while position + 4 <= data.size:
        if data[position] != 0xFF:
            return None
        marker = int(data[position + 1])
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker in _JPEG_STANDALONE_MARKERS:
            position += 2
        elif marker in _JPEG_SOF_MARKERS:
            frame = data[position + 5 : position + 9].tobytes()
            if len(frame) < 4:
                return None
            return _Size(width=int.from_bytes(frame[2:4], "big"), height=int.from_bytes(frame[0:2], "big"))
        elif marker in (0xD9, 0xDA):  # end of image or start of scan: no frame header came first
            return None
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4].tobytes(), "big")
    return None


def _check_array(name: str, pixels: np.ndarray, *, channels: int | None, dtype: type) -> None:
    shape_ok = pixels.ndim == 2 if channels is None else pixels.ndim == 3 and pixels.shape[2] == channels
    if not shape_ok or pixels.dtype != dtype:
        expected = "H×W" if channels is None else f"H×W×{channels}"
        raise ImageConversionError(
            f"{name} must be an {expected} {np.dtype(dtype)} array, got {pixels.dtype} of shape {pixels.shape}"
        )


def _fields(pixels: np.ndarray, encoding: str) -> ImageFields:
    pixels = np.ascontiguousarray(pixels)
    return ImageFields(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                       step=pixels.strides[0], data=pixels.reshape(-1).view(np.uint8))
