"""egnet_ros.image_conversion against messages encoded by hand from known RGB images."""

from __future__ import annotations

import array
import re

import cv2
import numpy as np
import pytest
from helpers_ros import PADDING_BYTE, make_header, make_image_msg
from sensor_msgs.msg import CompressedImage

from egnet_ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    exposure_to_image,
    image_to_rgb,
    labels_to_image,
    rgb_to_image,
)

HEIGHT, WIDTH = 6, 10
PADDING = 7  # bytes after each row in the padded variants: odd, so 16-bit rows are also misaligned


def reference_rgb(height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def padded_step(pixels: np.ndarray, padded: bool) -> int | None:
    return pixels[0].nbytes + PADDING if padded else None


def with_alpha(rgb: np.ndarray) -> np.ndarray:
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    return np.dstack([rgb, alpha])


LOSSLESS_COLOUR = {
    "rgb8": lambda rgb: rgb,
    "bgr8": lambda rgb: rgb[..., ::-1],
    "rgba8": with_alpha,
    "bgra8": lambda rgb: with_alpha(rgb[..., ::-1]),
}


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("encoding", sorted(LOSSLESS_COLOUR))
def test_colour_encodings_decode_exactly(encoding, padded):
    rgb = reference_rgb()
    pixels = LOSSLESS_COLOUR[encoding](rgb)
    msg = make_image_msg(pixels, encoding, step=padded_step(pixels, padded))

    result = image_to_rgb(msg)

    assert result.dtype == np.uint8 and result.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(result, rgb)


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_mono8_is_replicated_to_three_channels(padded):
    grey = reference_rgb()[..., 0]
    msg = make_image_msg(grey, "mono8", step=padded_step(grey, padded))

    np.testing.assert_array_equal(image_to_rgb(msg), np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("bigendian", [False, True], ids=["little", "big"])
def test_mono16_keeps_the_high_byte_in_either_byte_order(bigendian, padded):
    grey = reference_rgb()[..., 0]
    low_bytes = reference_rgb(seed=2)[..., 1]
    samples = (grey.astype(np.uint16) << 8) | low_bytes
    msg = make_image_msg(samples, "mono16", step=padded_step(samples, padded), bigendian=bigendian)

    np.testing.assert_array_equal(image_to_rgb(msg), np.repeat(grey[..., None], 3, axis=2))


def bt601_limited_range(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U (Cb), V (Cr) as uint8 by ITU-R BT.601 in limited ("studio") range, the range ROS cameras send.

    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
    U = 128 + (-37.797 R - 74.203 G + 112.0 B) / 255
    V = 128 + (112.0 R - 93.786 G - 18.214 B) / 255
    """
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return tuple(np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, u, v))


def pack_yuv422(rgb: np.ndarray, byte_order: str) -> np.ndarray:
    """H×W×2 bytes of 4:2:2 YUV; each pair of pixels shares the U and V of its left pixel."""
    y, u, v = bt601_limited_range(rgb)
    packed = np.empty(rgb.shape[:2] + (2,), dtype=np.uint8)
    flat = packed.reshape(rgb.shape[0], -1)  # per row: 4 bytes per pixel pair
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u[:, 0::2], "V": v[:, 0::2]}
    for offset, name in enumerate(byte_order):
        flat[:, offset::4] = planes[name]
    return packed


UYVY = ("U", "Y0", "V", "Y1")
YUYV = ("Y0", "U", "Y1", "V")
# 8-bit limited-range YUV has coarser steps than RGB (one Y level is 1.16 RGB levels) and OpenCV decodes in
# fixed point; together they leave at most 2 levels of error, measured over random colours.
YUV_TOLERANCE = 2


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize(
    "encoding, byte_order",
    [("yuv422", UYVY), ("uyvy", UYVY), ("yuv422_yuy2", YUYV), ("yuyv", YUYV)],
    ids=["yuv422", "uyvy", "yuv422_yuy2", "yuyv"],
)
def test_yuv422_decodes_within_rounding_of_the_reference(encoding, byte_order, padded):
    # Pixels come in equal-colour pairs, so chroma subsampling loses nothing and only rounding is left.
    rgb = np.repeat(reference_rgb(width=WIDTH // 2), 2, axis=1)
    packed = pack_yuv422(rgb, byte_order)
    msg = make_image_msg(packed, encoding, step=padded_step(packed, padded))

    result = image_to_rgb(msg)

    assert result.shape == rgb.shape
    assert np.abs(result.astype(int) - rgb.astype(int)).max() <= YUV_TOLERANCE


PATCH = 12
PATCH_COLOURS = np.array([[200, 100, 30], [20, 180, 240], [250, 250, 10], [60, 15, 130]], dtype=np.uint8)
DEMOSAIC_MARGIN = 2  # interpolation reaches across a patch edge by at most this many pixels


def flat_patches() -> np.ndarray:
    """2×2 patches of distinct flat colours, each PATCH×PATCH pixels."""
    colours = PATCH_COLOURS.reshape(2, 2, 1, 1, 3)  # patch row, patch column, pixel row, pixel column, RGB
    return np.broadcast_to(colours, (2, 2, PATCH, PATCH, 3)).transpose(0, 2, 1, 3, 4).reshape(2 * PATCH, 2 * PATCH, 3)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample ``rgb`` through a colour filter array whose top-left 2×2 block reads ``pattern`` row by row."""
    raw = np.empty(rgb.shape[:2], dtype=np.uint8)
    for index, colour in enumerate(pattern):
        row, col = divmod(index, 2)
        raw[row::2, col::2] = rgb[row::2, col::2, "rgb".index(colour)]
    return raw


def patch_interiors(margin: int) -> list[tuple[slice, slice]]:
    """Each flat patch less ``margin`` pixels at its edges, where neighbouring colours may bleed in."""
    return [
        (slice(top + margin, top + PATCH - margin), slice(left + margin, left + PATCH - margin))
        for top in (0, PATCH)
        for left in (0, PATCH)
    ]


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_demosaics_flat_patches_to_their_colour(pattern, padded):
    rgb = flat_patches()
    raw = mosaic(rgb, pattern)
    msg = make_image_msg(raw, f"bayer_{pattern}8", step=padded_step(raw, padded))

    result = image_to_rgb(msg)

    assert result.shape == rgb.shape
    for inner in patch_interiors(DEMOSAIC_MARGIN):
        np.testing.assert_array_equal(result[inner], rgb[inner], err_msg=f"patch {inner}")


def test_every_supported_encoding_is_tested_above():
    tested = set(LOSSLESS_COLOUR) | {"mono8", "mono16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv"}
    tested |= {f"bayer_{pattern}8" for pattern in ("rggb", "bggr", "gbrg", "grbg")}
    assert tested == set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_rgb8_is_a_view_of_the_message_data(padded):
    rgb = reference_rgb()
    msg = make_image_msg(rgb, "rgb8", step=padded_step(rgb, padded))
    assert isinstance(msg.data, array.array)  # what rclpy hands a subscriber: a writable buffer

    result = image_to_rgb(msg)

    assert np.shares_memory(result, np.frombuffer(msg.data, dtype=np.uint8))
    np.testing.assert_array_equal(result, rgb)


def test_converted_encodings_own_their_pixels():
    msg = make_image_msg(reference_rgb()[..., ::-1], "bgr8")

    assert not np.shares_memory(image_to_rgb(msg), np.frombuffer(msg.data, dtype=np.uint8))


def test_padding_bytes_are_never_read():
    msg = make_image_msg(np.zeros((HEIGHT, WIDTH, 3), np.uint8), "bgr8", step=WIDTH * 3 + PADDING)

    result = image_to_rgb(msg)

    assert not (result == PADDING_BYTE).any()


def test_data_longer_than_height_times_step_is_accepted():
    rgb = reference_rgb()
    msg = make_image_msg(rgb, "rgb8")
    msg.data.extend(b"\x00" * 5)

    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def bad_step():
    msg = make_image_msg(reference_rgb(), "rgb8")
    msg.step = WIDTH * 3 - 1
    return msg


def short_data():
    msg = make_image_msg(reference_rgb(), "bgr8", step=WIDTH * 3 + PADDING)
    del msg.data[-1]
    return msg


def zero_width():
    msg = make_image_msg(reference_rgb(), "rgb8")
    msg.width = 0
    return msg


def zero_height():
    msg = make_image_msg(reference_rgb(), "rgb8")
    msg.height = 0
    return msg


def unknown_encoding():
    return make_image_msg(reference_rgb(), "rgb16_foo")


def huge_claim():
    msg = make_image_msg(reference_rgb(), "rgb8")
    msg.width, msg.height, msg.step = 10000, 10000, 30000
    return msg


def odd_width_yuv():
    return make_image_msg(np.zeros((HEIGHT, 5, 2), np.uint8), "yuv422")


@pytest.mark.parametrize(
    "build, expected",
    [
        (bad_step, ["step=29", "30"]),
        (short_data, [f"{HEIGHT * (WIDTH * 3 + PADDING) - 1} bytes", f"{HEIGHT * (WIDTH * 3 + PADDING)}"]),
        (zero_width, ["width=0"]),
        (zero_height, ["height=0"]),
        (unknown_encoding, ["'rgb16_foo'", "rgb8", "bayer_grbg8"]),
        (huge_claim, ["width=10000", "height=10000", "max_frame_pixels=16777216"]),
        (odd_width_yuv, ["width=5", "yuv422"]),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_bad_messages_raise_naming_the_value(build, expected):
    with pytest.raises(ImageConversionError) as error:
        image_to_rgb(build())

    assert isinstance(error.value, ValueError)
    for text in expected:
        assert text in str(error.value)


def test_max_frame_pixels_is_configurable():
    msg = make_image_msg(reference_rgb(), "rgb8")

    with pytest.raises(ImageConversionError, match="max_frame_pixels=59"):
        image_to_rgb(msg, max_frame_pixels=HEIGHT * WIDTH - 1)
    assert image_to_rgb(msg, max_frame_pixels=HEIGHT * WIDTH).shape == (HEIGHT, WIDTH, 3)


def compressed_msg(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(header=make_header(), format=fmt)
    msg.data = array.array("B", data)
    return msg


def encode(rgb: np.ndarray, extension: str) -> bytes:
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed", "bgr8; png compressed bgr8"])
def test_png_round_trip_is_exact(fmt):
    rgb = reference_rgb(40, 30)

    np.testing.assert_array_equal(compressed_to_rgb(compressed_msg(encode(rgb, ".png"), fmt)), rgb)


@pytest.mark.parametrize("fmt", ["jpeg", "bgr8; jpeg compressed bgr8"])
def test_jpeg_round_trip_keeps_flat_colours(fmt):
    rgb = flat_patches()

    result = compressed_to_rgb(compressed_msg(encode(rgb, ".jpg"), fmt))

    assert result.shape == rgb.shape
    # JPEG is lossy and subsamples chroma; inside each patch the colour survives within a few levels (5 measured).
    for inner in patch_interiors(4):
        assert np.abs(result[inner].astype(int) - rgb[inner].astype(int)).max() <= 8, f"patch {inner}"


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\xff\xd8" + bytes(range(40)), encode(reference_rgb(), ".png")[:33] + b"\x00" * 20],
    ids=["empty", "garbage", "jpeg-start-then-garbage", "png-header-then-garbage"],
)
def test_undecodable_data_raises(data):
    with pytest.raises(ImageConversionError, match="'jpeg'"):
        compressed_to_rgb(compressed_msg(data, "jpeg"))


def claim_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with the width and height in its PNG IHDR or JPEG SOF0 header replaced; the pixels stay small."""
    patched = bytearray(data)
    if data.startswith(b"\x89PNG"):
        patched[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:
        sof = data.index(b"\xff\xc0")
        patched[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(patched)


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_compressed_size_is_refused_from_the_header(extension):
    data = claim_size(encode(reference_rgb(), extension), 10000, 10000)

    with pytest.raises(ImageConversionError, match="width=10000 × height=10000"):
        compressed_to_rgb(compressed_msg(data, extension[1:]))


def test_compressed_max_frame_pixels_is_configurable():
    msg = compressed_msg(encode(reference_rgb(), ".png"), "png")

    with pytest.raises(ImageConversionError, match="max_frame_pixels=10"):
        compressed_to_rgb(msg, max_frame_pixels=10)


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_a_frame_just_over_4096x4096_is_refused_by_default_from_its_header(extension):
    # A 1 MB JPEG of 8192×8192 cost 12.9 GB in a bag; the default bounds a frame at 4096×4096 before decoding.
    data = claim_size(encode(reference_rgb(), extension), 4097, 4096)

    with pytest.raises(ImageConversionError, match="width=4097 × height=4096 = 16781312 pixels exceeds "
                                                   "max_frame_pixels=16777216"):
        compressed_to_rgb(compressed_msg(data, extension[1:]))


def assert_header_copied(msg, header):
    assert msg.header == header
    assert msg.header is not header
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        1_700_000_000,
        123_456_789,
        "camera_optical",
    )


def test_labels_to_image_round_trips():
    labels = reference_rgb()[..., 0]
    header = make_header()

    msg = labels_to_image(labels, header)

    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == ("mono8", HEIGHT, WIDTH, WIDTH, 0)
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(HEIGHT, WIDTH), labels)
    assert_header_copied(msg, header)


def test_exposure_to_image_round_trips_little_endian():
    exposure = np.random.default_rng(3).random((HEIGHT, WIDTH), dtype=np.float32)
    header = make_header()

    msg = exposure_to_image(exposure, header)

    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == ("32FC1", HEIGHT, WIDTH, WIDTH * 4, 0)
    np.testing.assert_array_equal(np.frombuffer(msg.data, "<f4").reshape(HEIGHT, WIDTH), exposure)
    assert_header_copied(msg, header)


def test_rgb_to_image_round_trips_through_image_to_rgb():
    rgb = reference_rgb()
    header = make_header()

    msg = rgb_to_image(rgb, header)

    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == ("rgb8", HEIGHT, WIDTH, WIDTH * 3, 0)
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(HEIGHT, WIDTH, 3), rgb)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    assert_header_copied(msg, header)


def test_outputs_accept_non_contiguous_arrays():
    rgb = reference_rgb(width=2 * WIDTH)[:, ::2]

    msg = rgb_to_image(rgb, make_header())

    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(HEIGHT, WIDTH, 3), rgb)


@pytest.mark.parametrize(
    "convert, pixels, expected",
    [
        (labels_to_image, np.zeros((HEIGHT, WIDTH), np.int64), "int64"),
        (exposure_to_image, np.zeros((HEIGHT, WIDTH), np.float64), "float64"),
        (rgb_to_image, np.zeros((HEIGHT, WIDTH), np.uint8), f"({HEIGHT}, {WIDTH})"),
    ],
    ids=["labels-int64", "exposure-float64", "rgb-without-channels"],
)
def test_outputs_refuse_the_wrong_array(convert, pixels, expected):
    with pytest.raises(ImageConversionError, match=f"got .*{re.escape(expected)}"):
        convert(pixels, make_header())
