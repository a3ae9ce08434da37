"""egnet_core.deploy.benchmark's measuring parts (no timing is asserted: the numbers go to bench.json, not to tests)."""

import json

import pytest
import torch
from helpers import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from egnet_core.deploy.benchmark import (
    SIZE,
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
            "paths": paths, "references": [
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
    table = [line for line in format_benchmark(_result(paths)).splitlines() if line.startswith("| EGNet")]
    assert [line.split(" | ")[1:3] for line in table] == [
        ["1", "onnxruntime int8"], ["2", "compiled bf16 ★"], ["3", "bf16"], ["4", "eager fp32"],
        ["1", "onnxruntime int8"], ["2", "eager fp32 ★"]]
    text = format_benchmark(_result(paths))
    assert f"- {paper}: fastest path that passes the guard: **compiled bf16**, 1000.0 ms, ×1.00 eager fp32" in text
