import logging
import shutil

import cv2
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cityscapes_labels
from helpers import snapshot
from PIL import Image

from egnet_core.data.imageio import read_label, read_rgb, write_rgb
from egnet_core.data.labels import label_id_to_train_id
from egnet_core.data.nightcity import NightCity, duplicates_between_splits
from egnet_core.data.sample import RawSample, Sample
from egnet_core.data.synthetic import write_nightcity
from egnet_core.data.transforms import EvalTransform, TrainTransform

WIDTH, HEIGHT = 128, 64


@pytest.fixture
def release(tmp_path):
    """A tiny NightCity in the released layout: 3 train and 2 val scenes of 128×64."""
    return write_nightcity(tmp_path / "NightCity", train=3, val=2, width=WIDTH, height=HEIGHT, seed=0).root


@pytest.fixture
def flat(release, tmp_path):
    """The same data under a root holding images/ and label/ directly."""
    root = tmp_path / "flat"
    shutil.copytree(release / "NightCity-images" / "images", root / "images")
    shutil.copytree(release / "NightCity-label" / "label", root / "label")
    return root


def write_pair(image_dir, label_dir, name, *, size=(WIDTH, HEIGHT), label_size=None, label_suffix="_labelIds.png",
               label_id=7):
    """One random image and a label map (all ``label_id``, by default 7, 'road') of ``label_size`` (default: the
    image's size)."""
    width, height = size
    image = np.random.default_rng(len(name)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    write_rgb(image_dir / f"{name}.png", image)
    label_width, label_height = label_size or size
    label_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(label_dir / f"{name}{label_suffix}"), np.full((label_height, label_width), label_id, np.uint8))


def test_release_layout_pairs_every_image_with_its_train_id_label(release):
    train, val = NightCity(release, "train"), NightCity(release, "val")
    assert (len(train), len(val)) == (3, 2)
    images = sorted(p.stem for p in (release / "NightCity-images" / "images" / "train").iterdir())
    assert train.names == images
    assert train.summary.images == 3 and train.summary.label_format == "labelIds"
    sample = train[1]
    assert isinstance(sample, RawSample) and sample.name == images[1]
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.image.dtype == np.uint8
    label_file = release / "NightCity-label" / "label" / "train" / f"{images[1]}_labelIds.png"
    image_file = release / "NightCity-images" / "images" / "train" / f"{images[1]}.png"
    np.testing.assert_array_equal(sample.label, label_id_to_train_id(read_label(label_file)))
    np.testing.assert_array_equal(sample.image, read_rgb(image_file))
    assert set(np.unique(sample.label)) <= set(range(19)) | {255}


def test_a_root_holding_images_and_label_reads_the_same_samples(release, flat):
    from_release, from_flat = NightCity(release, "val"), NightCity(flat, "val")
    assert from_flat.names == from_release.names
    for a, b in zip(from_release, from_flat):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)


def test_label_ids_outside_the_19_classes_become_ignore(tmp_path):
    image = np.zeros((1, 6, 3), np.uint8)
    write_rgb(tmp_path / "images" / "train" / "Tokyo_0000.png", image)
    (tmp_path / "label" / "train").mkdir(parents=True)
    ids = np.array([[7, 26, 0, 33, 34, 200]], np.uint8)  # road, car, unlabeled, bicycle, beyond the table
    cv2.imwrite(str(tmp_path / "label" / "train" / "Tokyo_0000_labelIds.png"), ids)
    np.testing.assert_array_equal(NightCity(tmp_path)[0].label, [[0, 13, 255, 18, 255, 255]])


def test_a_missing_label_is_an_error_listing_the_image(flat):
    (flat / "label" / "train" / "LosAngeles_0001_labelIds.png").unlink()
    with pytest.raises(ValueError, match=r"without a partner: 1 [\s\S]*LosAngeles_0001\.png"):
        NightCity(flat, "train")


