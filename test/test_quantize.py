"""int8 quantization of an exported EGNet (``egnet export --int8``), run by ONNX Runtime against the float model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from helpers import night_frames, snapshot

from egnet_core.cli import main
from egnet_core.data.imageio import write_rgb
from egnet_core.deploy.export import CONFIG_KEY, PRECISION_KEY
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.onnx_runtime import OnnxNetwork
from egnet_core.deploy.quantize import FLOAT_WEIGHTS, calibration_images, quantize_onnx

# Each test exports, quantizes or runs an ONNX graph: the slow tier.
pytestmark = pytest.mark.slow

SIZE = (128, 64)


def int8_convolutions(path) -> tuple[int, set[str]]:
    """How many convolutions take int8 weights (through a DequantizeLinear), and the weights of the others."""
    graph = onnx.load(str(path)).graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    int8, float_weights = 0, set()
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        weight = producers.get(conv.input[1])
        if weight is not None and weight.op_type == "DequantizeLinear":
            assert initializers[weight.input[0]].data_type == onnx.TensorProto.INT8
            int8 += 1
        else:
            float_weights.add(conv.input[1])
    return int8, float_weights


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "int8.onnx"
    return quantize_onnx(exported["static"], path, night_frames(4, seed=1), size=SIZE)


def test_convolutions_become_int8_except_the_heads_and_the_config_travels(exported, quantized):
    metadata = {p.key: p.value for p in onnx.load(str(quantized)).metadata_props}
    assert metadata[CONFIG_KEY] == {
        p.key: p.value for p in onnx.load(str(exported["static"])).metadata_props
    }[CONFIG_KEY]
    assert metadata[PRECISION_KEY] == "int8"
    int8, float_weights = int8_convolutions(quantized)
    assert float_weights == set(FLOAT_WEIGHTS) and int8 > 20
    # Every ReLU right after a convolution is folded into that convolution's quantized output.
    float_graph = onnx.load(str(exported["static"])).graph
    producers = {output: node.op_type for node in float_graph.node for output in node.output}
    relus = [node for node in float_graph.node if node.op_type == "Relu"]
    after_conv = sum(producers[node.input[0]] == "Conv" for node in relus)
    left = sum(node.op_type == "Relu" for node in onnx.load(str(quantized)).graph.node)
    assert after_conv > 10 and left == len(relus) - after_conv
    assert OnnxNetwork(quantized, device=torch.device("cpu")).precision == "int8"
    assert OnnxNetwork(exported["static"], device=torch.device("cpu")).precision == "fp32"


def test_the_int8_model_runs_in_the_segmenter_close_to_the_float_one(exported, quantized):
    frames = night_frames(3, width=150, height=90, seed=2)
    reference = Segmenter.from_checkpoint(exported["checkpoint"], input_size=SIZE).predict_batch(frames)
    results = Segmenter.from_checkpoint(quantized, input_size=SIZE).predict_batch(frames)
    assert Segmenter.from_checkpoint(quantized, input_size=SIZE).precision == "int8"
    for a, b in zip(reference, results):
        assert b.labels.shape == (90, 150)
        assert (a.labels == b.labels).mean() >= 0.85  # an untrained model: small margins between classes
        assert np.abs(a.exposure - b.exposure).mean() <= 2e-2
        assert not np.array_equal(a.exposure, b.exposure)  # it is another network, not the float file again


def test_a_dynamic_graph_quantizes_on_frames_of_any_size_and_runs_at_other_sizes(exported, tmp_path):
    frames = night_frames(1, width=200, height=100, seed=1) + night_frames(1, width=64, height=48, seed=2)
    path = quantize_onnx(exported["dynamic"], tmp_path / "int8.onnx", frames, size=SIZE)
    result = Segmenter.from_checkpoint(path, input_size=(96, 64)).predict(night_frames(1, seed=3)[0])
    assert result.labels.shape == (64, 128)


def test_bad_quantization_inputs_are_named_and_the_source_is_untouched(exported, tmp_path):
    source = exported["static"]
    before = snapshot(source.parent)
    frames = night_frames(1, seed=1)
    with pytest.raises(ValueError, match="needs at least one calibration frame"):
        quantize_onnx(source, tmp_path / "a.onnx", [], size=SIZE)
    with pytest.raises(ValueError, match=r"calibration frame 1 must be H×W×3 uint8 RGB, got float32 \(64, 128, 3\)"):
        quantize_onnx(source, tmp_path / "a.onnx", [frames[0], frames[0].astype(np.float32)], size=SIZE)
    with pytest.raises(ValueError, match="static input of 128x64; set the input size to 128x64 \\(got \\(96, 64\\)\\)"):
        quantize_onnx(source, tmp_path / "a.onnx", frames, size=(96, 64))
    with pytest.raises(ValueError, match="must go to another file than its source"):
        quantize_onnx(source, source, frames, size=SIZE)
    with pytest.raises(FileNotFoundError, match="missing.onnx' does not exist"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "a.onnx", frames, size=SIZE)
    assert not (tmp_path / "a.onnx").exists()
    assert snapshot(source.parent) == before


def test_a_graph_that_egnet_did_not_export_is_refused(exported, tmp_path):
    graph = onnx.load(str(exported["static"]))
    for initializer in graph.graph.initializer:  # as another exporter might name the head's weights
        if initializer.name == "segmentation_head.weight":
            initializer.name = "classifier.weight"
    for node in graph.graph.node:
        node.input[:] = ["classifier.weight" if i == "segmentation_head.weight" else i for i in node.input]
    onnx.save(graph, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="no convolution with weights 'segmentation_head.weight' to keep in float"):
        quantize_onnx(tmp_path / "foreign.onnx", tmp_path / "a.onnx", night_frames(1, seed=1), size=SIZE)


def test_calibration_images_are_spread_over_a_folder(tmp_path):
    for index, frame in enumerate(night_frames(6, seed=4)):
        write_rgb(tmp_path / "drive" / f"{index:02d}.png", frame)
    (tmp_path / "drive" / "notes.txt").write_text("not an image")
    picked = calibration_images(tmp_path, 3)
    expected = [calibration_images(tmp_path / "drive", 6)[i] for i in (0, 2, 5)]
    assert len(picked) == 3 and all(np.array_equal(a, b) for a, b in zip(picked, expected))
    assert len(calibration_images(tmp_path, 100)) == 6
    with pytest.raises(FileNotFoundError, match="calibration folder '.*nowhere' does not exist"):
        calibration_images(tmp_path / "nowhere", 3)
    with pytest.raises(ValueError, match="00.png' is a file, not a folder of images"):
        calibration_images(tmp_path / "drive" / "00.png", 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .png/.jpg/.jpeg images"):
        calibration_images(tmp_path / "empty", 3)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        calibration_images(tmp_path, 0)


def test_the_export_command_quantizes_with_calibration_images(exported, tmp_path, capsys):
    for index, frame in enumerate(night_frames(3, seed=5)):
        write_rgb(tmp_path / "frames" / f"{index}.jpg", frame)
    out = tmp_path / "int8.onnx"
    args = ["export", "--checkpoint", str(exported["checkpoint"]), "--onnx", str(out), "--size", "128x64"]
    assert main(args + ["--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--calibration-frames", "4"]) == 2
    assert "are for --int8 only" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--int8", "--calibration", str(tmp_path / "frames"), "--calibration-frames", "0"]) == 2
    assert "--calibration-frames must be at least 1, got 0" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--int8", "--calibration", str(tmp_path / "frames")]) == 0
    printed = capsys.readouterr()
    assert "int8 calibrated on 3 images from" in printed.out
    agreement = float(printed.out.split("PyTorch on a night frame: ")[1].split("%")[0])
    assert agreement >= 85
    # Below the benchmark's guard the command says so; an untrained model's small class margins land there.
    assert ("fewer than 99.5% of labels agree with PyTorch" in printed.err) == (agreement < 99.5)
    int8, float_weights = int8_convolutions(out)  # the quantized graph, written where asked
    assert int8 > 20 and float_weights == set(FLOAT_WEIGHTS)
