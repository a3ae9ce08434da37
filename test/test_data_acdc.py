"""ACDC's night condition, from generated files in the release's layout (``rgb_anon/night``, ``gt/night``)."""

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from egnet_core.config import load_train_config
from egnet_core.data.acdc import ACDC
from egnet_core.data.datasets import open_dataset
from egnet_core.data.imageio import read_label, read_rgb
from egnet_core.data.sample import RawSample, Sample
from egnet_core.data.synthetic import write_acdc_night
from egnet_core.data.transforms import TrainTransform

WIDTH, HEIGHT = 96, 48


@pytest.fixture
def acdc(tmp_path):
    return write_acdc_night(tmp_path / "acdc", train=3, val=2, width=WIDTH, height=HEIGHT, seed=2).root


def test_images_pair_with_train_id_labels_across_sequence_folders(acdc):
    train = ACDC(acdc, "train")
    assert train.names == ["GOPR0351_frame_000000", "GOPR0351_frame_000002", "GOPR0355_frame_000001"]
    assert train.summary.label_format == "trainIds" and train.summary.skipped == 6  # labelIds and labelColor
    sample = train[2]
    assert isinstance(sample, RawSample)
    folder = "night/train/GOPR0355/GOPR0355_frame_000001"
    np.testing.assert_array_equal(sample.image, read_rgb(acdc / "rgb_anon" / f"{folder}_rgb_anon.png"))
    np.testing.assert_array_equal(sample.label, read_label(acdc / "gt" / f"{folder}_gt_labelTrainIds.png"))
    assert ACDC(acdc, "val").names == ["GOPR0594_frame_000003", "GOPR0594_frame_000004"]


def test_label_ids_are_read_when_the_train_ids_are_not_there(acdc):
    reference = [sample.label for sample in ACDC(acdc, "val")]
    for path in (acdc / "gt" / "night" / "val").rglob("*_gt_labelTrainIds.png"):
        path.unlink()
    val = ACDC(acdc, "val")
    assert val.summary.label_format == "labelIds"
    for sample, label in zip(val, reference):
        np.testing.assert_array_equal(sample.label, label)


def test_counts_are_logged_next_to_the_release(acdc, caplog):
    with caplog.at_level(logging.INFO, logger="egnet_core.data"):
        open_dataset("acdc-night", acdc, "train"), open_dataset("acdc-night", acdc, "val")
    assert "acdc-night train: 3 image/label pairs (the release has 400)" in caplog.text
    assert "acdc-night val: 2 image/label pairs (the release has 106)" in caplog.text


def test_a_missing_folder_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rgb_anon/night/val/<sequence> with .*/gt/night/val/<sequence>"):
        ACDC(tmp_path, "val")


def test_a_training_config_reads_acdc_through_the_training_transform(acdc):
    config = load_train_config(None, ["data.dataset=acdc-night", f"data.root={acdc}"])
    dataset = open_dataset(config.data.dataset, config.data.root, "train", transform=TrainTransform(crop_size=32))
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert isinstance(batch, Sample) and batch.image.shape == (3, 3, 32, 32) and batch.label.dtype == torch.int64
