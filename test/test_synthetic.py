"""The synthetic night scenes: the on-disk layouts of NightCity, Cityscapes, ACDC and Dark Zurich, determinism,
a Figure 4-like exposure histogram, labels that sit where the drawn things are, and clear errors for bad arguments."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from egnet_core.data.exposure import NUM_BINS, exposure_bins, exposure_map
from egnet_core.data.labels import IGNORE_INDEX, LABEL_IDS, colorize, label_id_to_train_id
from egnet_core.data.synthetic import (
    NightScene,
    SyntheticDataset,
    render_night_scene,
    write_acdc_night,
    write_cityscapes,
    write_dark_zurich,
    write_nightcity,
)

DRAWN_CLASSES = ("road", "sidewalk", "building", "pole", "traffic light", "traffic sign", "vegetation", "sky",
                 "person", "car")
LIGHT_HOLDERS = [LABEL_IDS[name] for name in ("car", "pole", "traffic light", "building")]


def _scenes(count: int, width: int, height: int) -> list[NightScene]:
    return [render_night_scene(np.random.default_rng(seed), width=width, height=height) for seed in range(count)]


@pytest.fixture(scope="module")
def small_scenes() -> list[NightScene]:
    return _scenes(6, 256, 128)


@pytest.fixture(scope="module")
def medium_scenes() -> list[NightScene]:
    return _scenes(6, 512, 256)


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_writes_nightcity_release_layout(tmp_path):
    root = tmp_path / "nightcity"
    dataset = write_nightcity(root, train=3, val=2, width=128, height=64, seed=0)

    assert dataset == SyntheticDataset(root=root, train=3, val=2, size=(128, 64))
    names = {"train": ["Chicago_0000", "LosAngeles_0001", "NewYork_0002"], "val": ["HongKong_0003", "London_0004"]}
    expected = set()
    for split, stems in names.items():
        for stem in stems:
            expected |= {
                f"NightCity-images/images/{split}/{stem}.png",
                f"NightCity-label/label/{split}/{stem}_labelIds.png",
                f"NightCity-label/color/{split}/{stem}_color.png",
            }
    assert set(_files(root)) == expected


def test_written_images_and_labels_have_nightcity_shapes_and_colours(tmp_path):
    write_nightcity(tmp_path, train=1, val=1, width=128, height=64, seed=3)

    for split, stem in (("train", "Chicago_0000"), ("val", "LosAngeles_0001")):
        image = cv2.imread(str(tmp_path / f"NightCity-images/images/{split}/{stem}.png"), cv2.IMREAD_UNCHANGED)
        labels = cv2.imread(str(tmp_path / f"NightCity-label/label/{split}/{stem}_labelIds.png"), cv2.IMREAD_UNCHANGED)
        colour = cv2.imread(str(tmp_path / f"NightCity-label/color/{split}/{stem}_color.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 128, 3) and image.dtype == np.uint8
        assert labels.shape == (64, 128) and labels.dtype == np.uint8
        np.testing.assert_array_equal(colour[..., ::-1], colorize(label_id_to_train_id(labels)))


def test_written_files_hold_the_rendered_scene_as_opencv_bgr(tmp_path):
    write_nightcity(tmp_path, train=2, val=1, width=128, height=64, seed=5)
    scene = render_night_scene(np.random.default_rng(np.random.SeedSequence(5).spawn(3)[2]), width=128, height=64)

    image = cv2.imread(str(tmp_path / "NightCity-images/images/val/NewYork_0002.png"), cv2.IMREAD_COLOR)
    labels = cv2.imread(str(tmp_path / "NightCity-label/label/val/NewYork_0002_labelIds.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), scene.image)
    np.testing.assert_array_equal(labels, scene.label_ids)


def test_scene_arrays_have_documented_shapes(small_scenes):
    for scene in small_scenes:
        assert scene.image.shape == (128, 256, 3) and scene.image.dtype == np.uint8
        assert scene.label_ids.shape == (128, 256) and scene.label_ids.dtype == np.uint8


def test_labels_are_trainable_cityscapes_ids_or_unlabeled(small_scenes):
    used = np.unique(np.concatenate([scene.label_ids.ravel() for scene in small_scenes]))
    trainable = label_id_to_train_id(used) != IGNORE_INDEX
    assert np.all(trainable | (used == LABEL_IDS["unlabeled"])), used


def test_every_drawn_class_appears(small_scenes):
    used = set(np.unique(np.concatenate([scene.label_ids.ravel() for scene in small_scenes])).tolist())
    missing = [name for name in DRAWN_CLASSES if LABEL_IDS[name] not in used]
    assert not missing


def test_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path):
    write_nightcity(tmp_path / "a", train=2, val=1, width=128, height=64, seed=7)
    write_nightcity(tmp_path / "b", train=2, val=1, width=128, height=64, seed=7)
    write_nightcity(tmp_path / "c", train=2, val=1, width=128, height=64, seed=8)

    first, again, other = (_files(tmp_path / name) for name in "abc")
    assert first == again
    images = [name for name in first if name.startswith("NightCity-images")]
    assert all(first[name] != other[name] for name in images)


def test_exposure_histogram_looks_like_nightcity_figure_4(medium_scenes):
    counts = sum(np.bincount(exposure_bins(exposure_map(s.image)).ravel(), minlength=NUM_BINS) for s in medium_scenes)
    share = counts / counts.sum()

    assert share[0] + share[1] > 0.5  # most of the frame is under-exposed
    assert np.all(np.diff(share[1:9]) < 0.002)  # a falling tail ...
    assert share[9] > share[6:9].max()  # ... then a spike of saturated lamps and headlights
    assert 0.005 < share[9] < 0.08


def test_sky_is_above_the_horizon_and_road_below_it(small_scenes):
    for scene in small_scenes:
        height, width = scene.label_ids.shape
        sky_rows, _ = np.nonzero(scene.label_ids == LABEL_IDS["sky"])
        road_rows, road_cols = np.nonzero(scene.label_ids == LABEL_IDS["road"])
        assert sky_rows.max() < height / 2
        assert road_rows.min() > height * 0.4
        assert width * 0.35 < road_cols.mean() < width * 0.65


def test_bottom_centre_of_the_frame_is_mostly_road(small_scenes):
    patches = [scene.label_ids[-16:, 112:144] for scene in small_scenes]
    assert np.mean([patch == LABEL_IDS["road"] for patch in patches]) > 0.7


def test_saturated_pixels_sit_on_light_sources(medium_scenes):
    saturated = [s.label_ids[exposure_map(s.image) >= 0.95] for s in medium_scenes]
    holders = np.isin(np.concatenate(saturated), LIGHT_HOLDERS)
    assert holders.size and holders.mean() > 0.5


def test_sky_and_road_are_mostly_dark(medium_scenes):
    for name in ("sky", "road"):
        values = np.concatenate([exposure_map(s.image)[s.label_ids == LABEL_IDS[name]] for s in medium_scenes])
        assert np.median(values) < 0.3, name


@pytest.mark.parametrize("width, height", [(63, 32), (64, 31), (0, 0)])
def test_refuses_too_small_scenes(width, height):
    with pytest.raises(ValueError, match=f"{width}x{height}"):
        render_night_scene(np.random.default_rng(0), width=width, height=height)


def test_refuses_a_seed_where_a_generator_belongs():
    with pytest.raises(TypeError, match="int"):
        render_night_scene(0)


@pytest.mark.parametrize("train, val, bad", [(-1, 2, "train=-1"), (2, -3, "val=-3"), (0, 0, "train=0, val=0")])
def test_refuses_bad_counts(tmp_path, train, val, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        write_nightcity(tmp_path / "out", train=train, val=val, width=64, height=32)


def test_refuses_too_small_images_before_writing(tmp_path):
    with pytest.raises(ValueError, match="32x16"):
        write_nightcity(tmp_path / "out", width=32, height=16)
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_output_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")

    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        write_nightcity(tmp_path, train=1, val=0, width=64, height=32)
    assert [path.name for path in tmp_path.iterdir()] == ["keep.txt"]


def test_writes_into_an_existing_empty_directory(tmp_path):
    dataset = write_nightcity(tmp_path, train=1, val=0, width=64, height=32)

    assert dataset.root == tmp_path
    assert (tmp_path / "NightCity-images/images/train/Chicago_0000.png").is_file()


def test_writes_cityscapes_release_layout(tmp_path):
    dataset = write_cityscapes(tmp_path / "cityscapes", train=2, val=1, width=64, height=32, seed=0)
    assert dataset.dataset == "cityscapes"
    expected = set()
    for split, city, stem in (("train", "aachen", "aachen_000000_000019"), ("train", "bremen", "bremen_000001_000019"),
                              ("val", "munster", "munster_000002_000019")):
        expected |= {f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                     f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
                     f"gtFine/{split}/{city}/{stem}_gtFine_color.png"}
    assert set(_files(dataset.root)) == expected


def test_writes_acdc_night_release_layout(tmp_path):
    dataset = write_acdc_night(tmp_path / "acdc", train=2, val=1, width=64, height=32, seed=0)
    assert dataset.dataset == "acdc-night"
    expected = set()
    for split, sequence, index in (("train", "GOPR0351", 0), ("train", "GOPR0355", 1), ("val", "GOPR0594", 2)):
        stem = f"{sequence}_frame_{index:06d}"
        expected |= {f"rgb_anon/night/{split}/{sequence}/{stem}_rgb_anon.png"}
        expected |= {f"gt/night/{split}/{sequence}/{stem}_gt_{kind}.png"
                     for kind in ("labelTrainIds", "labelIds", "labelColor")}
    assert set(_files(dataset.root)) == expected


def test_writes_dark_zurich_release_layout_with_unlabelled_train_images(tmp_path):
    dataset = write_dark_zurich(tmp_path / "dark_zurich", train=1, val=2, width=64, height=32, seed=0)
    assert dataset.dataset == "dark-zurich"
    expected = {"rgb_anon/train/night/GOPR0002/GOPR0002_frame_000000_rgb_anon.png"}
    for index in (1, 2):
        stem = f"GOPR0356_frame_{index:06d}"
        expected |= {f"rgb_anon/val/night/GOPR0356/{stem}_rgb_anon.png"}
        expected |= {f"gt/val/night/GOPR0356/{stem}_gt_{kind}.png"
                     for kind in ("labelTrainIds", "labelIds", "labelColor")}
    assert set(_files(dataset.root)) == expected


def test_every_layout_holds_the_same_scenes_and_train_ids_where_it_says(tmp_path):
    write_nightcity(tmp_path / "n", train=1, val=1, width=64, height=32, seed=4)
    write_acdc_night(tmp_path / "a", train=1, val=1, width=64, height=32, seed=4)
    image = cv2.imread(str(tmp_path / "n/NightCity-images/images/val/LosAngeles_0001.png"))
    label_ids = cv2.imread(str(tmp_path / "n/NightCity-label/label/val/LosAngeles_0001_labelIds.png"), -1)
    acdc = tmp_path / "a/rgb_anon/night/val/GOPR0594/GOPR0594_frame_000001_rgb_anon.png"
    np.testing.assert_array_equal(cv2.imread(str(acdc)), image)
    train_ids = tmp_path / "a/gt/night/val/GOPR0594/GOPR0594_frame_000001_gt_labelTrainIds.png"
    np.testing.assert_array_equal(cv2.imread(str(train_ids), -1), label_id_to_train_id(label_ids))
