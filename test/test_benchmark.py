"""egnet_core.deploy.benchmark's measuring parts (no timing is asserted: the numbers go to bench.json, not to tests)."""

import json

import pytest
import torch
from helpers import tiny_model
from helpers_bench import WEIGHTS, bench_result, bench_row
from torch.utils.flop_counter import FlopCounterMode

from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.benchmark import (
    SIZE,
    _onnx_calibration,
    _side_by_side,
    fastest_passing,
    format_benchmark,
    model_gflop,
    ranked_paths,
    write_benchmark,
)
from egnet_core.deploy.gemm_peaks import GemmPeak, gemm_peaks, int8_gemm_peaks, peak_gemm
from egnet_core.model.egnet import EGNet


def test_flops_counted_on_the_meta_device_equal_a_real_forward():
    model = tiny_model()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.rand(1, 3, SIZE[1], SIZE[0]))
    assert model_gflop(model) == counter.get_total_flops() / 1e9 > 1.0


@pytest.mark.slow
def test_gemm_peaks_cover_the_precisions_of_the_cpu_paths_and_name_their_kernel():
    peaks = gemm_peaks(torch.device("cpu"))
    assert set(peaks) == {"fp32", "bf16", "int8"}
    assert peaks["bf16"].kernel == "torch.matmul bf16"
    int8 = int8_gemm_peaks(1)  # ONNX Runtime's (the onnx extra brings it), torch's and oneDNN's int8 GEMMs
    assert set(int8) == {"onnxruntime MatMulInteger", "torch._int_mm", "oneDNN qlinear (torch.ops.onednn)"}
    assert peaks["int8"].kernel in int8 and set(peaks["int8"].measured) == set(int8)
    assert peaks["int8"].gflops == max(peaks["int8"].measured.values())
    # The kernel that reached each peak runs again beside the judged paths.
    assert peak_gemm("bf16", peaks["bf16"], torch.device("cpu"))().dtype == torch.bfloat16
    assert peak_gemm("fp32", peaks["fp32"], torch.device("cpu"))().dtype == torch.float32
    assert peak_gemm("int8", peaks["int8"], torch.device("cpu"))() is not None


def test_the_report_is_json_and_a_markdown_table_with_the_guard(tmp_path):
    result = bench_result([bench_row("EGNet-ResNet18 OS16 (real-time)", "bf16", 700.0, 0.98)])
    json_path, markdown = write_benchmark(result, tmp_path / "bench")
    assert json.loads(json_path.read_text()) == result
    text = markdown.read_text()
    assert text == format_benchmark(result)
    assert f"| EGNet-ResNet18 OS16 (real-time) | 1 | bf16 | {WEIGHTS} | 2 | 700.0 |" in text
    assert "| 0.9800 | 0.0020 | FAIL |" in text
    assert "- EGNet-ResNet18 OS16 (real-time): no path passes the guard" in text
    assert "| FCN-ResNet101 (torchvision) | 8000.0 | 1.10 |" in text
    assert "Features found: AMX-BF16, AMX-INT8." in text
    assert ("int8 3700 (oneDNN qlinear (torch.ops.onednn)) (measured: int8: onnxruntime MatMulInteger 1500, "
            "torch._int_mm 400, oneDNN qlinear (torch.ops.onednn) 3700).") in text


def test_paths_are_ranked_fastest_first_and_the_fastest_that_passes_is_marked():
    paper, fast = "EGNet-ResNet101 OS8 (paper)", "EGNet-ResNet18 OS16 (real-time)"
    paths = [bench_row(paper, "eager fp32", 8000.0, 1.0), bench_row(paper, "bf16", 1300.0, 0.999),
             bench_row(paper, "onnxruntime int8", 900.0, 0.97), bench_row(paper, "compiled bf16", 1000.0, 0.998),
             bench_row(fast, "eager fp32", 600.0, 1.0), bench_row(fast, "onnxruntime int8", 200.0, 0.99)]
    assert [row["path"] for row in ranked_paths(paths)[paper]] == [
        "onnxruntime int8", "compiled bf16", "bf16", "eager fp32"]
    assert {config: row["path"] for config, row in fastest_passing(paths).items()} == {
        paper: "compiled bf16", fast: "eager fp32"}
    table = [line for line in format_benchmark(bench_result(paths)).splitlines() if f"| {WEIGHTS} |" in line]
    assert [line.split(" | ")[1:3] for line in table] == [
        ["1", "onnxruntime int8"], ["2", "compiled bf16 ★"], ["3", "bf16"], ["4", "eager fp32"],
        ["1", "onnxruntime int8"], ["2", "eager fp32 ★"]]
    text = format_benchmark(bench_result(paths))
    assert f"- {paper}: fastest path that passes the guard: **compiled bf16**, 1000.0 ms, ×1.00 eager fp32" in text


