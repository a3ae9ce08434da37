import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    random_frames,
    tiny_model,
    tiny_torchvision_model,
    with_egl_attention,
    with_running_statistics,
)

from egnet_core.data.exposure import exposure_map
from egnet_core.data.labels import PALETTE
from egnet_core.deploy.inference import Segmenter, to_network_input
from egnet_core.deploy.labels import LabelMaps
from egnet_core.deploy.options import available_cpus, resolve_device, resolve_threads
from egnet_core.model.checkpoint import save_checkpoint


def test_results_come_back_at_each_frames_own_size_whatever_the_network_size():
    segmenter = Segmenter(tiny_model(), input_size=(64, 96))
    results = segmenter.predict_batch(random_frames(2, width=110, height=70))
    assert len(results) == 2
    for result in results:
        assert result.labels.shape == (70, 110) and result.labels.dtype == np.uint8
        assert result.exposure.shape == (70, 110) and result.exposure.dtype == np.float32
        assert result.labels.max() < 19
        assert 0.0 <= result.exposure.min() and result.exposure.max() <= 1.0


def test_labels_are_the_argmax_of_the_model_at_native_size():
    model = tiny_model()
    frame = random_frames(1, width=110, height=70)[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255).logits
    np.testing.assert_array_equal(Segmenter(model, optimize=False).predict(frame).labels, logits.argmax(1)[0].numpy())


def test_tied_logits_give_the_first_tied_class_as_argmax_does():
    model = tiny_model()
    with torch.no_grad():  # every pixel's logits: 1 for classes 3 and 7, 0 for the others
        model.segmentation_head.weight.zero_()
        model.segmentation_head.bias.zero_()
        model.segmentation_head.bias[[3, 7]] = 1.0
    labels = Segmenter(model, optimize=False).predict(random_frames(1, width=96, height=64)[0]).labels
    assert (labels == 3).all(), np.unique(labels)


def test_the_optimized_path_computes_the_same_function():
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=128, height=96)
    plain = Segmenter(model, optimize=False).predict_batch(frames)
    fast = Segmenter(model).predict_batch(frames)
    for a, b in zip(plain, fast):
        assert (a.labels == b.labels).mean() >= 0.999
        np.testing.assert_allclose(a.exposure, b.exposure, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the caller's model is not changed"


def test_bf16_on_the_cpu_stays_close_to_fp32():
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=128, height=96)
    fp32 = Segmenter(model).predict_batch(frames)
    bf16 = Segmenter(model, precision="bf16").predict_batch(frames)
    assert bf16[0].exposure.dtype == np.float32
    for a, b in zip(fp32, bf16):
        assert np.abs(a.exposure - b.exposure).mean() < 1e-2
        # random weights: many near-ties; the benchmark checks a trained model
        assert (a.labels == b.labels).mean() >= 0.9


def test_confidence_threshold_marks_unsure_pixels_as_ignore():
    frame = random_frames(1, width=110, height=70)[0]
    assert (Segmenter(tiny_model(), confidence_threshold=1.0).predict(frame).labels == 255).all()
    assert (Segmenter(tiny_model(), confidence_threshold=0.0).predict(frame).labels < 19).all()


def test_confidence_is_the_top_softmax_probability_the_threshold_compares():
    model = tiny_model()
    frame = random_frames(1, width=110, height=70)[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255).logits
    expected = logits.softmax(1).amax(1)[0].numpy()
    result = Segmenter(model, optimize=False).predict(frame, confidence=True)
    assert result.confidence.shape == (70, 110) and result.confidence.dtype == np.float32
    np.testing.assert_allclose(result.confidence, expected, atol=1e-6)
    assert Segmenter(model).predict(frame).confidence is None  # computed only when asked for
    threshold = float(np.median(expected))
    thresholded = Segmenter(model, optimize=False, confidence_threshold=threshold).predict(frame, confidence=True)
    np.testing.assert_array_equal(thresholded.labels == 255, thresholded.confidence < threshold)