def test_many_unmatched_files_are_counted_and_the_first_ten_listed(tmp_path):
    for index in range(12):
        write_rgb(tmp_path / "images" / "val" / f"Lonely_{index:04d}.png", np.zeros((32, 64, 3), np.uint8))
    (tmp_path / "label" / "val").mkdir(parents=True)
    with pytest.raises(ValueError, match="without a partner: 12 ") as error:
        NightCity(tmp_path, "val")
    assert "Lonely_0009.png" in str(error.value) and "Lonely_0010.png" not in str(error.value)


def test_a_split_whose_labels_are_all_out_of_range_is_an_error_naming_the_split_and_the_values(tmp_path):
    for index in range(3):
        write_pair(tmp_path / "images" / "train", tmp_path / "label" / "train", f"Paris_{index:04d}", label_id=200)
        write_pair(tmp_path / "images" / "val", tmp_path / "label" / "val", f"Rome_{index:04d}")
    with pytest.raises(ValueError, match=r"nightcity train: none of the 3 label maps in .*label/train has a valid "
                                         r"label .*only the values \[200\]"):
        NightCity(tmp_path, "train")
    assert NightCity(tmp_path, "val").summary.ignored == 0.0


def test_the_share_of_ignored_pixels_is_reported_from_a_sample_and_warned_about_when_high(tmp_path, caplog):
    for index, label_id in enumerate([7, 200, 0, 255]):  # road, beyond the table, unlabeled, ignore
        write_pair(tmp_path / "images" / "train", tmp_path / "label" / "train", f"Oslo_{index:04d}", label_id=label_id)
    with caplog.at_level(logging.INFO, logger="egnet_core.data.nightcity"):
        summary = NightCity(tmp_path, "train").summary
    assert (summary.ignored, summary.sampled) == (0.75, 4)
    assert "75% of the pixels in a sample of 4 of the 4 label maps are ignored" in str(summary)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    shares = [warning for warning in warnings if "of the pixels in a sample" in warning]
    assert len(shares) == 1 and "75% of the pixels in a sample of 4 of the 4 label maps" in shares[0]


def test_opening_reads_a_bounded_sample_and_errs_only_when_no_label_map_at_all_is_valid(tmp_path):
    images, labels = tmp_path / "images" / "train", tmp_path / "label" / "train"
    for index in range(40):
        write_pair(images, labels, f"Lima_{index:04d}", size=(32, 32), label_id=200)
    unsampled = sorted(set(range(40)) - set(np.linspace(0, 39, 32).round().astype(int)))[0]
    write_pair(images, labels, f"Lima_{unsampled:04d}", size=(32, 32))  # the only valid labels, outside the sample
    summary = NightCity(tmp_path, "train").summary
    assert (summary.sampled, summary.ignored) == (32, 1.0)
    write_pair(images, labels, f"Lima_{unsampled:04d}", size=(32, 32), label_id=200)
    with pytest.raises(ValueError, match="none of the 40 label maps"):
        NightCity(tmp_path, "train")


def test_a_label_of_the_wrong_size_names_the_file_and_both_sizes(tmp_path):
    write_pair(tmp_path / "images" / "train", tmp_path / "label" / "train", "Paris_0000", label_size=(120, 64))
    dataset = NightCity(tmp_path)
    with pytest.raises(ValueError, match=r"Paris_0000_labelIds\.png' is 120×64 but its image .* is 128×64"):
        dataset[0]


def test_non_image_files_are_skipped_with_a_log_line(flat, caplog):
    for folder in (flat / "images" / "train", flat / "label" / "train"):
        (folder / "README.txt").write_text("NightCity")
        (folder / ".DS_Store").write_bytes(b"\0\1")
    with caplog.at_level(logging.INFO, logger="egnet_core.data.nightcity"):
        dataset = NightCity(flat, "train")
    assert len(dataset) == 3 and dataset.summary.skipped == 4
    assert "README.txt" in caplog.text


def test_a_corrupt_png_is_an_error_naming_it_when_loaded(flat):
    (flat / "images" / "train" / "Chicago_0000.png").write_bytes(b"not a png at all")
    dataset = NightCity(flat, "train")
    with pytest.raises(ValueError, match=r"Chicago_0000\.png"):
        dataset[dataset.names.index("Chicago_0000")]


