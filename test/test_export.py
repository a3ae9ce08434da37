"""``egnet export --onnx`` and ONNX Runtime as the Segmenter's network, against PyTorch on the same frames."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from helpers import random_frames

from egnet_core.cli import main
from egnet_core.config import ModelConfig
from egnet_core.deploy.export import CONFIG_KEY, OPSET, onnx_opset, supported_opsets
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.onnx_runtime import OnnxNetwork
from egnet_core.model.checkpoint import load_model

# Each test exports or runs an ONNX graph (seconds of tracing): the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(exported):
    """The PyTorch model of conftest's ``exported`` graphs."""
    return load_model(exported["checkpoint"])


def test_the_graph_has_both_outputs_the_stated_opset_and_the_model_config(exported, model):
    graph = onnx.load(str(exported["dynamic"]))
    onnx.checker.check_model(graph)
    assert [o.name for o in graph.graph.output] == ["logits", "exposure"]
    assert [i.name for i in graph.graph.input] == ["images"]
    assert {o.domain: o.version for o in graph.opset_import}[""] == OPSET
    network = OnnxNetwork(exported["dynamic"], device=torch.device("cpu"))
    assert network.config == ModelConfig(backbone="resnet18", output_stride=32)
    assert network.fixed_size is None and network.fixed_batch is None
    static = OnnxNetwork(exported["static"], device=torch.device("cpu"))
    assert static.fixed_size == (128, 64) and static.fixed_batch == 1


@pytest.mark.parametrize("kind, size", [("dynamic", (96, 160)), ("dynamic", (64, 128)), ("static", (64, 128))])
def test_onnx_runtime_gives_pytorchs_outputs(exported, model, kind, size):
    height, width = size
    network = OnnxNetwork(exported[kind], device=torch.device("cpu"))
    images = torch.rand(2, 3, height, width)
    with torch.no_grad():
        expected = model.eval()(images)
    got = network(images)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.exposure, expected.exposure, atol=1e-5, rtol=1e-5)


def test_the_segmenter_runs_an_onnx_file_like_a_checkpoint(exported):
    batch = random_frames(3, width=110, height=70)
    reference = Segmenter.from_checkpoint(exported["checkpoint"], input_size=(128, 64)).predict_batch(batch)
    for kind in ("dynamic", "static"):
        results = Segmenter.from_checkpoint(exported[kind], input_size=(128, 64)).predict_batch(batch)
        for a, b in zip(reference, results):
            assert a.labels.shape == (70, 110)
            assert (a.labels == b.labels).mean() >= 0.999
            np.testing.assert_allclose(a.exposure, b.exposure, atol=1e-4)


def test_a_static_graph_needs_its_own_input_size_and_fp32(exported):
    with pytest.raises(ValueError, match=r"static input of 128x64; set the input size to 128x64 \(got None\)"):
        Segmenter.from_checkpoint(exported["static"])
    with pytest.raises(ValueError, match=r"fp32 \(or auto\) and compile and cuda_graphs off, got 'bf16'"):
        Segmenter.from_checkpoint(exported["dynamic"], precision="bf16")
    with pytest.raises(ValueError, match="another architecture: backbone='resnet18'"):
        Segmenter.from_checkpoint(exported["dynamic"], expect=ModelConfig())
    with pytest.raises(ValueError,
                       match="multi-scale and sliding-window protocols need a graph exported with --dynamic"):
        Segmenter.from_checkpoint(exported["static"], input_size=(128, 64), scales=(1.0, 1.5))
    flipped = Segmenter.from_checkpoint(exported["static"], input_size=(128, 64), flip=True)  # same size: fine
    assert flipped.predict(random_frames(1, width=110, height=70)[0]).labels.shape == (70, 110)


def test_an_onnx_graph_has_no_attention_maps_and_says_to_use_its_checkpoint(exported):
    segmenter = Segmenter.from_checkpoint(exported["dynamic"])
    assert not segmenter.has_attention
    with pytest.raises(ValueError, match="returns no attention maps; use the .pt checkpoint it was exported from"):
        segmenter.attention_maps(random_frames(1, width=64, height=32))
    assert Segmenter.from_checkpoint(exported["checkpoint"]).has_attention


def test_an_onnx_runtime_failure_is_a_runtime_error_like_torchs_device_errors(exported):
    network = OnnxNetwork(exported["static"], device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match=r"ONNX Runtime failed on a \(1, 3, 96, 160\) batch"):
        network(torch.rand(1, 3, 96, 160))


