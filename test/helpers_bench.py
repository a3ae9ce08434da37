"""Rows and results of an ``egnet bench`` run as bench.json holds them, built by hand for the tests of its tables and
targets (the numbers are made up: no timing is asserted anywhere)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch

from egnet_core.deploy.bench_targets import HeadToHead, PeakShare, target_checks
from egnet_core.deploy.benchmark import SIZE, ranked_paths

WEIGHTS = "trained 150 it on generated scenes (cache key 0123456789abcdef)"
REAL_TIME = "EGNet-ResNet18 OS16 (real-time)"
PAPER = "EGNet-ResNet101 OS8 (paper)"


def bench_row(config: str, path: str, median_ms: float, agreement: float, **fields) -> dict:
    """One path's row; ``fields`` replace the defaults (a 0.002 exposure MAD, 0.9 of the GEMM peak)."""
    return {"config": config, "path": path, "weights": WEIGHTS, "timed_runs": 2, "median_ms": median_ms,
            "p90_ms": median_ms + 10, "p99_ms": median_ms + 20, "first_run_s": 1.5, "fps": 1e3 / median_ms,
            "best_fps": 1e3 / median_ms, "best_batch": 1, "peak_memory_mib": 900.0, "gflops": 150.0,
            "share_of_peak": 0.9, "speedup": 1000.0 / median_ms, "label_agreement": agreement, "exposure_mad": 0.002,
            "guard_passed": agreement >= 0.995} | fields


def bench_result(paths: list[dict], duels: Sequence[HeadToHead] = (), shares: Sequence[PeakShare] = ()) -> dict:
    """A whole run's bench.json of ``paths`` and its side-by-side timings, with its targets judged as
    ``run_benchmark`` judges them."""
    return {"date": "2026-11-26", "device": "CPU", "threads": 2, "features": ["AMX-BF16", "AMX-INT8"],
            "torch": torch.__version__, "size": list(SIZE), "quick": True, "reference_runs": 1,
            "gemm_peak_gflops": {"fp32": 300.0, "bf16": 1600.0, "int8": 3700.0},
            "gemm_peak_kernels": {"fp32": "torch.matmul fp32", "bf16": "torch.matmul bf16",
                                  "int8": "oneDNN qlinear (torch.ops.onednn)"},
            "gemm_measured": {"fp32": {"torch.matmul fp32": 300.0}, "bf16": {"torch.matmul bf16": 1600.0},
                              "int8": {"onnxruntime MatMulInteger": 1500.0, "torch._int_mm": 400.0,
                                       "oneDNN qlinear (torch.ops.onednn)": 3700.0}},
            "paths": paths, "head_to_head": [asdict(duel) for duel in duels],
            "peak_shares": [asdict(share) for share in shares],
            "targets": [asdict(check) for check in target_checks(ranked_paths(paths), duels, shares)],
            "references": [
                {"model": "FCN-ResNet101 (torchvision)", "median_ms": 8000.0, "ratio_to_paper_egnet": 1.1}]}
