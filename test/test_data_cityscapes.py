import numpy as np
import pytest
import torch
from helpers import snapshot, write_cityscapes
from torch.utils.data import ConcatDataset, DataLoader

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
