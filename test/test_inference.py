import numpy as np
import pytest
import torch

from egnet_core.inference import Segmenter, resolve_device
from helpers import tiny_model


def _frames(count=2, height=70, width=110):
    return [np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8) for i in range(count)]


def test_results_come_back_at_each_frames_own_size_whatever_the_network_size():
    segmenter = Segmenter(tiny_model(), input_size=(64, 96))
    results = segmenter.predict_batch(_frames())
    assert len(results) == 2
    for result in results:
        assert result.labels.shape == (70, 110) and result.labels.dtype == np.uint8
        assert result.exposure.shape == (70, 110) and result.exposure.dtype == np.float32
        assert result.labels.max() < 19
        assert 0.0 <= result.exposure.min() and result.exposure.max() <= 1.0


def test_labels_are_the_argmax_of_the_model_at_native_size():
    model = tiny_model()
    frame = _frames(1)[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255).logits
    np.testing.assert_array_equal(Segmenter(model).predict(frame).labels, logits.argmax(1)[0].numpy())


def test_confidence_threshold_marks_unsure_pixels_as_ignore():
    frame = _frames(1)[0]
    assert (Segmenter(tiny_model(), confidence_threshold=1.0).predict(frame).labels == 255).all()
    assert (Segmenter(tiny_model(), confidence_threshold=0.0).predict(frame).labels < 19).all()


def test_bad_frames_and_options_are_named():
    segmenter = Segmenter(tiny_model())
    with pytest.raises(ValueError, match="frames of one size"):
        segmenter.predict_batch(_frames(1) + _frames(1, height=80))
    with pytest.raises(ValueError, match=r"H×W×3 RGB, got shape \(64, 64\)"):
        segmenter.predict(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8, got \\['float64'\\]"):
        segmenter.predict(np.zeros((64, 64, 3)))
    with pytest.raises(ValueError, match="input_size"):
        Segmenter(tiny_model(), input_size=(16, 16))
    with pytest.raises(ValueError, match="confidence_threshold must lie in \\[0, 1\\], got 2"):
        Segmenter(tiny_model(), confidence_threshold=2)


def test_device_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="got 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
