"""egnet_core.deploy.benchmark's measuring parts (no timing is asserted: the numbers go to bench.json, not to tests)."""

import json

import pytest
import torch
from helpers import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from egnet_core.deploy.benchmark import SIZE, format_benchmark, gemm_peaks, model_gflop, write_benchmark


def test_flops_counted_on_the_meta_device_equal_a_real_forward():
    model = tiny_model()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.rand(1, 3, SIZE[1], SIZE[0]))
    assert model_gflop(model) == counter.get_total_flops() / 1e9 > 1.0


@pytest.mark.slow
def test_gemm_peaks_cover_the_precisions_of_the_cpu_paths():
    peaks = gemm_peaks(torch.device("cpu"))
    assert set(peaks) == {"fp32", "bf16", "int8"}  # int8 is ONNX Runtime's MatMulInteger, which the onnx extra brings


def test_the_report_is_json_and_a_markdown_table_with_the_guard(tmp_path):
    row = {"config": "EGNet-ResNet18 OS16 (real-time)", "path": "bf16", "timed_runs": 2, "median_ms": 700.0,
           "p90_ms": 710.0, "p99_ms": 720.0, "fps": 1.43, "best_fps": 1.5, "best_batch": 2, "peak_memory_mib": 900.0,
           "gflops": 150.0,
           "share_of_peak": 0.9, "speedup": 0.8, "label_agreement": 0.98, "exposure_mad": 0.002, "guard_passed": False}
    result = {"date": "2026-11-26", "device": "CPU", "threads": 2, "torch": torch.__version__, "size": list(SIZE),
              "quick": True, "reference_runs": 1, "gemm_peak_gflops": {"fp32": 300.0, "bf16": 160.0, "int8": 1000.0},
              "paths": [row],
              "references": [
                  {"model": "FCN-ResNet101 (torchvision)", "median_ms": 8000.0, "ratio_to_paper_egnet": 1.1}
              ]}
    json_path, markdown = write_benchmark(result, tmp_path / "bench")
    assert json.loads(json_path.read_text()) == result
    text = markdown.read_text()
    assert text == format_benchmark(result)
    assert "| EGNet-ResNet18 OS16 (real-time) | bf16 | 2 | 700.0 |" in text and "| 0.9800 | 0.0020 | FAIL |" in text
    assert "| FCN-ResNet101 (torchvision) | 8000.0 | 1.10 |" in text
