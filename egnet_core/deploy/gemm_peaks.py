"""The GEMM peaks ``egnet bench`` compares its paths with: a 4096×4096 matmul in each precision the paths compute in,
on the kernels they run on (for int8: ONNX Runtime's, torch's and oneDNN's), as zero-argument calls the bench times
alone (the peak) and again beside the paths it judges (``bench_targets``), since a shared machine's speed drifts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from egnet_core.deploy.export import OPSET, require_onnx
from egnet_core.deploy.onnx_runtime import require_onnxruntime
from egnet_core.deploy.timing import synchronized, timed

log = logging.getLogger(__name__)

GEMM_SIDE = 4096
GEMM_OPS = 2 * GEMM_SIDE**3  # multiply-adds counted twice, as FLOP counters count a matmul
PEAK_REPEATS = 4  # calls per kernel, after one to warm up; the fastest is the peak
FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # fp16 on CUDA only


@dataclass(frozen=True)
class GemmPeak:
    gflops: float  # GOP/s for int8
    kernel: str  # which measured kernel reached it
    measured: dict[str, float]  # every kernel tried for this precision, by name


def gemm_peaks(device: torch.device) -> dict[str, GemmPeak]:
    """GFLOP/s (GOP/s for int8) of a 4096×4096 matmul in each precision the paths use, best of a few; for int8 the
    best of the int8 kernels the paths can run on (ONNX Runtime's, torch's and oneDNN's), naming the one."""
    peaks = {}
    for name in FLOAT_DTYPES if device.type == "cuda" else ("fp32", "bf16"):
        kernel = f"torch.matmul {name}"
        gflops = _gflops(float_gemm(name, device), PEAK_REPEATS)
        peaks[name] = GemmPeak(gflops=gflops, kernel=kernel, measured={kernel: gflops})
    if device.type == "cpu":
        int8 = int8_gemm_peaks(PEAK_REPEATS)
        if int8:
            kernel = max(int8, key=int8.get)
            peaks["int8"] = GemmPeak(gflops=int8[kernel], kernel=kernel, measured=int8)
    return peaks


def int8_gemm_peaks(repeats: int) -> dict[str, float]:
    """GOP/s of each int8 GEMM kernel that runs here, by kernel; one that cannot run is logged and left out."""
    peaks = {}
    for kernel in INT8_KERNELS:
        try:
            peaks[kernel] = _gflops(int8_gemm(kernel), repeats)
        except ValueError as error:  # no ONNX Runtime: its paths are skipped too
            log.warning("int8 GEMM %s skipped: %s", kernel, error)
        except (RuntimeError, AttributeError) as error:  # a torch built without this CPU kernel or operator
            log.warning("int8 GEMM %s skipped: this torch cannot run it (%s)", kernel, error)
    return peaks


def peak_gemm(precision: str, peak: GemmPeak, device: torch.device) -> Callable[[], object]:
    """One call of the kernel that reached ``precision``'s ``peak``, to time again beside a path."""
    return float_gemm(precision, device) if precision in FLOAT_DTYPES else int8_gemm(peak.kernel)


def float_gemm(precision: str, device: torch.device) -> Callable[[], object]:
    """One torch matmul in ``precision`` (a key of FLOAT_DTYPES) on ``device``, finished when the call returns."""
    a = torch.rand(GEMM_SIDE, GEMM_SIDE, device=device).to(FLOAT_DTYPES[precision])
    b = torch.rand(GEMM_SIDE, GEMM_SIDE, device=device).to(FLOAT_DTYPES[precision])
    return lambda: synchronized(a @ b, device)


def int8_gemm(kernel: str) -> Callable[[], object]:
    """One call of the int8 GEMM ``kernel`` (a key of INT8_KERNELS)."""
    return INT8_KERNELS[kernel]()


def _gflops(call: Callable[[], object], repeats: int) -> float:
    return GEMM_OPS / min(timed(call, repeats, warm_up=True)) / 1e9


def _int_mm() -> Callable[[], object]:
    """torch's int8 × int8 → int32 matmul."""
    a = torch.randint(-128, 128, (GEMM_SIDE, GEMM_SIDE), dtype=torch.int8)
    b = torch.randint(-128, 128, (GEMM_SIDE, GEMM_SIDE), dtype=torch.int8)
    return lambda: torch._int_mm(a, b)


def _onednn_qlinear() -> Callable[[], object]:
    """A uint8 × int8 linear layer through oneDNN (AMX or VNNI), the kernel that PT2E's x86 Inductor quantizer
    lowers int8 matmuls to; its weights are prepacked once, as a frozen model's are."""
    a = torch.randint(0, 256, (GEMM_SIDE, GEMM_SIDE), dtype=torch.uint8)
    weights = torch.randint(-128, 128, (GEMM_SIDE, GEMM_SIDE), dtype=torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(weights, [GEMM_SIDE, GEMM_SIDE])
    scales, zero_points = torch.ones(GEMM_SIDE), torch.zeros(GEMM_SIDE, dtype=torch.int32)
    return lambda: torch.ops.onednn.qlinear_pointwise(
        a, 1.0, 0, packed, scales, zero_points, None, 1.0, 0, None, "none", [], "")


def _matmul_integer() -> Callable[[], object]:
    """A uint8 × int8 matmul in ONNX Runtime (``MatMulInteger``), the kernels its int8 convolutions run on."""
    ort = require_onnxruntime()
    onnx = require_onnx()
    rng = np.random.default_rng(0)
    weights = onnx.numpy_helper.from_array(rng.integers(-128, 128, (GEMM_SIDE, GEMM_SIDE), dtype=np.int8), "b")
    shape = [GEMM_SIDE, GEMM_SIDE]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, shape)],
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.INT32, shape)], [weights])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)]).SerializeToString(),
        options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    return lambda: session.run(None, {"a": a})


INT8_KERNELS: dict[str, Callable[[], Callable[[], object]]] = {
    "onnxruntime MatMulInteger": _matmul_integer, "torch._int_mm": _int_mm,
    "oneDNN qlinear (torch.ops.onednn)": _onednn_qlinear}