def test_bad_frames_and_options_are_named():
    segmenter = Segmenter(tiny_model())
    with pytest.raises(ValueError, match="frames of one size"):
        segmenter.predict_batch(random_frames(1, width=110, height=70) + random_frames(1, width=110, height=80))
    with pytest.raises(ValueError, match=r"H×W×3 RGB, got shape \(64, 64\)"):
        segmenter.predict(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8, got \\['float64'\\]"):
        segmenter.predict(np.zeros((64, 64, 3)))
    with pytest.raises(ValueError, match="input_size"):
        Segmenter(tiny_model(), input_size=(16, 16))
    with pytest.raises(ValueError, match="confidence_threshold must lie in \\[0, 1\\], got 2"):
        Segmenter(tiny_model(), confidence_threshold=2)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, got 'int8'"):
        Segmenter(tiny_model(), precision="int8")
    with pytest.raises(ValueError, match="fp16 precision needs a CUDA device, got 'cpu'; use bf16 on the CPU"):
        Segmenter(tiny_model(), precision="fp16", device="cpu")


def test_device_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="got 'tpu'"):
        resolve_device("tpu")


@pytest.mark.integration
def test_cuda_asked_for_where_there_is_none_is_named():
    # A process that sees no GPU, also on a machine that has one.
    script = "from egnet_core.deploy.options import resolve_device; resolve_device('cuda:0')"
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                               env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})
    assert completed.returncode == 1
    assert "device 'cuda:0' was asked for, but CUDA is not available on this machine" in completed.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_index_beyond_the_machine_is_named():
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"does not exist: this machine has {count} GPU"):
        resolve_device(f"cuda:{count}")


def test_threads_are_at_least_one_and_capped_at_the_cpus_this_process_may_use(caplog):
    cpus = len(os.sched_getaffinity(0))  # what `taskset` or a container's cpuset leaves to this process
    assert available_cpus() == cpus
    with caplog.at_level(logging.WARNING):
        assert resolve_threads(1, name="--threads") == 1
        assert resolve_threads(cpus, name="--threads") == cpus
        assert not caplog.records
        assert resolve_threads(9999, name="--threads") == cpus
    assert caplog.messages == [f"--threads is 9999, more than the {cpus} CPU(s) this process may use: using {cpus}"]
    with pytest.raises(ValueError, match="parameter 'threads' must be at least 1, got 0"):
        resolve_threads(0, name="parameter 'threads'")


def test_colours_are_the_labels_in_the_cityscapes_palette():
    frame = random_frames(1, width=110, height=70)[0]
    result = Segmenter(tiny_model(), confidence_threshold=0.2).predict(frame, color=True)
    expected = np.zeros(frame.shape, np.uint8)
    known = result.labels < 19
    expected[known] = PALETTE[result.labels[known]]  # ignored pixels stay black
    np.testing.assert_array_equal(result.color, expected)
    assert Segmenter(tiny_model()).predict(frame).color is None


@pytest.mark.slow
def test_torch_compile_computes_the_same_function():
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=96, height=64)
    plain = Segmenter(model).predict_batch(frames)
    compiled = Segmenter(model, compile=True).predict_batch(frames)
    for a, b in zip(plain, compiled):
        assert (a.labels == b.labels).mean() >= 0.999
        np.testing.assert_allclose(a.exposure, b.exposure, atol=1e-4)


@pytest.mark.slow
def test_compiled_cpu_labels_come_from_the_last_stages_logits_in_one_pass_and_equal_the_eager_ones():
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=96, height=64)
    eager = Segmenter(model, input_size=(128, 64))
    compiled = Segmenter(model, input_size=(128, 64), compile=True)
    assert compiled._eager.logits_at_input_size is False and model.logits_at_input_size is True
    network_input = F.interpolate(to_network_input(torch.from_numpy(np.stack(frames))), (64, 128), mode="bilinear",
                                  align_corners=False).contiguous(memory_format=torch.channels_last)
    for size in (None, (200, 100)):
        results = compiled.predict_batch(frames, output_size=size)
        with torch.no_grad():  # ResNet-18 at output stride 32: the network's logits are 4×2 for a 128×64 input
            logits = compiled.model(network_input).logits
        assert logits.shape[-2:] == (2, 4)
        # The compiled pass's labels are eager label_map's of the same logits, resized as the eager path resizes.
        expected = LabelMaps(compiled=False)(logits, (64, 128), (size or (96, 64))[::-1])
        np.testing.assert_array_equal(np.stack([r.labels for r in results]), expected.numpy())
        for a, b in zip(eager.predict_batch(frames, output_size=size), results):  # compiled convolutions round apart
            assert (a.labels == b.labels).mean() >= 0.995
            np.testing.assert_allclose(a.exposure, b.exposure, atol=1e-5)
    with_confidence = compiled.predict(frames[0], confidence=True)  # the softmax needs the full-size logits
    np.testing.assert_array_equal(with_confidence.labels, compiled.predict(frames[0]).labels)
    # Protocols that average views at the output size keep the network's full-size logits.
    assert Segmenter(model, compile=True, flip=True)._eager.logits_at_input_size is True
    assert Segmenter(model, compile=True, scales=(0.5, 1.0))._eager.logits_at_input_size is True


