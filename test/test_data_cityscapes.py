import logging

import cv2
import numpy as np
import pytest
import torch
from helpers import snapshot, write_cityscapes
from torch.utils.data import ConcatDataset, DataLoader

from egnet_core.data import cityscapes as cityscapes_module
from egnet_core.data.cityscapes import Cityscapes
from egnet_core.data.labels import label_id_to_train_id
from egnet_core.data.nightcity import NightCity
from egnet_core.data.sample import RawSample, Sample
from egnet_core.data.synthetic import write_nightcity
from egnet_core.data.transforms import TrainTransform

WIDTH, HEIGHT = 128, 64
CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt",)}


@pytest.fixture
def cityscapes(tmp_path):
    """Cityscapes' layout with one synthetic scene per city, gtFine siblings included; returns (root, scenes)."""
    root = tmp_path / "cityscapes"
    return root, write_cityscapes(root, CITIES, width=WIDTH, height=HEIGHT)


def test_cityscapes_layout_pairs_images_across_city_folders(cityscapes):
    root, scenes = cityscapes
    train = Cityscapes(root, "train")
    assert train.names == ["aachen_000000_000019", "bremen_000000_000019"]
    assert train.summary.skipped == 4  # instanceIds and polygons of two images
    for sample in train:
        assert isinstance(sample, RawSample)
        np.testing.assert_array_equal(sample.image, scenes[sample.name].image)
        np.testing.assert_array_equal(sample.label, label_id_to_train_id(scenes[sample.name].label_ids))
    assert Cityscapes(root, "val").names == ["frankfurt_000000_000019"]


def test_a_missing_cityscapes_label_is_an_error_listing_the_image(cityscapes):
    root, _ = cityscapes
    (root / "gtFine" / "train" / "bremen" / "bremen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(ValueError, match=r"without a partner: 1 [\s\S]*bremen_000000_000019_leftImg8bit\.png"):
        Cityscapes(root, "train")


def test_cityscapes_bad_split_and_missing_folders_are_named(cityscapes, tmp_path):
    root, _ = cityscapes
    with pytest.raises(ValueError, match="'test'"):
        Cityscapes(root, "test")
    with pytest.raises(FileNotFoundError, match=r"nowhere/leftImg8bit/val"):
        Cityscapes(tmp_path / "nowhere", "val")


def test_cityscapes_plus_nightcity_trains_through_one_dataloader(cityscapes, tmp_path):
    root, _ = cityscapes
    nightcity = write_nightcity(tmp_path / "NightCity", train=3, val=1, width=WIDTH, height=HEIGHT, seed=1).root
    transform = TrainTransform(crop_size=48)
    combined = ConcatDataset([Cityscapes(root, transform=transform), NightCity(nightcity, transform=transform)])
    torch.manual_seed(0)
    batches = list(DataLoader(combined, batch_size=2, shuffle=True, num_workers=0))
    assert sum(len(batch.image) for batch in batches) == 5
    for batch in batches:
        assert isinstance(batch, Sample)
        assert batch.image.shape[1:] == (3, 48, 48) and batch.exposure.shape[1:] == (1, 48, 48)
        assert batch.label.dtype == torch.int64


def test_loading_cityscapes_never_modifies_the_input_files(cityscapes):
    root, _ = cityscapes
    before = snapshot(root)
    for split in CITIES:
        list(Cityscapes(root, split, transform=TrainTransform(crop_size=32)))
    assert snapshot(root) == before


def _move_city_and_link_it(root, split, city, elsewhere):
    """Move one city's two folders to ``elsewhere`` (another disk, say) and link them back, as users do."""
    for kind in ("leftImg8bit", "gtFine"):
        target = elsewhere / kind / city
        target.parent.mkdir(parents=True, exist_ok=True)
        (root / kind / split / city).rename(target)
        (root / kind / split / city).symlink_to(target, target_is_directory=True)


def test_city_folders_that_are_links_are_followed(cityscapes, tmp_path):
    root, scenes = cityscapes
    _move_city_and_link_it(root, "train", "bremen", tmp_path / "other-disk")
    train = Cityscapes(root, "train")
    assert train.names == ["aachen_000000_000019", "bremen_000000_000019"]
    np.testing.assert_array_equal(train[1].image, scenes["bremen_000000_000019"].image)


def test_a_link_loop_is_skipped_with_a_warning_and_each_folder_is_read_once(cityscapes, tmp_path, caplog):
    root, _ = cityscapes
    images = root / "leftImg8bit" / "train"
    (images / "aachen" / "back").symlink_to("..", target_is_directory=True)  # train/aachen/back -> train
    (images / "twin").symlink_to(images / "bremen", target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="egnet_core.data"):
        train = Cityscapes(root, "train")
    assert train.names == ["aachen_000000_000019", "bremen_000000_000019"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(f"{images / 'aachen' / 'back'}: it is {images} again (a link loop)" in w for w in warnings)
    assert any(f"{images / 'twin'}: it is {images / 'bremen'} again (two links to one folder)" in w for w in warnings)


def test_a_broken_link_is_named(cityscapes, caplog):
    root, _ = cityscapes
    broken = root / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png"
    broken.symlink_to(root / "nowhere.png")
    with caplog.at_level(logging.WARNING, logger="egnet_core.data"):
        assert len(Cityscapes(root, "train")) == 2
    assert f"skipping {broken}: it links to {root / 'nowhere.png'}, which does not exist" in caplog.text


def test_the_pairs_found_are_logged_next_to_the_release_count(cityscapes, caplog, monkeypatch):
    root, _ = cityscapes
    with caplog.at_level(logging.INFO, logger="egnet_core.data"):
        train = Cityscapes(root, "train")
    assert (train.summary.images, train.summary.release) == (2, 2975)
    assert "cityscapes train: 2 image/label pairs (the release has 2,975)" in caplog.text
    # Generated data is a deliberate subset: an information, not a warning.
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]

    caplog.clear()
    monkeypatch.setitem(cityscapes_module.RELEASE, "train", 3)  # a release of 3 of which 2 were found
    with caplog.at_level(logging.INFO, logger="egnet_core.data"):
        Cityscapes(root, "train")
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 image/label pairs found, 1 fewer than the release's 3" in warnings[0]


def test_train_ids_named_as_cityscapesscripts_writes_them_are_read_as_they_are(cityscapes):
    root, scenes = cityscapes
    for label_file in (root / "gtFine").rglob("*_gtFine_labelIds.png"):
        train_ids = label_id_to_train_id(cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED))
        cv2.imwrite(str(label_file).replace("_labelIds.png", "_labelTrainIds.png"), train_ids)
        label_file.unlink()
    train = Cityscapes(root, "train")
    assert train.summary.label_format == "trainIds"
    for sample in train:
        np.testing.assert_array_equal(sample.label, label_id_to_train_id(scenes[sample.name].label_ids))


def test_a_split_with_label_ids_and_train_ids_reads_the_label_ids(cityscapes):
    root, scenes = cityscapes
    for label_file in (root / "gtFine").rglob("*_gtFine_labelIds.png"):
        wrong = np.full_like(cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED), 5)  # would show if read
        cv2.imwrite(str(label_file).replace("_labelIds.png", "_labelTrainIds.png"), wrong)
    train = Cityscapes(root, "train")
    assert train.summary.label_format == "labelIds" and train.summary.skipped == 6
    np.testing.assert_array_equal(train[0].label, label_id_to_train_id(scenes[train.names[0]].label_ids))
