"""The PT2E int8 model (``egnet export --int8 --out model.pt2``) against the float model it came from, trained."""

from __future__ import annotations

import json
import logging
import re
import zipfile

import numpy as np
import pytest
import torch
from conftest import INT8_SIZE
from helpers import calibration_peak_mib, night_frames, snapshot

from egnet_core.cli import main
from egnet_core.data.imageio import write_rgb
from egnet_core.deploy import int8_pt2e
from egnet_core.deploy.export import CONFIG_KEY, PRECISION_KEY
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.int8_pt2e import FLOAT_MODULES, Int8Network, quantize_pt2e
from egnet_core.deploy.int8_recipe import KEPT_PRECISION_KEY
from egnet_core.deploy.precision_choice import EXPOSURE_MAE_CEILING
from egnet_core.model.checkpoint import load_model

# Each test trains, quantizes or compiles: the slow tier.
pytestmark = pytest.mark.slow

CPU = torch.device("cpu")


def test_the_int8_file_stays_close_to_the_labels_and_exposure_of_the_trained_model(trained_int8):
    frames = night_frames(4, width=128, height=64, seed=5)  # not the calibration frames (seed 1)
    reference = Segmenter.from_checkpoint(trained_int8["checkpoint"]).predict_batch(frames)
    int8 = Segmenter.from_checkpoint(trained_int8["int8"], input_size=INT8_SIZE)
    results = int8.predict_batch(frames)
    assert int8.precision == "int8" and int8.config.backbone == "resnet18"
    labels = np.mean([(a.labels == b.labels).mean() for a, b in zip(reference, results)])
    mad = np.mean([np.abs(a.exposure - b.exposure).mean() for a, b in zip(reference, results)])
    # Issue 15's guard, on frames the calibration did not see (the selection aimed a tenth of a point higher).
    assert labels >= 0.995 and mad <= 0.01, (labels, mad)
    # It is an int8 network, not the float one again: its outputs differ a little.
    assert not np.array_equal(reference[0].exposure, results[0].exposure)
    # Its logits stay at the last stage's resolution (output stride 32), the exposure map at the input's: the
    # Segmenter resizes the logits together with its labels in one compiled pass.
    logits, exposure = int8.model(torch.rand(1, 3, 64, 128))
    assert logits.shape == (1, 19, 2, 4) and exposure.shape == (1, 1, 64, 128) and int8._labels.compiled


def test_the_convolutions_are_int8_except_the_stem_the_heads_and_the_chosen_blocks_and_the_config_travels(
        trained_int8):
    extra = {CONFIG_KEY: "", PRECISION_KEY: ""}
    program = torch.export.load(trained_int8["int8"], extra_files=extra)
    assert extra[PRECISION_KEY] == "int8" and json.loads(extra[CONFIG_KEY])["output_stride"] == 32
    convolutions = [node for node in program.graph.nodes if node.target == torch.ops.aten.conv2d.default]
    # An int8 convolution takes its weights through a dequantize node; a float one takes them as they are.
    float_weights = [str(node.args[1].target) for node in convolutions if "dequantize" not in str(node.args[1].target)]
    float_modules = trained_int8["float_modules"]
    assert float_modules[: len(FLOAT_MODULES)] == FLOAT_MODULES
    model = load_model(trained_int8["checkpoint"])
    in_float = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d)
                and any(name == m or name.startswith(f"{m}.") for m in float_modules)]
    # The blocks kept in float are few: most of ResNet-18's 36 convolutions (both streams and the EGLs) are int8.
    assert len(convolutions) - len(float_weights) >= 24 and len(convolutions) == 39
    assert len(float_weights) == len(in_float) and all(
        any(module.replace(".", "_") in weight for module in float_modules) for weight in float_weights)


