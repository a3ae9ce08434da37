"""The synthetic night scenes: NightCity's on-disk layout, determinism, a Figure 4-like exposure histogram,
labels that sit where the drawn things are, and clear errors for bad arguments."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from egnet_core.data.exposure import NUM_BINS, exposure_bins, exposure_map
from egnet_core.data.labels import IGNORE_INDEX, LABEL_IDS, colorize, label_id_to_train_id
from egnet_core.data.synthetic import NightScene, SyntheticDataset, render_night_scene, write_nightcity

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