@pytest.mark.slow
def test_the_judged_paths_are_timed_again_side_by_side_with_their_gemm_reusing_the_int8_file(tmp_path):
    model = tiny_model()
    frames = render_night_frames(0, 2, width=SIZE[0], height=SIZE[1])
    timings = (("eager fp32", 1000.0, True), ("bf16", 300.0, False), ("onnxruntime int8", 400.0, True),
               ("folded + channels-last fp32", 800.0, True), ("onnxruntime fp32", 880.0, True))
    rows = [bench_row("tiny", path, ms, 1.0 if passed else 0.9) for path, ms, passed in timings]
    ranked = ranked_paths(rows)["tiny"]
    peaks = {"int8": GemmPeak(gflops=1000.0, kernel="torch._int_mm", measured={"torch._int_mm": 1000.0})}
    cpu, gflop = torch.device("cpu"), model_gflop(model)
    no_int8 = ranked_paths(rows[:2])["tiny"]
    assert _side_by_side(no_int8, model, gflop, cpu, tmp_path, frames[1:], frames[0], peaks, 3) == ([], [])
    duels, shares = _side_by_side(ranked, model, gflop, cpu, tmp_path, frames[1:], frame=frames[0], peaks=peaks,
                                  rounds=3)
    # eager fp32 is more than 15% slower than the fastest passing other path (800 ms): not an opponent.
    assert [(d.config, d.int8_path, d.other_path, d.rounds) for d in duels] == [
        ("tiny", "onnxruntime int8", "folded + channels-last fp32", 3),
        ("tiny", "onnxruntime int8", "onnxruntime fp32", 3)]
    assert all(d.int8_ms > 0 and d.other_ms > 0 and d.speedup > 0 for d in duels)
    assert duels[0].int8_ms == duels[1].int8_ms  # one set of rounds for all of them
    # Only int8's share is judged: the one bf16 path fails the guard.
    (share,) = shares
    assert (share.config, share.path, share.rounds, share.median_ms) == ("tiny", "onnxruntime int8", 3,
                                                                         duels[0].int8_ms)
    # The frame's GFLOP/s over the best of the peak given (1000) and the GEMM in the rounds.
    assert share.peak_gflops >= 1000.0 and share.peak_gflops >= share.gemm_gflops > 0
    assert share.share == pytest.approx(model_gflop(model) / (share.median_ms / 1e3) / share.peak_gflops)
    quantized = tmp_path / "int8.onnx"
    written = quantized.stat().st_mtime_ns
    _side_by_side(ranked, model, gflop, cpu, tmp_path, frames[1:], frames[0], peaks, 1)
    assert quantized.stat().st_mtime_ns == written  # the bench's int8 file, quantized once per configuration


def test_onnx_runtime_calibrates_resnet101_on_one_frame_and_other_networks_on_all():
    # ONNX Runtime's calibration of ResNet-101 at 1024×512 peaked at 15 GB for 1 frame and was killed at 24 GB on 8.
    frames = render_night_frames(1, 3, width=64, height=32)
    with torch.device("meta"):  # the configuration is what counts, not the weights
        resnet101 = EGNet(num_classes=2, backbone="resnet101", output_stride=8)
    assert [f is g for f, g in zip(_onnx_calibration(resnet101, frames), frames)] == [True]
    assert _onnx_calibration(tiny_model(), frames) == frames