@pytest.mark.slow
def test_frames_at_the_input_size_take_the_whole_factor_labels_pass_with_eager_labels():
    """A 128×64 frame at a 128×64 input: the logits (4×2 at output stride 32) are enlarged 32× straight to the
    frame, the compiled pass's whole-factor blend (labels.upsampled_label_map)."""
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=128, height=64)
    compiled = Segmenter(model, input_size=(128, 64), compile=True)
    assert compiled._labels.upsamples((2, 4), (64, 128), (64, 128))
    results = compiled.predict_batch(frames)
    network_input = to_network_input(torch.from_numpy(np.stack(frames))).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        logits = compiled.model(network_input).logits
    expected = LabelMaps(compiled=False)(logits, (64, 128), (64, 128))
    np.testing.assert_array_equal(np.stack([r.labels for r in results]), expected.numpy())
    for a, b in zip(Segmenter(model).predict_batch(frames), results):  # compiled convolutions round apart
        assert (a.labels == b.labels).mean() >= 0.995


def test_label_map_compiled_resizes_and_takes_the_first_of_tied_maxima_as_eager():
    torch.manual_seed(0)
    logits = torch.randn(2, 19, 8, 16)
    logits[:, 3] = logits.amax(1) + 1
    logits[:, 7] = logits[:, 3]  # tied with class 3 everywhere: the first wins, as with argmax
    eager, compiled = LabelMaps(compiled=False), LabelMaps(compiled=True)
    wide = F.interpolate(logits, (64, 128), mode="bilinear", align_corners=False)
    expected = F.interpolate(wide, (50, 100), mode="bilinear", align_corners=False).argmax(1)
    for labels in (eager(logits, (64, 128), (50, 100)), compiled(logits, (64, 128), (50, 100))):
        assert labels.dtype == torch.uint8 and torch.equal(labels.long(), expected) and (labels == 3).all()
    assert torch.equal(compiled(logits.bfloat16(), (8, 16), (8, 16)).long(), logits.bfloat16().float().argmax(1))
    channels_last = logits.contiguous(memory_format=torch.channels_last)  # as a channels-last network returns them
    assert torch.equal(compiled(channels_last, (64, 128), (50, 100)).long(), expected)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_cpu_convolutions_run_fused_with_their_relu_and_add(precision):
    # Inductor's freezing: oneDNN convolutions with the ReLU and residual add as post-ops, none left unfused
    segmenter = Segmenter(tiny_model(), compile=True, precision=precision)
    frame = random_frames(1, width=96, height=64)[0]
    segmenter.predict(frame)  # compiles
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        segmenter.predict(frame)
    calls = {event.key: event.count for event in profiler.key_averages()}
    assert any(name.startswith("mkldnn::_convolution_pointwise") for name in calls)
    assert "aten::mkldnn_convolution" not in calls


def test_cuda_only_options_are_refused_on_the_cpu_by_name():
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device, got 'cpu'"):
        Segmenter(tiny_model(), cuda_graphs=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("options", [{}, {"precision": "fp16"}, {"precision": "bf16"}, {"cuda_graphs": True},
                                     {"precision": "fp16", "cuda_graphs": True}], ids=str)
def test_cuda_paths_agree_with_the_cpu(options):
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=128, height=96)
    reference = Segmenter(model).predict_batch(frames, color=True)
    segmenter = Segmenter(model, device="cuda", **options)
    for _ in range(2):  # the second call replays the captured graph and reuses the pinned buffer
        results = segmenter.predict_batch(frames, color=True)
    for a, b in zip(reference, results):
        assert (a.labels == b.labels).mean() >= 0.99
        assert np.abs(a.exposure - b.exposure).mean() < 1e-2
        np.testing.assert_array_equal(b.color[b.labels < 19], PALETTE[b.labels[b.labels < 19]])