def test_nightcity_plus_keeps_its_labels_at_twice_the_image_size(release):
    relabelled = release / "NightCity+" / "label" / "val"
    relabelled.mkdir(parents=True)
    for label_file in (release / "NightCity-label" / "label" / "val").iterdir():
        doubled = cv2.resize(read_label(label_file), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(relabelled / label_file.name), doubled)
    val = NightCity(release, "val", version="nightcity+", transform=EvalTransform())
    sample = val[0]
    assert sample.image.shape == (3, HEIGHT, WIDTH) and sample.label.shape == (2 * HEIGHT, 2 * WIDTH)
    assert NightCity(release, "train", version="nightcity+").names == NightCity(release, "train").names


def test_nightcity_plus_labels_of_another_size_are_an_error(release, tmp_path):
    images, labels = release / "NightCity-images" / "images" / "val", tmp_path / "relabelled"
    for image_file in images.iterdir():
        labels.mkdir(exist_ok=True)
        cv2.imwrite(str(labels / f"{image_file.stem}_labelIds.png"), np.full((3 * HEIGHT, 3 * WIDTH), 7, np.uint8))
    dataset = NightCity(release, "val", version="nightcity+", labels_root=labels)
    allowed = f"must be {WIDTH}×{HEIGHT} or {2 * WIDTH}×{2 * HEIGHT}"
    with pytest.raises(ValueError, match=f"is {3 * WIDTH}×{3 * HEIGHT} .* {allowed}"):
        dataset[0]


def test_nightcity_fine_reads_train_id_labels_from_either_root(tmp_path):
    fine = tmp_path / "nightcity-fine"
    train_ids = np.array([[0, 13, 18, 19], [7, 255, 2, 100]], np.uint8)
    for split in ("train", "val"):
        write_rgb(fine / split / "img" / f"Seoul_{split}.png", np.zeros((2, 4, 3), np.uint8))
        (fine / split / "lbl").mkdir()
        cv2.imwrite(str(fine / split / "lbl" / f"Seoul_{split}_trainIds.png"), train_ids)
    for root in (tmp_path, fine):
        dataset = NightCity(root, "val", version="nightcity-fine")
        assert dataset.names == ["Seoul_val"] and dataset.summary.label_format == "trainIds"
        np.testing.assert_array_equal(dataset[0].label, [[0, 13, 18, 255], [7, 255, 2, 255]])


def test_duplicates_between_splits_finds_images_in_both(tmp_path):
    for split, names in (("train", ["Dubai_0015", "Dubai_0016"]), ("val", ["Dubai_0016", "Rome_0001"])):
        for name in names:
            write_pair(tmp_path / "images" / split, tmp_path / "label" / split, name)
    assert duplicates_between_splits(NightCity(tmp_path, "train"), NightCity(tmp_path, "val")) == ["Dubai_0016"]


def test_bad_arguments_and_missing_folders_are_named(release, tmp_path):
    with pytest.raises(ValueError, match="'nightcity2'"):
        NightCity(release, version="nightcity2")
    with pytest.raises(ValueError, match="'test'"):
        NightCity(release, "test")
    with pytest.raises(ValueError, match="labels_root"):
        NightCity(release, labels_root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere/images/train.*NightCity-images/images/train"):
        NightCity(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"NightCity\+/label/val"):
        NightCity(release, "val", version="nightcity+")


def test_transforms_give_samples_that_a_dataloader_batches(release):
    dataset = NightCity(release, "train", transform=TrainTransform(crop_size=48))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert isinstance(batch, Sample)
    assert batch.image.shape == (3, 3, 48, 48) and batch.label.dtype == torch.int64
    assert batch.exposure.shape == (3, 1, 48, 48)


def test_loading_never_modifies_the_input_files(release):
    before = snapshot(release)
    for transform in (None, EvalTransform(), TrainTransform(crop_size=32)):
        for split in ("train", "val"):
            list(NightCity(release, split, transform=transform))
    assert snapshot(release) == before


def test_palette_label_pngs_are_read_as_their_indices(tmp_path):
    """Label maps saved in palette mode (PIL's "P", with the Cityscapes colours) hold the ids as indices."""
    write_rgb(tmp_path / "images" / "train" / "Tokyo_0000.png", np.zeros((2, 3, 3), np.uint8))
    ids = np.array([[7, 26, 0], [33, 11, 23]], np.uint8)
    palette = np.zeros((256, 3), np.uint8)
    for label in cityscapes_labels:
        if 0 <= label.id < 256:
            palette[label.id] = label.color
    picture = Image.fromarray(ids, mode="P")
    picture.putpalette(palette.ravel().tolist())
    (tmp_path / "label" / "train").mkdir(parents=True)
    picture.save(tmp_path / "label" / "train" / "Tokyo_0000_labelIds.png")
    np.testing.assert_array_equal(NightCity(tmp_path)[0].label, label_id_to_train_id(ids))


def _naming_warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and "that no" in record.getMessage()]


