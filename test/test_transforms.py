import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from egnet_core.config import DataConfig
from egnet_core.data.sample import RawSample, Sample
from egnet_core.data.transforms import EvalTransform, TrainTransform
from egnet_core.engine.train import train_transform


def encoded_sample(height=64, width=96, block=8, seed=0) -> RawSample:
    """Labels in 8×8 blocks, and an image whose red channel is label × 10: pixels tell which label they carry."""
    blocks = np.random.default_rng(seed).integers(0, 19, (height // block, width // block), dtype=np.uint8)
    label = np.kron(blocks, np.ones((block, block), np.uint8))
    image = np.stack([label * 10, 200 - label * 10, label * 13], axis=-1).astype(np.uint8)
    return RawSample(image=image, label=label, name="encoded")


def interior(label: np.ndarray) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood holds one label: bilinear resampling has blended nothing into them."""
    core = label[1:-1, 1:-1]
    same = np.ones_like(core, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= label[1 + dy : label.shape[0] - 1 + dy, 1 + dx : label.shape[1] - 1 + dx] == core
    mask = np.zeros_like(label, dtype=bool)
    mask[1:-1, 1:-1] = same
    return mask


def test_scale_crop_and_flip_keep_image_label_and_exposure_aligned():
    raw, transform = encoded_sample(), TrainTransform(crop_size=(80, 100), scale_range=(0.5, 2.0))
    torch.manual_seed(0)
    checked = padded = 0
    for _ in range(30):
        sample = transform(raw)
        image = np.round(sample.image.numpy() * 255).astype(np.uint8)  # 3×H×W
        label = sample.label.numpy()
        assert image.shape == (3, 80, 100) and label.shape == (80, 100)
        np.testing.assert_array_equal(sample.exposure[0].numpy(), image.max(axis=0) / np.float32(255))
        check = interior(label) & (label != 255)
        np.testing.assert_array_equal(image[0][check], label[check] * 10)
        ignored = label == 255  # only padding carries 255 here; it is black
        assert not image[:, ignored].any()
        checked, padded = checked + check.mean(), padded + ignored.any()
    assert checked / 30 > 0.5 and 0 < padded < 30  # most pixels were checked; some crops needed padding


def test_flip_mirrors_image_label_and_exposure_together():
    raw = encoded_sample()
    transform = TrainTransform(crop_size=(64, 96), scale_range=(1.0, 1.0), seed=0)
    outcomes = set()
    for _ in range(20):
        sample = transform(raw)
        label = sample.label.numpy()
        mirrored = np.array_equal(label, raw.label[:, ::-1])
        assert mirrored or np.array_equal(label, raw.label)
        image = raw.image[:, ::-1] if mirrored else raw.image
        np.testing.assert_array_equal(sample.image.numpy(), image.transpose(2, 0, 1) / np.float32(255))
        outcomes.add(mirrored)
    assert outcomes == {True, False}


def test_torch_manual_seed_reproduces_the_augmentation():
    raw, transform = encoded_sample(), TrainTransform(crop_size=48)

    def draw(seed):
        torch.manual_seed(seed)
        return [transform(raw).label for _ in range(3)]

    assert all(torch.equal(a, b) for a, b in zip(draw(1), draw(1)))
    assert not all(torch.equal(a, b) for a, b in zip(draw(1), draw(2)))
    first, second = TrainTransform(crop_size=48, seed=7), TrainTransform(crop_size=48, seed=7)
    assert all(torch.equal(first(raw).image, second(raw).image) for _ in range(3))


def test_dataloader_workers_are_reproducible_and_differ_from_each_other():
    # The same sample four times: any difference between items is the augmentation's.
    dataset = _Transformed([encoded_sample()] * 4, TrainTransform(crop_size=40))

    def labels():
        torch.manual_seed(0)
        return [batch.label[0] for batch in DataLoader(dataset, batch_size=1, num_workers=2)]

    first, again = labels(), labels()
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # items 0 and 1 come from different workers


def test_a_fixed_seed_is_refused_inside_dataloader_workers():
    dataset = _Transformed([encoded_sample()] * 2, TrainTransform(crop_size=40, seed=3))
    with pytest.raises(RuntimeError, match="seed=None"):
        next(iter(DataLoader(dataset, batch_size=1, num_workers=1)))


@pytest.mark.parametrize(
    "arguments, named",
    [
        ({"crop_size": 31}, "31"),
        ({"crop_size": (300, 16)}, r"\(300, 16\)"),
        ({"scale_range": (0.0, 1.0)}, r"\(0.0, 1.0\)"),
        ({"scale_range": (2.0, 1.0)}, r"\(2.0, 1.0\)"),
        ({"resize_to": (900, 16)}, r"resize_to must be .* got \(900, 16\)"),
    ],
)
def test_bad_arguments_are_named(arguments, named):
    with pytest.raises(ValueError, match=named):
        TrainTransform(**arguments)


def checkerboard(width=512, height=256, block=16) -> RawSample:
    """A 2:1 image (NightCity's aspect) of square blocks, labels 1 and 2 alternating; red = label × 100."""
    rows, cols = np.indices((height // block, width // block))
    label = np.kron((rows + cols) % 2 + 1, np.ones((block, block), np.int64)).astype(np.uint8)
    return RawSample(image=np.stack([label * 100] * 3, axis=-1), label=label, name="checkerboard")


def block_aspect(labels: list[np.ndarray]) -> float:
    """Height over width of the blocks label maps show, from how often labels change along rows and columns."""
    across = sum(np.count_nonzero(label[:, 1:] != label[:, :-1]) for label in labels)  # ∝ 1 / block width
    down = sum(np.count_nonzero(label[1:] != label[:-1]) for label in labels)  # ∝ 1 / block height (square maps)
    return across / down


@pytest.mark.parametrize(
    ("geometry", "aspect"),
    [("crop", 1.0), ("resize", 2.0), ("resize_crop", 2.0)],  # resize_crop stretches as 1024×512 -> 900×900 does
)
def test_each_training_geometry_gives_crops_of_the_crop_size_with_its_aspect(geometry, aspect):
    # 128 and 450×450 are to these 512×256 images what the paper's 300 and 900×900 are to NightCity's 1024×512.
    data = DataConfig(train_geometry=geometry, crop_size=128, eval_size=(450, 450), scale_min=0.75, scale_max=1.5)
    transform, raw = train_transform(data), checkerboard()
    torch.manual_seed(0)
    labels = []
    for _ in range(10):
        sample = transform(raw)
        assert sample.image.shape == (3, 128, 128) and sample.label.shape == (128, 128)
        label, red = sample.label.numpy(), np.round(sample.image[0].numpy() * 255)
        check = interior(label)  # image and label moved together: each pixel nearer its own label's red
        assert np.abs(red[check] - label[check] * 100.0).max() < 50
        labels.append(label)
    assert block_aspect(labels) == pytest.approx(aspect, rel=0.1)
    if geometry == "resize":  # the whole image, every block of it: 32 × 16 blocks of 4 × 8 pixels
        whole = cv2.resize(raw.label, (128, 128), interpolation=cv2.INTER_NEAREST_EXACT)
        assert np.array_equal(label, whole) or np.array_equal(label, whole[:, ::-1])


def test_train_transform_refuses_a_label_of_another_size():
    raw = encoded_sample()
    with pytest.raises(ValueError, match="'encoded' has a 192×128 label for a 96×64 image"):
        TrainTransform()(raw._replace(label=np.zeros((128, 192), np.uint8)))


def test_eval_transform_converts_without_augmentation():
    raw = encoded_sample()
    sample = EvalTransform()(raw)
    assert isinstance(sample, Sample)
    assert sample.image.dtype == torch.float32 and sample.label.dtype == torch.int64
    np.testing.assert_array_equal(sample.image.numpy(), raw.image.transpose(2, 0, 1) / np.float32(255))
    np.testing.assert_array_equal(sample.label.numpy(), raw.label)
    np.testing.assert_array_equal(sample.exposure.numpy(), raw.image.max(axis=2)[None] / np.float32(255))


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.transform(self.samples[index])
