import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import constant_model, random_frames, tiny_model

from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import SlidingWindow


@pytest.fixture(scope="module")
def model():
    """One tiny EGNet for the tests that only read it: building one costs more than most tests here."""
    return tiny_model()


def _tensor(frame):
    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255  # 1×3×H×W


def test_flip_averages_the_model_on_the_image_and_on_its_mirror(model):
    frame = random_frames(1, width=80, height=48)[0]
    with torch.no_grad():
        plain, mirrored = model(_tensor(frame)), model(_tensor(frame).flip(-1))
    expected_logits = (plain.logits + mirrored.logits.flip(-1)) / 2
    expected_exposure = (plain.exposure + mirrored.exposure.flip(-1)) / 2
    result = Segmenter(model, flip=True).predict(frame)
    np.testing.assert_array_equal(result.labels, expected_logits.argmax(1)[0].numpy())
    np.testing.assert_allclose(result.exposure, expected_exposure[0, 0].numpy(), atol=1e-6)
    # The mirror really changes the answer, so the comparison above is not the plain prediction in disguise.
    assert (result.labels != plain.logits.argmax(1)[0].numpy()).any()


def test_a_single_unit_scale_is_the_plain_prediction(model):
    frame = random_frames(1, width=80, height=48)[0]
    plain = Segmenter(model, input_size=(64, 48)).predict(frame)
    scaled = Segmenter(model, input_size=(64, 48), scales=(1.0,)).predict(frame)
    np.testing.assert_array_equal(scaled.labels, plain.labels)
    np.testing.assert_array_equal(scaled.exposure, plain.exposure)


def test_multi_scale_averages_logits_at_the_output_size(model):
    frame = random_frames(1, width=64, height=48)[0]
    with torch.no_grad():
        small = model(F.interpolate(_tensor(frame), size=(36, 48), mode="bilinear", align_corners=False)).logits
        full = model(_tensor(frame)).logits
    expected = (F.interpolate(small, size=(48, 64), mode="bilinear", align_corners=False) + full) / 2
    result = Segmenter(model, scales=(0.75, 1.0)).predict(frame)
    np.testing.assert_array_equal(result.labels, expected.argmax(1)[0].numpy())


def test_a_window_the_size_of_the_image_is_whole_image_inference(model):
    frame = random_frames(1, width=80, height=48)[0]
    plain = Segmenter(model).predict(frame)
    windowed = Segmenter(model, sliding_window=SlidingWindow(size=(80, 48), stride=(80, 48))).predict(frame)
    np.testing.assert_array_equal(windowed.labels, plain.labels)
    np.testing.assert_array_equal(windowed.exposure, plain.exposure)


def test_overlapping_windows_cover_every_pixel():
    # Any pixel no window reached would be 0/0 = NaN, whose argmax is class 0, not the constant class 7.
    window = SlidingWindow(size=(40, 32), stride=(16, 16))  # columns at 0, 16, 24; rows at 0, 16
    segmenter = Segmenter(constant_model(7), sliding_window=window, input_size=(64, 48))
    result = segmenter.predict(random_frames(1, width=80, height=48)[0])
    assert result.labels.shape == (48, 80)
    assert (result.labels == 7).all()
    assert np.isfinite(result.exposure).all()


def test_output_size_gives_labels_and_exposure_at_that_size(model):
    segmenter = Segmenter(model, input_size=(64, 64))
    frame = random_frames(1, width=80, height=40)[0]
    results = segmenter.predict_batch([frame, frame], output_size=(160, 80))
    assert [r.labels.shape for r in results] == [(80, 160), (80, 160)]
    assert results[0].exposure.shape == (80, 160)
    np.testing.assert_array_equal(
        segmenter.predict(frame, output_size=(80, 40)).labels, segmenter.predict(frame).labels
    )


def test_the_papers_protocol_resizes_in_then_scales_logits_to_the_label_size(model):
    frame = random_frames(1, width=64, height=32)[0]
    with torch.no_grad():
        network = model(F.interpolate(_tensor(frame), size=(48, 48), mode="bilinear", align_corners=False)).logits
    expected = F.interpolate(network, size=(64, 128), mode="bilinear", align_corners=False).argmax(1)[0]
    result = Segmenter(model, input_size=(48, 48)).predict(frame, output_size=(128, 64))
    np.testing.assert_array_equal(result.labels, expected.numpy())


def test_protocols_combine(model):
    segmenter = Segmenter(
        model, input_size=(64, 48), flip=True, scales=(0.75, 1.0), sliding_window=SlidingWindow((48, 40), (32, 32))
    )
    result = segmenter.predict(random_frames(1, width=80, height=48)[0], output_size=(55, 35))
    assert result.labels.shape == result.exposure.shape == (35, 55)
    assert result.labels.max() < 19 and 0.0 <= result.exposure.min() <= result.exposure.max() <= 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scales": ()}, r"scales must be a non-empty sequence of positive factors, got \(\)"),
        ({"scales": (1.0, 0)}, r"scales must be positive finite numbers, got 0"),
        ({"scales": 1.5}, r"scales must be a non-empty sequence of positive factors, got 1.5"),
        ({"scales": (0.25,), "input_size": (64, 64)}, r"scale 0.25 shrinks input_size \(64, 64\)"),
        ({"flip": "yes"}, r"flip must be True or False, got 'yes'"),
        ({"sliding_window": (64, 64)}, r"sliding_window must be a SlidingWindow or None, got \(64, 64\)"),
    ],
)
def test_bad_protocol_options_are_named(model, options, message):
    with pytest.raises(ValueError, match=message):
        Segmenter(model, **options)


def test_bad_windows_and_output_sizes_are_named(model):
    with pytest.raises(ValueError, match=r"window size .* got \(16, 64\)"):
        SlidingWindow(size=(16, 64), stride=(8, 8))
    with pytest.raises(ValueError, match=r"leaves gaps: stride \(80, 10\)"):
        SlidingWindow(size=(64, 64), stride=(80, 10))
    with pytest.raises(ValueError, match=r"stride .* got \(0, 10\)"):
        SlidingWindow(size=(64, 64), stride=(0, 10))
    with pytest.raises(ValueError, match=r"output_size .* got \(0, 10\)"):
        Segmenter(model).predict(random_frames(1, width=80, height=48)[0], output_size=(0, 10))