def test_train_ids_in_label_id_files_are_named_with_the_values_and_the_fitting_name(tmp_path, caplog):
    images, labels = tmp_path / "images" / "train", tmp_path / "label" / "train"
    write_pair(images, labels, "Oslo_0000")  # road everywhere: label ids, fine
    write_rgb(images / "Oslo_0001.png", np.zeros((2, 3, 3), np.uint8))
    train_ids = np.array([[0, 1, 2], [13, 10, 255]], np.uint8)  # what the release's converters write
    cv2.imwrite(str(labels / "Oslo_0001_labelIds.png"), train_ids)
    with caplog.at_level(logging.WARNING, logger="egnet_core.data"):
        NightCity(tmp_path, "train")
    (warning,) = _naming_warnings(caplog)
    assert "1 of the 2 sampled label maps" in warning
    assert "Oslo_0001_labelIds.png holds [0, 1, 2, 10, 13, 255]: train ids, which *_trainIds.png would fit" in warning


def test_label_ids_in_train_id_files_are_named_with_the_values_and_the_fitting_name(tmp_path, caplog):
    for split in ("train", "val"):
        write_rgb(tmp_path / split / "img" / "Seoul_0000.png", np.zeros((2, 3, 3), np.uint8))
        (tmp_path / split / "lbl").mkdir()
        label_ids = np.array([[7, 8, 11], [21, 23, 26]], np.uint8)
        cv2.imwrite(str(tmp_path / split / "lbl" / "Seoul_0000_trainIds.png"), label_ids)
    with caplog.at_level(logging.WARNING, logger="egnet_core.data"):
        NightCity(tmp_path, "val", version="nightcity-fine")
    (warning,) = _naming_warnings(caplog)
    assert "Seoul_0000_trainIds.png holds [7, 8, 11, 21, 23, 26]: Cityscapes label ids, which *_labelIds.png " \
           "would fit" in warning


def test_labels_that_fit_their_names_raise_no_naming_warning(release, tmp_path, caplog):
    fine = tmp_path / "nightcity-fine" / "val"
    write_rgb(fine / "img" / "Seoul_0000.png", np.zeros((2, 3, 3), np.uint8))
    (fine / "lbl").mkdir()
    cv2.imwrite(str(fine / "lbl" / "Seoul_0000_trainIds.png"), np.array([[0, 18, 255]] * 2, np.uint8))
    with caplog.at_level(logging.WARNING, logger="egnet_core.data"):
        NightCity(release, "train"), NightCity(release, "val"), NightCity(tmp_path, "val", version="nightcity-fine")
    assert not _naming_warnings(caplog)


def test_the_release_count_is_logged_and_a_small_split_is_no_warning(release, caplog):
    with caplog.at_level(logging.INFO, logger="egnet_core.data"):
        NightCity(release, "train"), NightCity(release, "val")
    assert "nightcity train: 3 image/label pairs (the release has 2,997)" in caplog.text
    assert "nightcity val: 2 image/label pairs (the release has 1,300)" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