def test_calibration_memory_does_not_grow_with_the_number_of_frames(trained_int8, tmp_path):
    """The observers keep running statistics, not activations: 32 frames peak no higher than 2 (ONNX Runtime's
    MinMax calibration keeps every frame's activations, 15 GB for ResNet-101 at 1024×512)."""
    quantize = ("from egnet_core.deploy.int8_pt2e import quantize_pt2e\n"
                f"quantize_pt2e({str(trained_int8['checkpoint'])!r}, {str(tmp_path / 'int8.pt2')!r}, frames, "
                "size=(256, 128), guard=None)")  # calibration alone, without the selection's trials
    peaks = {count: calibration_peak_mib(quantize, count) for count in (2, 32)}
    # Measured over the calibration pass alone, the two peaks agree within a MiB. Keeping 30 more resized
    # inputs (0.375 MiB each at 256×128) would add 11 MiB, each frame's outputs (2.6 MiB) 78 MiB, and every
    # activation far more.
    assert peaks[32] - peaks[2] < 4, peaks


def test_blocks_kept_out_by_name_run_in_bf16_and_the_file_says_so(trained_int8, tmp_path, monkeypatch, caplog):
    keep = ("segmentation_stages.1.0", "guidance.0")  # a ResNet block and an EGL, which takes both streams
    int8 = quantize_pt2e(trained_int8["checkpoint"], tmp_path / "kept.pt2", night_frames(16, seed=1), size=INT8_SIZE,
                         keep=keep, float_precision="bf16")
    assert (int8.kept_precision, int8.float_modules) == ("bf16", FLOAT_MODULES + keep)
    assert [trial.float_blocks for trial in int8.selection.trials] == [keep]  # the guard judged them, once
    extra = {KEPT_PRECISION_KEY: ""}
    program = torch.export.load(int8.path, extra_files=extra)
    assert extra[KEPT_PRECISION_KEY] == "bf16"
    weights = [node.args[1] for node in program.graph.nodes if node.target == torch.ops.aten.conv2d.default]
    in_bf16 = [w for w in weights if "dequantize" not in str(w.target) and w.meta["val"].dtype == torch.bfloat16]
    # The block's two convolutions and its downsample, the EGL's attention, and the stem, which runs in the kept
    # blocks' precision.
    assert len(in_bf16) == 4 + 1 and [str(w.target) for w in in_bf16 if "encoder" in str(w.target)], in_bf16
    frames = night_frames(2, width=128, height=64, seed=5)
    reference = Segmenter.from_checkpoint(trained_int8["checkpoint"]).predict_batch(frames)
    results = Segmenter.from_checkpoint(int8.path, input_size=INT8_SIZE).predict_batch(frames)
    assert np.mean([(a.labels == b.labels).mean() for a, b in zip(reference, results)]) >= 0.99
    # A CPU without AVX-512 BF16 or AMX would emulate those blocks: loading the file there says so.
    monkeypatch.setattr(int8_pt2e, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger=int8_pt2e.__name__):
        Int8Network(int8.path, device=CPU)
    assert "keeps some blocks out of int8 in bf16, which this CPU emulates" in caplog.text


def test_quantize_refuses_a_block_it_does_not_have_and_a_precision_it_does_not_offer(trained_int8, tmp_path):
    with pytest.raises(ValueError, match=r"cannot keep 'layer9' out of int8: not a block of this resnet18 network; "
                                         r"its blocks are encoder\.4\.0, "):
        quantize_pt2e(trained_int8["checkpoint"], tmp_path / "m.pt2", night_frames(1), size=INT8_SIZE,
                      keep=("layer9",))
    # Validated before the checkpoint is read: a missing file is not what it reports.
    with pytest.raises(ValueError, match="must be one of auto, fp32, bf16, got 'fp16'"):
        quantize_pt2e(tmp_path / "missing.pt", tmp_path / "m.pt2", night_frames(1), size=INT8_SIZE,
                      float_precision="fp16")
    assert not list(tmp_path.iterdir())


