"""Reading image and label files as cameras and annotation tools write them: 16-bit PNGs with and without an
sBIT chunk, palette label maps."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from egnet_core.data.imageio import read_label, read_rgb


def write_png(path, pixels, *, significant_bits=None):
    """``pixels`` (H×W×3 RGB, uint8 or uint16) as a PNG, with an sBIT chunk of ``significant_bits`` per colour
    right after IHDR where the PNG standard puts it (OpenCV writes none)."""
    data = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))[1].tobytes()
    if significant_bits is not None:
        body = b"sBIT" + bytes([significant_bits] * 3)
        chunk = struct.pack(">I", 3) + body + struct.pack(">I", zlib.crc32(body))
        end_of_ihdr = 8 + 8 + 13 + 4
        data = data[:end_of_ihdr] + chunk + data[end_of_ihdr:]
    path.write_bytes(data)
    return path


def ramp(top, shift=0):
    """A 2×4 RGB image of 16-bit samples: 0, a third, two thirds and ``top`` of the camera's range, shifted left."""
    row = np.array([0, top // 3, 2 * top // 3, top], np.uint16) << shift
    return np.repeat(np.stack([row, row], 0)[..., None], 3, axis=2).astype(np.uint16)


def test_a_12_bit_camera_stored_unscaled_with_sbit_fills_the_8_bit_range(tmp_path):
    path = write_png(tmp_path / "frame.png", ramp(4095), significant_bits=12)
    pixels = read_rgb(path)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 85, 170, 255])  # not its top byte, [0, 5, 10, 15]


def test_samples_scaled_to_16_bits_as_the_png_standard_asks_use_the_full_range(tmp_path):
    # 12 significant bits shifted into the top of 16, the low 4 bits zero: even a dark frame is not brightened.
    bright = read_rgb(write_png(tmp_path / "bright.png", ramp(4095, shift=4), significant_bits=12))
    dark = read_rgb(write_png(tmp_path / "dark.png", ramp(255, shift=4), significant_bits=12))
    np.testing.assert_array_equal(bright[0, :, 0], [0, 85, 170, 255])
    np.testing.assert_array_equal(dark[0, :, 0], np.round(np.array([0, 85, 170, 255]) * 16 * 255 / 65535))


def test_a_16_bit_png_without_sbit_is_scaled_from_the_full_16_bit_range(tmp_path):
    samples = np.array([[0, 448, 32896, 65535]], np.uint16)
    pixels = read_rgb(write_png(tmp_path / "frame.png", np.repeat(samples[..., None], 3, axis=2)))
    np.testing.assert_array_equal(pixels[0, :, 1], [0, 2, 128, 255])  # rounded, not cut: 448 -> 2, not 1


def test_eight_bit_images_read_as_they_are(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_rgb(write_png(tmp_path / "frame.png", pixels)), pixels)
    jpeg = tmp_path / "frame.jpg"
    cv2.imwrite(str(jpeg), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_rgb(jpeg), cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB))


def test_a_palette_label_png_reads_as_its_indices(tmp_path):
    ids = np.array([[0, 7, 26], [255, 33, 11]], np.uint8)
    picture = Image.fromarray(ids, mode="P")
    picture.putpalette([value for index in range(256) for value in (index, 255 - index, index // 2)])
    picture.save(tmp_path / "label.png")
    np.testing.assert_array_equal(read_label(tmp_path / "label.png"), ids)


def test_a_colour_label_picture_is_refused_naming_it(tmp_path):
    path = write_png(tmp_path / "label_color.png", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"label_color\.png.*single-channel 8-bit image \(grey or palette\)"):
        read_label(path)
