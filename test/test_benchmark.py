"""egnet_core.deploy.benchmark's measuring parts (no timing is asserted: the numbers go to bench.json, not to tests)."""

import json
from dataclasses import asdict

import pytest
import torch
from helpers import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.bench_targets import SPEEDUP, HeadToHead, path_precision, target_checks
from egnet_core.deploy.benchmark import (
    SIZE,
    PathResult,
    _head_to_head,
    fastest_passing,
    format_benchmark,
    gemm_peaks,
    int8_gemm_peaks,
    model_gflop,
    ranked_paths,
    write_benchmark,
)


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


WEIGHTS = "trained 150 it on generated scenes (cache key 0123456789abcdef)"


def _row(config: str, path: str, median_ms: float, agreement: float, **fields) -> dict:
    return {"config": config, "path": path, "weights": WEIGHTS, "timed_runs": 2, "median_ms": median_ms,
            "p90_ms": median_ms + 10, "p99_ms": median_ms + 20, "first_run_s": 1.5, "fps": 1e3 / median_ms,
            "best_fps": 1e3 / median_ms, "best_batch": 1, "peak_memory_mib": 900.0, "gflops": 150.0,
            "share_of_peak": 0.9, "speedup": 1000.0 / median_ms, "label_agreement": agreement, "exposure_mad": 0.002,
            "guard_passed": agreement >= 0.995} | fields


def _result(paths: list[dict]) -> dict:
    return {"date": "2026-11-26", "device": "CPU", "threads": 2, "features": ["AMX-BF16", "AMX-INT8"],
            "torch": torch.__version__, "size": list(SIZE), "quick": True, "reference_runs": 1,
            "gemm_peak_gflops": {"fp32": 300.0, "bf16": 1600.0, "int8": 3700.0},
            "gemm_peak_kernels": {"fp32": "torch.matmul fp32", "bf16": "torch.matmul bf16",
                                  "int8": "oneDNN qlinear (torch.ops.onednn)"},
            "gemm_measured": {"fp32": {"torch.matmul fp32": 300.0}, "bf16": {"torch.matmul bf16": 1600.0},
                              "int8": {"onnxruntime MatMulInteger": 1500.0, "torch._int_mm": 400.0,
                                       "oneDNN qlinear (torch.ops.onednn)": 3700.0}},
            "paths": paths, "targets": [asdict(check) for check in target_checks(ranked_paths(paths))],
            "references": [
                {"model": "FCN-ResNet101 (torchvision)", "median_ms": 8000.0, "ratio_to_paper_egnet": 1.1}]}


def test_the_report_is_json_and_a_markdown_table_with_the_guard(tmp_path):
    result = _result([_row("EGNet-ResNet18 OS16 (real-time)", "bf16", 700.0, 0.98)])
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
    paths = [_row(paper, "eager fp32", 8000.0, 1.0), _row(paper, "bf16", 1300.0, 0.999),
             _row(paper, "onnxruntime int8", 900.0, 0.97), _row(paper, "compiled bf16", 1000.0, 0.998),
             _row(fast, "eager fp32", 600.0, 1.0), _row(fast, "onnxruntime int8", 200.0, 0.99)]
    assert [row["path"] for row in ranked_paths(paths)[paper]] == [
        "onnxruntime int8", "compiled bf16", "bf16", "eager fp32"]
    assert {config: row["path"] for config, row in fastest_passing(paths).items()} == {
        paper: "compiled bf16", fast: "eager fp32"}
    table = [line for line in format_benchmark(_result(paths)).splitlines() if f"| {WEIGHTS} |" in line]
    assert [line.split(" | ")[1:3] for line in table] == [
        ["1", "onnxruntime int8"], ["2", "compiled bf16 ★"], ["3", "bf16"], ["4", "eager fp32"],
        ["1", "onnxruntime int8"], ["2", "eager fp32 ★"]]
    text = format_benchmark(_result(paths))
    assert f"- {paper}: fastest path that passes the guard: **compiled bf16**, 1000.0 ms, ×1.00 eager fp32" in text