def test_the_export_command_writes_a_pt2_that_the_segmenter_loads(trained_int8, tmp_path, capsys):
    calibration = tmp_path / "camera"
    for index, frame in enumerate(night_frames(3, seed=6)):
        write_rgb(calibration / f"frame_{index}.png", frame)
    before = snapshot(calibration)
    out = tmp_path / "models" / "egnet_int8.pt2"
    assert main(["export", "--checkpoint", str(trained_int8["checkpoint"]), "--out", str(out), "--size", "128x64",
                 "--int8", "--calibration", str(calibration)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (PT2E int8" in printed and "calibrated on 3 images" in printed and "labels equal" in printed
    assert re.search(r"(blocks kept out of int8 in (fp32|bf16)|every block int8) after \d+ trials?", printed), printed
    # Blocks named on the command line, in the precision asked for: the file records it.
    kept = tmp_path / "models" / "egnet_int8_kept.pt2"
    assert main(["export", "--checkpoint", str(trained_int8["checkpoint"]), "--out", str(kept), "--size", "128x64",
                 "--int8", "--calibration", str(calibration), "--int8-keep", "encoder.4.0",
                 "--int8-kept-precision", "bf16"]) == 0
    assert "blocks kept out of int8 in bf16 after 1 trial: encoder.4.0" in capsys.readouterr().out
    extra = {KEPT_PRECISION_KEY: ""}
    torch.export.load(kept, extra_files=extra)
    assert extra[KEPT_PRECISION_KEY] == "bf16"
    assert snapshot(calibration) == before
    assert Segmenter.from_checkpoint(out, input_size=(128, 64)).predict(night_frames(1)[0]).labels.shape == (64, 128)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--out", "{tmp}/m.pt2"], "a .pt2 file is the int8 form only"),
    (["--out", "{tmp}/m.pt2", "--int8", "--calibration", "{tmp}", "--dynamic"], "--dynamic and --opset are for"),
    (["--out", "{tmp}/m.engine", "--int8", "--calibration", "{tmp}"], "must name a .onnx file"),
    (["--out", "{tmp}/m.onnx", "--int8", "--calibration", "{tmp}", "--int8-floor", "0.99"],
     "--int8-floor is for .pt2 files"),
    (["--out", "{tmp}/m.pt2", "--int8", "--calibration", "{tmp}", "--int8-floor", "99.5"],
     "--int8-floor must be a share of the labels in [0, 1], got 99.5"),
    (["--out", "{tmp}/m.onnx", "--int8", "--calibration", "{tmp}", "--int8-kept-precision", "bf16"],
     "--int8-kept-precision is for .pt2 files"),
    (["--out", "{tmp}/m.onnx", "--int8", "--calibration", "{tmp}", "--int8-keep", "encoder.4.0"],
     "--int8-keep is for .pt2 files"),
    (["--out", "{tmp}/m.pt2", "--int8", "--calibration", "{tmp}", "--int8-floor", "0", "--int8-kept-precision",
      "bf16"], "--int8-kept-precision has no block to apply to"),
    (["--out", "{tmp}/m.onnx", "--int8", "--calibration", "{tmp}", "--gptq"], "--gptq is for .pt2 files"),
])
def test_export_options_that_do_not_fit_a_pt2_are_refused(tmp_path, tiny_checkpoint, capsys, arguments, message):
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    assert main(["export", "--checkpoint", str(tiny_checkpoint), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("m.*"))


def test_gptq_weights_keep_more_of_the_trained_models_labels_than_weights_rounded_to_nearest(trained_int8,
                                                                                          tmp_path, capsys):
    """Every block int8 (no selection), the int8 weights rounded to nearest or by GPTQ on the same calibration
    images, judged on frames the calibration did not see."""
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for index, frame in enumerate(night_frames(8, seed=1)):
        write_rgb(calibration / f"frame_{index}.png", frame)
    frames = night_frames(4, width=128, height=64, seed=5)
    reference = Segmenter.from_checkpoint(trained_int8["checkpoint"]).predict_batch(frames)
    kept = {}
    for name, options in (("nearest", []), ("gptq", ["--gptq"])):
        out = tmp_path / f"{name}.pt2"
        assert main(["export", "--checkpoint", str(trained_int8["checkpoint"]), "--out", str(out), "--size",
                     "128x64", "--int8", "--calibration", str(calibration), "--int8-floor", "0", *options]) == 0
        printed = capsys.readouterr().out
        assert ("weights rounded by GPTQ" in printed) == (name == "gptq"), printed
        results = Segmenter.from_checkpoint(out, input_size=INT8_SIZE).predict_batch(frames)
        kept[name] = (np.mean([(a.labels == b.labels).mean() for a, b in zip(reference, results)]),
                      np.mean([np.abs(a.exposure - b.exposure).mean() for a, b in zip(reference, results)]))
    # GPTQ moved int8 weights off their nearest steps: the files' int8 constants differ.
    nearest, gptq = (_int8_constants(tmp_path / f"{name}.pt2") for name in ("nearest", "gptq"))
    assert len(nearest) == len(gptq) > 20
    assert sum(not torch.equal(a, b) for a, b in zip(nearest, gptq)) > len(nearest) // 2
    # Measured: 99.75% against 99.56% of the labels, exposure 0.0054 against 0.0058 (AMD EPYC); 99.82% against
    # 99.61%, exposure 0.0056 against 0.0046 (Xeon with AMX, whose kernels and so the fixture's training round
    # apart). GPTQ lowers each layer's output error (test_gptq.py), which kept more labels on both; the exposure
    # map, a smooth regression, moved either way by 0.001, so it is held to the bench's guard with a margin.
    assert kept["gptq"][0] >= kept["nearest"][0] - 0.001, kept
    assert kept["gptq"][1] <= 0.8 * EXPOSURE_MAE_CEILING, kept


def _int8_constants(path) -> list[torch.Tensor]:
    program = torch.export.load(path)
    tensors = [*program.state_dict.values(), *program.constants.values()]
    return [t for t in tensors if isinstance(t, torch.Tensor) and t.dtype == torch.int8]


def test_missing_corrupt_foreign_and_misused_files_are_errors_that_say_what_to_do(trained_int8, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Segmenter.from_checkpoint(tmp_path / "none.pt2", input_size=INT8_SIZE)
    (tmp_path / "garbage.pt2").write_bytes(b"not a program")
    with pytest.raises(ValueError, match="cannot be loaded.*egnet export --int8"):
        Segmenter.from_checkpoint(tmp_path / "garbage.pt2", input_size=INT8_SIZE)
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(trained_int8["int8"].read_bytes()[:5000])
    with pytest.raises(ValueError, match="cannot be loaded"):
        Segmenter.from_checkpoint(cut, input_size=INT8_SIZE)
    foreign = tmp_path / "foreign.pt2"
    torch.export.save(torch.export.export(torch.nn.ReLU(), (torch.rand(1, 3, 64, 128),)), foreign)
    with pytest.raises(ValueError, match=f"carries no '{CONFIG_KEY}'"):
        Segmenter.from_checkpoint(foreign, input_size=INT8_SIZE)
    with pytest.raises(ValueError, match="runs at 128x64 only; set the input size to 128x64"):
        Segmenter.from_checkpoint(trained_int8["int8"], input_size=(96, 64))
    with pytest.raises(ValueError, match="multi-scale and sliding-window"):
        Segmenter.from_checkpoint(trained_int8["int8"], input_size=INT8_SIZE, scales=(1.0, 0.5))
    with pytest.raises(ValueError, match="precision must be fp32"):
        Segmenter.from_checkpoint(trained_int8["int8"], input_size=INT8_SIZE, precision="bf16")
    with pytest.raises(ValueError, match="returns no attention maps"):
        Segmenter.from_checkpoint(trained_int8["int8"], input_size=INT8_SIZE).require_attention()
    with pytest.raises(ValueError, match=r"goes to a \.pt2 file"):
        quantize_pt2e(trained_int8["checkpoint"], tmp_path / "int8.onnx", night_frames(1), size=INT8_SIZE)
    assert isinstance(zipfile.ZipFile(trained_int8["int8"]), zipfile.ZipFile)  # the file itself was not touched
    assert Int8Network(trained_int8["int8"], device=CPU).fixed_size == INT8_SIZE
