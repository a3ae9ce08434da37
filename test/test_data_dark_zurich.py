"""Dark Zurich, from generated files in the release's layout (``rgb_anon/val/night``, ``gt/val/night``)."""

import logging

import numpy as np
import pytest

from egnet_core.config import load_train_config
from egnet_core.data.dark_zurich import DarkZurich
from egnet_core.data.datasets import open_dataset, open_images
from egnet_core.data.imageio import read_label, read_rgb
from egnet_core.data.synthetic import write_dark_zurich


@pytest.fixture
def dark_zurich(tmp_path):
    return write_dark_zurich(tmp_path / "dark_zurich", train=2, val=3, width=96, height=48, seed=1).root


def test_the_labelled_val_split_pairs_images_with_train_ids(dark_zurich, caplog):
    with caplog.at_level(logging.INFO, logger="egnet_core.data"):
        val = open_dataset("dark-zurich", dark_zurich, "val")
    assert isinstance(val, DarkZurich)
    assert val.names == [f"GOPR0356_frame_{index:06d}" for index in (2, 3, 4)]
    stem = "val/night/GOPR0356/GOPR0356_frame_000003"
    np.testing.assert_array_equal(val[1].image, read_rgb(dark_zurich / "rgb_anon" / f"{stem}_rgb_anon.png"))
    np.testing.assert_array_equal(val[1].label, read_label(dark_zurich / "gt" / f"{stem}_gt_labelTrainIds.png"))
    assert "dark-zurich val: 3 image/label pairs (the release has 50)" in caplog.text


def test_the_unlabelled_train_split_names_the_missing_labels_and_still_gives_its_images(dark_zurich):
    with pytest.raises(FileNotFoundError, match=r"gt/train/night.*labels for val only"):
        DarkZurich(dark_zurich, "train")
    images = open_images("dark-zurich", dark_zurich, "train")
    assert not images.labelled and "labels for val only" in images.unlabelled_reason
    assert [path.name for path in images.dataset.files] == [
        "GOPR0002_frame_000000_rgb_anon.png", "GOPR0003_frame_000001_rgb_anon.png"]


def test_training_on_dark_zurich_is_refused_when_the_config_is_read():
    with pytest.raises(ValueError, match=r"'dark-zurich' has labels for its val split only.*egnet evaluate"):
        load_train_config(None, ["data.dataset=dark-zurich"])