def test_bad_onnx_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx' does not exist"):
        Segmenter.from_checkpoint(tmp_path / "missing.onnx")
    (tmp_path / "notes.onnx").write_text("not a graph")
    with pytest.raises(ValueError, match="notes.onnx' cannot be loaded by ONNX Runtime"):
        Segmenter.from_checkpoint(tmp_path / "notes.onnx")


def test_a_foreign_onnx_graph_without_the_config_is_refused(tmp_path):
    torch.onnx.export(torch.nn.Conv2d(3, 1, 1).eval(), (torch.rand(1, 3, 32, 32),), str(tmp_path / "foreign.onnx"),
                      dynamo=True)
    with pytest.raises(ValueError, match="carries no 'egnet_model_config': export it with `egnet export`"):
        Segmenter.from_checkpoint(tmp_path / "foreign.onnx")


def test_the_export_command_checks_its_graph_against_pytorch(tmp_path, tiny_checkpoint, capsys):
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx"),
                 "--size", "128x64"]) == 0
    out = capsys.readouterr().out
    assert f"opset {OPSET}, batch 1, 128x64" in out
    agreement = float(out.split("PyTorch on a night frame: ")[1].split("%")[0])
    assert agreement >= 99.9


def opset_of(path) -> int:
    return {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""]


def test_the_export_writes_the_opset_asked_for_or_refuses_it_leaving_the_file_alone(exported, tmp_path, capsys):
    # Opsets below 18 come from ONNX's version converter: written as asked where it can go that far down.
    opsets = supported_opsets()
    lowest, highest = opsets[0], opsets[-1]
    path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(exported["checkpoint"]), "--onnx", str(path), "--size", "64x32",
                 "--opset", str(lowest)]) == 0
    assert opset_of(path) == onnx_opset(path) == lowest
    assert f"(opset {lowest}, batch 1, 64x32)" in capsys.readouterr().out
    before = path.read_bytes()
    for opset in (lowest - 1, 7, highest + 1):  # the converter has no Shape below 15; onnx knows no higher
        assert main(["export", "--checkpoint", str(exported["checkpoint"]), "--onnx", str(path), "--size", "64x32",
                     "--opset", str(opset)]) == 2
        error = capsys.readouterr().err
        assert f"egnet export: error: opset {opset} cannot be written: use an opset from {lowest} to {highest}" \
               in error, error
        assert "Traceback" not in error
        assert path.read_bytes() == before  # the earlier export is still there, unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # and nothing else is left behind


def with_metadata(source, path, **config_changes):
    """A copy of an exported file whose model config in the metadata says something else."""
    graph = onnx.load(str(source))
    props = {prop.key: prop.value for prop in graph.metadata_props}
    props[CONFIG_KEY] = json.dumps(json.loads(props[CONFIG_KEY]) | config_changes)
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(path))
    return path


@pytest.mark.parametrize("kind", ["static", "dynamic"])
@pytest.mark.parametrize("classes", [3, 10**9])
def test_metadata_that_disagrees_with_the_graph_is_refused_when_the_file_is_opened(exported, tmp_path, kind, classes):
    edited = with_metadata(exported[kind], tmp_path / f"{classes}.onnx", num_classes=classes)
    message = (f"'{edited}' says {classes} classes in its metadata \\('egnet_model_config'\\), but its graph's "
               "'logits' output has 19: export it again with `egnet export`")
    with pytest.raises(ValueError, match=message):
        OnnxNetwork(edited, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=message):
        Segmenter.from_checkpoint(edited, input_size=(128, 64))


def test_a_graph_without_a_fixed_class_dimension_is_refused(exported, tmp_path):
    graph = onnx.load(str(exported["dynamic"]))
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"  # logits: B×classes×H×W
    onnx.save(graph, str(tmp_path / "symbolic.onnx"))
    with pytest.raises(ValueError, match=r"'logits' output has no fixed number of classes \('classes'\)"):
        OnnxNetwork(tmp_path / "symbolic.onnx", device=torch.device("cpu"))


def test_an_onnx_model_with_precision_auto_runs_as_exported_without_a_trial(exported):
    segmenter = Segmenter.from_checkpoint(exported["static"], precision="auto", input_size=(128, 64))
    segmenter.warm_up()
    assert segmenter.precision == "fp32" and segmenter.precision_choice is None