def test_the_targets_judge_the_fastest_passing_path_of_each_precision_with_its_guard():
    fast = "EGNet-ResNet18 OS16 (real-time)"
    paths = [_row(fast, "eager fp32", 1200.0, 1.0), _row(fast, "compiled bf16", 300.0, 0.997, share_of_peak=0.95),
             _row(fast, "bf16", 250.0, 0.99, share_of_peak=0.99),  # faster, but it fails the guard
             _row(fast, "onnxruntime int8", 150.0, 0.99, share_of_peak=0.9),  # fails the guard: not judged
             _row(fast, "PT2E int8 (Inductor)", 190.0, 0.997, share_of_peak=0.45)]
    checks = {check.target: check for check in target_checks(ranked_paths(paths))}
    speedup = checks[SPEEDUP]
    assert (speedup.path, speedup.against, speedup.guard_passed, speedup.met) == (
        "PT2E int8 (Inductor)", "compiled bf16", True, True)
    assert speedup.value == pytest.approx(300.0 / 190.0)
    share = checks["int8 share of the int8 GEMM peak"]
    assert (share.value, share.floor, share.met) == (0.45, 0.5, False)
    assert (checks["bf16 share of the bf16 GEMM peak"].path, checks["bf16 share of the bf16 GEMM peak"].met) == (
        "compiled bf16", True)
    text = format_benchmark(_result(paths))
    assert (f"| {fast} | {SPEEDUP} (compiled bf16) | PT2E int8 (Inductor) | 1.58× | the table's medians | 1.50× | "
            "pass | yes |") in text
    assert (f"| {fast} | int8 share of the int8 GEMM peak | PT2E int8 (Inductor) | 0.45 | the table's medians | "
            "0.50 | pass | no |") in text
    # A head-to-head timing of the same two paths replaces the table's ratio; one of other paths is ignored.
    duels = [asdict(HeadToHead(config=fast, int8_path="PT2E int8 (Inductor)", other_path="compiled bf16", rounds=5,
                               int8_ms=200.0, other_ms=290.0, speedup=1.45)),
             asdict(HeadToHead(config=fast, int8_path="PT2E int8 (Inductor)", other_path="bf16", rounds=5,
                               int8_ms=200.0, other_ms=400.0, speedup=2.0))]
    speedup = next(c for c in target_checks(ranked_paths(paths), duels) if c.target == SPEEDUP)
    assert (speedup.value, speedup.timing, speedup.met) == (1.45, "head to head, 5 rounds", False)


def test_a_precision_that_only_fails_the_guard_misses_its_target_and_a_run_without_one_has_no_targets():
    paper = "EGNet-ResNet101 OS8 (paper)"
    paths = [_row(paper, "compiled fp32", 5000.0, 1.0), _row(paper, "compiled bf16", 1300.0, 0.996,
                                                               exposure_mad=0.011, guard_passed=False)]
    (check,) = target_checks(ranked_paths(paths))
    assert (check.path, check.value, check.guard_passed, check.met) == ("compiled bf16", 0.9, False, False)
    assert (f"| {paper} | bf16 share of the bf16 GEMM peak | compiled bf16 | 0.90 | the table's medians | 0.80 | FAIL "
            "| no |") in format_benchmark(_result(paths))
    fp32_only = [_row(paper, "eager fp32", 5000.0, 1.0)]
    assert target_checks(ranked_paths(fp32_only)) == []
    assert "Targets:" not in format_benchmark(_result(fp32_only))
    assert [path_precision(name) for name in ("PT2E int8 (Inductor)", "compiled bf16", "fp16", "onnxruntime fp32")] == [
        "int8", "bf16", "fp16", "fp32"]


def _path_result(path: str, median_ms: float, passed: bool) -> PathResult:
    return PathResult(**_row("tiny", path, median_ms, 1.0 if passed else 0.9, guard_passed=passed))


def test_head_to_head_times_the_fastest_passing_int8_path_against_the_fastest_other_reusing_the_int8_file(tmp_path):
    model = tiny_model()
    frames = render_night_frames(0, 2, width=SIZE[0], height=SIZE[1])
    rows = [_path_result("eager fp32", 900.0, True), _path_result("bf16", 300.0, False),
            _path_result("onnxruntime int8", 400.0, True), _path_result("folded + channels-last fp32", 800.0, True)]
    assert _head_to_head(rows[:2], model, torch.device("cpu"), tmp_path, frames[1:], frames[0], 3) is None
    duel = _head_to_head(rows, model, torch.device("cpu"), tmp_path, frames[1:], frame=frames[0], rounds=3)
    assert (duel.config, duel.int8_path, duel.other_path, duel.rounds) == (
        "tiny", "onnxruntime int8", "folded + channels-last fp32", 3)
    assert duel.int8_ms > 0 and duel.other_ms > 0 and duel.speedup > 0
    quantized = tmp_path / "int8.onnx"
    written = quantized.stat().st_mtime_ns
    _head_to_head(rows, model, torch.device("cpu"), tmp_path, frames[1:], frames[0], 1)
    assert quantized.stat().st_mtime_ns == written  # the bench's int8 file, quantized once per configuration
