import cv2
import numpy as np
import pytest
import torch

from egnet_core.data.exposure import ExposureHealth, bin_names, exposure_bins, exposure_map, exposure_map_torch


def test_exposure_map_is_opencv_hsv_value_channel():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    value = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 2].astype(np.float32) / 255
    np.testing.assert_array_equal(exposure_map(image), value)
    # The channel order does not matter: V is the maximum of the three.
    np.testing.assert_array_equal(exposure_map(image[..., ::-1]), value)


def test_numpy_and_torch_paths_agree_exactly():
    images = np.random.default_rng(1).integers(0, 256, (2, 19, 23, 3), dtype=np.uint8)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)
    from_uint8 = exposure_map_torch(batch)
    from_float = exposure_map_torch(batch.float() / 255)
    assert from_uint8.shape == (2, 1, 19, 23)
    for index, image in enumerate(images):
        np.testing.assert_array_equal(from_uint8[index, 0].numpy(), exposure_map(image))
        np.testing.assert_array_equal(from_float[index, 0].numpy(), exposure_map(image))


def test_every_8bit_level_falls_in_its_tenth():
    levels = np.arange(256, dtype=np.uint8)
    exposure = exposure_map(np.repeat(levels[None, :, None], 3, axis=2))[0]
    expected = np.minimum(levels.astype(int) * 10 // 255, 9)
    np.testing.assert_array_equal(exposure_bins(exposure), expected)
    np.testing.assert_array_equal(exposure_bins(torch.from_numpy(exposure)).numpy(), expected)


def test_bins_are_half_open_except_the_last():
    values = np.array([0.0, 0.0999, 0.1, 0.5, 0.8999, 0.9, 0.95, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(exposure_bins(values), [0, 0, 1, 5, 8, 9, 9, 9])
    assert bin_names()[0] == "[0.0, 0.1)" and bin_names()[-1] == "[0.9, 1.0]"
    assert len(bin_names(5)) == 5


@pytest.mark.parametrize("bad", [np.array([-0.1, 0.5]), np.array([0.5, 1.5]), torch.tensor([2.0])])
def test_exposure_outside_unit_interval_is_an_error(bad):
    with pytest.raises(ValueError, match="exposure values must lie in"):
        exposure_bins(bad)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match=r"H×W×3 image, got shape \(4, 4\)"):
        exposure_map(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 image, got dtype float32"):
        exposure_map(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"B×3×H×W images, got shape \(1, 4, 5, 5\)"):
        exposure_map_torch(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError, match="torch.int32"):
        exposure_map_torch(torch.zeros(1, 3, 5, 5, dtype=torch.int32))


def test_exposure_health_counts_the_darkest_and_brightest_bins():
    exposure = np.array([[0.0, 0.0999, 0.1, 0.5], [0.8999, 0.9, 1.0, 0.5]], np.float32)
    health = ExposureHealth.of(exposure)
    assert health.dark_share == 2 / 8  # V < 0.1
    assert health.bright_share == 2 / 8  # V >= 0.9
    assert health.mean == pytest.approx(exposure.mean())
    with pytest.raises(ValueError, match="non-empty exposure map, got shape \\(0, 4\\)"):
        ExposureHealth.of(np.zeros((0, 4), np.float32))
