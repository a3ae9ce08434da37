import cv2
import numpy as np
import pytest

from egnet_core.data.exposure import bin_names
from egnet_core.data.nightcity import NightCity
from egnet_core.data.statistics import exposure_histogram, format_histogram_table, plot_exposure_histogram
from egnet_core.data.synthetic import write_nightcity
from egnet_core.data.transforms import EvalTransform


def random_images(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(count)]


def direct_counts(images, num_bins=10):
    """Count by hand: the V value of each pixel, then its tenth of [0, 255] (255 falls in the last bin)."""
    counts = np.zeros(num_bins, np.int64)
    for image in images:
        for level in image.max(axis=2).ravel():
            counts[min(int(level) * num_bins // 255, num_bins - 1)] += 1
    return counts


def test_histogram_matches_a_direct_count():
    images = random_images()
    histogram = exposure_histogram(images)
    np.testing.assert_array_equal(histogram.counts, direct_counts(images))
    assert histogram.counts.dtype == np.int64 and histogram.images == 3
    np.testing.assert_allclose(histogram.mean_pixels_per_image, direct_counts(images) / 3)
    assert histogram.shares.sum() == pytest.approx(1.0)
    assert histogram.bin_names == tuple(bin_names())
    assert len(exposure_histogram(images, num_bins=4).counts) == 4


def test_histogram_of_a_dataset_counts_its_raw_images(tmp_path):
    root = write_nightcity(tmp_path / "NightCity", train=2, val=1, width=128, height=64, seed=0).root
    dataset = NightCity(root, "train")
    histogram = exposure_histogram(dataset)
    np.testing.assert_array_equal(histogram.counts, direct_counts(sample.image for sample in dataset))
    assert histogram.images == 2 and histogram.counts.sum() == 2 * 128 * 64
    with pytest.raises(TypeError, match="transform=None"):
        exposure_histogram(NightCity(root, "train", transform=EvalTransform()))


def test_histogram_refuses_no_images_and_bad_bins():
    with pytest.raises(ValueError, match="no images"):
        exposure_histogram([])
    with pytest.raises(ValueError, match="0"):
        exposure_histogram(random_images(), num_bins=0)


def test_plot_writes_a_png_bar_chart(tmp_path):
    path = plot_exposure_histogram(exposure_histogram(random_images()), tmp_path / "plots" / "fig4.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.std() > 0


def test_table_has_one_row_per_bin():
    histogram = exposure_histogram([np.full((2, 5, 3), 255, np.uint8)])
    lines = format_histogram_table(histogram).splitlines()
    assert lines[0] == "| Exposure | Pixels per image | Share |" and len(lines) == 2 + 10
    assert lines[-1] == "| [0.9, 1.0] | 10 | 100.00% |"