@pytest.mark.parametrize("arch", ["deeplabv3", "fcn"])
def test_a_torchvision_network_gives_labels_and_the_frames_measured_exposure(arch):
    model = with_running_statistics(tiny_torchvision_model(arch))
    frames = random_frames(2, width=110, height=70)
    plain = Segmenter(model, optimize=False).predict_batch(frames)
    fast = Segmenter(model).predict_batch(frames)  # BatchNorm folded into torchvision's heads too
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255).logits
    for frame, a, b, expected in zip(frames, plain, fast, logits.argmax(1).numpy()):
        np.testing.assert_array_equal(a.labels, expected)
        assert (b.labels == a.labels).mean() >= 0.999
        # No exposure stream: the exposure map is the frame's own V channel.
        np.testing.assert_allclose(a.exposure, exposure_map(frame), atol=1e-6)
        np.testing.assert_allclose(b.exposure, exposure_map(frame), atol=1e-6)


def test_loading_a_network_without_an_exposure_stream_says_that_exposure_is_measured(tmp_path, caplog):
    checkpoint = save_checkpoint(tmp_path / "deeplabv3.pt", tiny_torchvision_model())
    with caplog.at_level(logging.INFO, logger="egnet_core"):
        Segmenter.from_checkpoint(checkpoint)
    said = [r.getMessage() for r in caplog.records if "without an exposure stream" in r.getMessage()]
    assert said == [f"{checkpoint} is a deeplabv3 network without an exposure stream: its exposure maps are each "
                    "frame's measured exposure (V of HSV), not a prediction"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="egnet_core"):
        Segmenter.from_checkpoint(save_checkpoint(tmp_path / "egnet.pt", tiny_model()))
    assert "without an exposure stream" not in caplog.text


def test_attention_maps_come_back_at_the_frames_size_or_the_size_asked_for():
    segmenter = Segmenter(with_egl_attention(tiny_model(), stage2=0.25, stage3=0.75), input_size=(96, 64))
    assert segmenter.has_attention
    frames = random_frames(2, width=110, height=70)
    maps = segmenter.attention_maps(frames)
    assert len(maps) == 2
    for attention in maps:
        assert attention.stage2.shape == attention.stage3.shape == (70, 110)
        assert attention.stage2.dtype == np.float32
        np.testing.assert_allclose(attention.stage2, 0.25, atol=1e-5)
        np.testing.assert_allclose(attention.stage3, 0.75, atol=1e-5)
    (larger,) = segmenter.attention_maps(frames[:1], output_size=(220, 140))
    assert larger.stage2.shape == (140, 220)


def test_attention_maps_follow_the_features_of_a_trained_like_egl():
    model = with_running_statistics(tiny_model())
    frame = random_frames(1, width=128, height=64)[0]
    (attention,) = Segmenter(model).attention_maps([frame])  # BatchNorm folded: the same function
    with torch.no_grad():
        stage2, stage3 = model.attention_maps(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)
    expected = torch.nn.functional.interpolate(stage2, size=(64, 128), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(attention.stage2, expected[0, 0].numpy(), atol=1e-4)
    assert attention.stage3.std() > 0


@pytest.mark.parametrize(("model", "named"), [(lambda: tiny_torchvision_model("fcn"), "fcn (resnet18)"),
                                               (lambda: tiny_model(variant="no_egl"), "EGNet variant 'no_egl'")])
def test_attention_maps_are_refused_for_networks_without_an_egl(model, named):
    segmenter = Segmenter(model())
    assert not segmenter.has_attention
    with pytest.raises(ValueError, match=f"the model is {re.escape(named)}.*which has no Exposure Guidance Layer"):
        segmenter.attention_maps(random_frames(1, width=64, height=32))
