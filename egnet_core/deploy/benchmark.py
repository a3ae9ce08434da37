"""``egnet bench``: every inference path side by side in one run, as ratios to eager fp32, beside the machine's peak.

For each configuration (the paper's EGNet-ResNet101 OS8, the real-time EGNet-ResNet18 OS16, and a trained
checkpoint when one is given) and each path of the shared Segmenter (eager fp32, the default folded +
channels-last fp32, bf16 or fp16, each also through ``torch.compile``, ONNX Runtime in fp32 and, on the CPU,
int8 calibrated on other generated frames than the timed ones), at 1024×512 on generated night frames: latency
median / p90 / p99 and frames/s at batch 1, the first run (which compiles), the best frames/s over batch sizes,
peak memory, achieved GFLOP/s (the model's FLOPs counted once with ``torch.utils.flop_counter``) over the GEMM
peak measured in the same run (the best kernel found for each precision), and the accuracy guard against eager
fp32 (labels equal on at least 99.5% of pixels, exposure within 1e-2 mean absolute difference).

The guards are judged on trained weights: each configuration is trained briefly with the demo's recipe and
cached (``bench_weights.py``); a near-random network's tied logits would make any path look wrong or right.
The paths are ranked per configuration, fastest first, and the fastest that passes the guard is marked. Each
configuration's int8 and bf16 paths are judged against issue 15's targets (``bench_targets.py``) on timings taken
again side by side, in rotating rounds: the fastest passing int8 path head to head against the passing paths of
another precision nearly as fast as the fastest of them, and the fastest passing int8 and bf16 paths beside their
precision's GEMM, whose speed drifts with the machine's as theirs does. torchvision's DeepLabV3-ResNet101 and
FCN-ResNet101 are timed as references.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.bench_targets import (
    BF16_PEAK_SHARE,
    CONTENDER_MARGIN,
    INT8_PEAK_SHARE,
    INT8_SPEEDUP,
    HeadToHead,
    PeakShare,
    TargetCheck,
    duel_paths,
    head_to_heads,
    path_precision,
    peak_share,
    share_paths,
    target_checks,
)
from egnet_core.deploy.bench_weights import bench_weights
from egnet_core.deploy.cpu_features import this_cpu_features
from egnet_core.deploy.export import export_onnx
from egnet_core.deploy.gemm_peaks import GEMM_OPS, GEMM_SIDE, GemmPeak, gemm_peaks, peak_gemm
from egnet_core.deploy.host_memory import keep_freed_memory, release_freed_memory
from egnet_core.deploy.inference import Segmentation, Segmenter, to_network_input
from egnet_core.deploy.int8_pt2e import quantize_pt2e
from egnet_core.deploy.precision_choice import EXPOSURE_MAE_CEILING, LABEL_AGREEMENT_FLOOR
from egnet_core.deploy.quantize import quantize_onnx
from egnet_core.deploy.timing import interleaved, synchronized, timed
from egnet_core.engine.scene_training import DEMO_TRAINING, SceneRecipe
from egnet_core.model.checkpoint import load_model, save_checkpoint
from egnet_core.model.egnet import EGNet

log = logging.getLogger(__name__)

SIZE = (1024, 512)  # (width, height)
# int8 calibration frames, generated apart from the timed ones. Quick mode keeps them all but for ResNet-101 (1 frame):
# calibrated on 1 frame, the ResNet-18 int8 selection kept slower blocks (206 against 180 ms a frame, interleaved).
BENCH_CALIBRATION_FRAMES = 8
# ONNX Runtime's int8 calibration holds far more than its ranges: on ResNet-101 OS8 at 1024×512 it peaked at 15 GB
# for 1 frame and was killed at 24 GB on 8 (benchmarks/RESULTS.md, 2026-12-01), while PT2E calibrates 8 in about
# 4 GB. ResNet-101's ONNX Runtime int8 is therefore calibrated on this many frames in every mode.
ONNX_RESNET101_CALIBRATION_FRAMES = 1
PAPER = "EGNet-ResNet101 OS8 (paper)"
# The configurations timed, each trained with the demo's recipe for its own backbone and output stride.
CONFIGURATIONS = {
    PAPER: SceneRecipe(overrides=(*DEMO_TRAINING, "model.backbone=resnet101", "model.output_stride=8")),
    "EGNet-ResNet18 OS16 (real-time)": SceneRecipe(),  # the demo's own model
}
CONFIGURATION_NAMES = {"resnet101-os8": PAPER, "resnet18-os16": "EGNet-ResNet18 OS16 (real-time)"}
SIDE_BY_SIDE_MIN_ROUNDS = 5  # of the paths the targets judge, timed again in rotating rounds (_side_by_side)
LONG_FIRST_RUN_S = 30.0  # a first run (compilation) longer than this is logged as a warning


@dataclass(frozen=True)
class PathResult:
    config: str
    path: str
    weights: str  # what the model was: "trained 150 it on generated scenes (cache key ...)", "user checkpoint X"
    timed_runs: int  # at batch 1, after a warm-up run
    median_ms: float
    p90_ms: float
    p99_ms: float
    first_run_s: float  # the warm-up call: compilation for compiled paths
    fps: float  # batch 1
    best_fps: float  # over the batch sizes tried
    best_batch: int
    peak_memory_mib: float  # resident set (CPU) or allocated (CUDA) high-water mark while this path ran
    gflops: float  # achieved: the model's FLOPs per frame over the median latency
    share_of_peak: float  # gflops over the GEMM peak of the path's precision
    speedup: float  # eager fp32 median over this median
    label_agreement: float  # share of pixels whose label equals eager fp32's
    exposure_mad: float  # mean absolute difference of the exposure map from eager fp32's
    guard_passed: bool


@dataclass(frozen=True)
class ReferenceResult:
    model: str
    median_ms: float
    ratio_to_paper_egnet: float  # this model's median over eager fp32 EGNet-ResNet101's


def run_benchmark(
    *, device: torch.device, weights_cache: Path, quick: bool = False, checkpoint: Path | None = None,
    configurations: tuple[str, ...] = tuple(CONFIGURATIONS),
) -> dict:
    """The whole suite; a JSON-ready dict (see ``write_benchmark``). Each of ``configurations`` (keys of
    CONFIGURATIONS) runs on weights trained with its recipe, cached in ``weights_cache``."""
    unknown = [name for name in configurations if name not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"unknown bench configuration(s) {unknown!r}; known: {', '.join(CONFIGURATIONS)}")
    repeats, batches = (2, (1, 2)) if quick else (5, (1, 2, 4))
    heavy_repeats = 1 if quick else repeats  # for ResNet-101 networks, whose frames take seconds on a CPU
    user = load_model(checkpoint) if checkpoint is not None else None  # a bad file is refused before training
    models = {}
    for name in configurations:
        weights = bench_weights(CONFIGURATIONS[name], weights_cache, device=str(device))
        models[name] = (load_model(weights.checkpoint), weights.describe())
    if user is not None:
        name = f"{checkpoint.name} ({user.config.backbone} OS{user.config.output_stride}, trained)"
        models[name] = (user, f"user checkpoint {checkpoint}")
    frames = render_night_frames(0, max(batches), width=SIZE[0], height=SIZE[1])
    calibration = render_night_frames(1, BENCH_CALIBRATION_FRAMES, width=SIZE[0], height=SIZE[1])
    if device.type == "cpu":  # as every CPU Segmenter's process: the GEMMs reuse freed blocks as the paths do
        keep_freed_memory()
    peaks = gemm_peaks(device)
    log.info("GEMM peak on %s: %s", device, {k: f"{p.gflops:.0f} ({p.kernel})" for k, p in peaks.items()})
    gflops_peaks = {name: peak.gflops for name, peak in peaks.items()}
    rows: list[PathResult] = []
    ranked: dict[str, list[dict]] = {}  # each configuration's rows as bench.json holds them, fastest first
    duels: list[HeadToHead] = []
    shares: list[PeakShare] = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (name, (model, weights)) in enumerate(models.items()):
            # In quick mode ResNet-101's paths run at batch 1 and once after their warm-up, and its int8 is
            # calibrated on 1 frame; the side-by-side rounds still take SIDE_BY_SIDE_MIN_ROUNDS.
            heavy = quick and model.config.backbone == "resnet101"
            runs, sizes = (heavy_repeats, (1,)) if heavy else (repeats, batches)
            work = Path(scratch) / str(index)
            config_calibration = calibration[:1] if heavy else calibration
            gflop = model_gflop(model)
            config_rows = _bench_config(name, model, gflop, weights, frames, config_calibration, device, runs, sizes,
                                        gflops_peaks, work)
            rows += config_rows
            ranked |= ranked_paths([asdict(r) for r in config_rows])
            config_duels, config_shares = _side_by_side(ranked.get(name, []), model, gflop, device, work,
                                                        config_calibration, frames[0], peaks,
                                                        max(runs, SIDE_BY_SIDE_MIN_ROUNDS))
            duels += config_duels
            shares += config_shares
    paths = [row for config_rows in ranked.values() for row in config_rows]
    return {
        "date": time.strftime("%Y-%m-%d"), "device": _device_name(device), "threads": torch.get_num_threads(),
        "features": _features(device), "torch": torch.__version__, "size": list(SIZE), "quick": quick,
        "reference_runs": heavy_repeats, "gemm_peak_gflops": gflops_peaks,
        "gemm_peak_kernels": {name: peak.kernel for name, peak in peaks.items()},
        "gemm_measured": {name: peak.measured for name, peak in peaks.items()},
        "paths": paths,
        "fastest_passing": {config: row and row["path"] for config, row in fastest_passing(paths).items()},
        "head_to_head": [asdict(duel) for duel in duels],
        "peak_shares": [asdict(share) for share in shares],
        "targets": [asdict(check) for check in target_checks(ranked, duels, shares)],
        "references": [asdict(r) for r in _references(frames[0], device, heavy_repeats, rows)],
    }


def ranked_paths(paths: list[dict]) -> dict[str, list[dict]]:
    """The rows of each configuration (in the order the configurations came), fastest (median) first."""
    by_config: dict[str, list[dict]] = {}
    for row in paths:
        by_config.setdefault(row["config"], []).append(row)
    return {config: sorted(rows, key=lambda row: row["median_ms"]) for config, rows in by_config.items()}


def fastest_passing(paths: list[dict]) -> dict[str, dict | None]:
    """Per configuration, its fastest row that passes the accuracy guard; None where none does."""
    return {config: next((row for row in rows if row["guard_passed"]), None)
            for config, rows in ranked_paths(paths).items()}


def _references(frame: np.ndarray, device: torch.device, repeats: int, rows: list[PathResult]) -> list:
    paper = next((r.median_ms for r in rows if r.config == PAPER and r.path == "eager fp32"), None)
    if paper is None:
        log.info("torchvision references skipped: they are compared to %s, which was not benched", PAPER)
        return []
    return [ReferenceResult(model=name, median_ms=median, ratio_to_paper_egnet=median / paper)
            for name, median in _reference_medians(frame, device, repeats).items()]


def _features(device: torch.device) -> list[str]:
    """The CPU's matrix features, or on CUDA the GPU and its compute capability."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return [f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"]
    return list(this_cpu_features())


def model_gflop(model: torch.nn.Module) -> float:
    """FLOPs of one 1024×512 frame, counted on the meta device (shapes only, no arithmetic)."""
    counter = FlopCounterMode(display=False)
    meta = copy.deepcopy(model).to("meta").eval()
    with counter, torch.no_grad():
        meta(torch.empty(1, 3, SIZE[1], SIZE[0], device="meta"))
    return counter.get_total_flops() / 1e9


def _paths(device: torch.device) -> dict[str, dict]:
    """Segmenter options of each path; ``onnx`` marks the ONNX Runtime one."""
    paths = {"eager fp32": {"optimize": False}, "folded + channels-last fp32": {}}
    if device.type == "cuda":
        paths["fp16"] = {"precision": "fp16"}
    paths["compiled fp32"] = {"compile": True}
    paths["bf16"] = {"precision": "bf16"}
    paths["compiled bf16"] = {"precision": "bf16", "compile": True}
    paths["onnxruntime fp32"] = {"onnx": True}
    if device.type == "cpu":  # ONNX Runtime's int8 kernels are the CPU's (TensorRT quantizes for GPUs)
        paths["onnxruntime int8"] = {"onnx": True, "int8": True}
        if importlib.util.find_spec("torchao") is not None:  # the 'int8' extra
            paths["PT2E int8 (Inductor)"] = {"pt2": True}
    return paths


def _bench_config(
    name: str, model: EGNet, gflop: float, weights: str, frames: list[np.ndarray], calibration: list[np.ndarray],
    device: torch.device, repeats: int, batches: tuple[int, ...], peaks: dict[str, float], work: Path,
) -> list[PathResult]:
    rows: list[PathResult] = []
    reference: Segmentation | None = None
    for path, options in _paths(device).items():
        try:
            segmenter = _segmenter(model, options, device, work, calibration)
        except ValueError as error:  # an ONNX Runtime without this device's provider, for one
            log.warning("%s / %s skipped: %s", name, path, error)
            continue
        _reset_peak_memory(device)
        outputs: list[Segmentation] = []
        first_run = timed(lambda: segmenter.predict(frames[0]), 1)[0]  # compiles, for the compiled paths
        if first_run > LONG_FIRST_RUN_S:
            log.warning("%s / %s: the first run took %.0f s (compilation)", name, path, first_run)
        seconds = timed(lambda: outputs.append(segmenter.predict(frames[0])), repeats)
        median = statistics.median(seconds)
        best_fps, best_batch = 1 / median, 1
        for batch in (b for b in batches if b > 1):
            fps = batch / min(timed(lambda: segmenter.predict_batch(frames[:batch]), 1, warm_up=True))
            best_fps, best_batch = max((best_fps, best_batch), (fps, batch))
        reference = reference or outputs[-1]
        agreement = float((reference.labels == outputs[-1].labels).mean())
        mad = float(np.abs(reference.exposure - outputs[-1].exposure).mean())
        p90, p99 = np.percentile(seconds, [90, 99])
        precision = path_precision(path)
        rows.append(PathResult(
            config=name, path=path, weights=weights, timed_runs=repeats, median_ms=median * 1e3, p90_ms=p90 * 1e3,
            p99_ms=p99 * 1e3, first_run_s=first_run, fps=1 / median, best_fps=best_fps, best_batch=best_batch,
            peak_memory_mib=_peak_memory_mib(device),
            gflops=gflop / median, share_of_peak=gflop / median / peaks[precision],
            speedup=(rows[0].median_ms / 1e3 if rows else median) / median, label_agreement=agreement,
            exposure_mad=mad, guard_passed=agreement >= LABEL_AGREEMENT_FLOOR and mad <= EXPOSURE_MAE_CEILING,
        ))
        log.info("%s / %s: %.1f ms, ×%.2f, %.0f GFLOP/s, labels %.4f", name, path, median * 1e3,
                 rows[-1].speedup, gflop / median, agreement)
    return rows


def _side_by_side(
    ranked: list[dict], model: EGNet, gflop: float, device: torch.device, work: Path,
    calibration: list[np.ndarray], frame: np.ndarray, peaks: dict[str, GemmPeak], rounds: int,
) -> tuple[list[HeadToHead], list[PeakShare]]:
    """The paths the targets judge, rebuilt (the int8 files are reused) and timed again in rotating rounds on one
    frame, with the GEMM of each precision whose share is judged: the fastest passing int8 path against each of its
    opponents (``bench_targets.duel_paths``), one record per opponent, and the fastest passing int8 and bf16 paths
    beside their GEMM (``bench_targets.share_paths``). ``ranked``: one configuration's rows, fastest first."""
    if not ranked:
        return [], []
    config = ranked[0]["config"]
    duel = duel_paths(ranked)
    judged = [path for path in share_paths(ranked) if path_precision(path) in peaks]
    paths = list(dict.fromkeys(([duel[0], *duel[1]] if duel else []) + judged))  # each once, in that order
    if not paths:
        return [], []
    options = _paths(device)
    segmenters = {path: _segmenter(model, options[path], device, work, calibration) for path in paths}
    for segmenter in segmenters.values():
        segmenter.predict(frame)  # compiles, for the compiled paths
    gemms = {f"GEMM {precision}": peak_gemm(precision, peaks[precision], device)
             for precision in dict.fromkeys(path_precision(path) for path in judged)}
    seconds = interleaved({**{path: functools.partial(segmenter.predict, frame)
                              for path, segmenter in segmenters.items()}, **gemms}, rounds)
    duels = head_to_heads(config, duel[0], duel[1], seconds) if duel else []
    shares = [peak_share(config, path, gflop, seconds[path], GEMM_OPS / 1e9, seconds[f"GEMM {path_precision(path)}"],
                         peaks[path_precision(path)].gflops) for path in judged]
    for d in duels:
        log.info("%s: head to head over %d rounds, %s %.1f ms against %s %.1f ms: ×%.2f", config, rounds,
                 d.int8_path, d.int8_ms, d.other_path, d.other_ms, d.speedup)
    for share in shares:
        log.info("%s: %s %.1f ms beside its GEMM at %.0f G/s over %d rounds (peak %.0f): %.2f of the peak", config,
                 share.path, share.median_ms, share.gemm_gflops, rounds, share.peak_gflops, share.share)
    return duels, shares


def _segmenter(
    model: EGNet, options: dict, device: torch.device, work: Path, calibration: list[np.ndarray]
) -> Segmenter:
    if options.get("pt2"):  # quantized once per configuration, and reused by the side-by-side timing
        quantized = work / "int8.pt2"
        if not quantized.exists():
            quantize_pt2e(save_checkpoint(work / "model.pt", model), quantized, calibration, size=SIZE)
        return Segmenter.from_checkpoint(quantized, device=device, input_size=SIZE)
    if not options.get("onnx"):
        return Segmenter(model, device=device, **options)
    # One export per configuration, for the fp32 and the int8 path, and one quantization, reused side by side.
    exported, quantized = work / "fp32.onnx", work / "int8.onnx"
    if not exported.exists():
        export_onnx(save_checkpoint(work / "model.pt", model), exported, size=SIZE)
    if options.get("int8") and not quantized.exists():
        quantize_onnx(exported, quantized, _onnx_calibration(model, calibration), size=SIZE)
    return Segmenter.from_checkpoint(quantized if options.get("int8") else exported, device=device, input_size=SIZE)


def _onnx_calibration(model: EGNet, calibration: list[np.ndarray]) -> list[np.ndarray]:
    """The frames ONNX Runtime calibrates ``model``'s int8 on: ResNet-101's are capped (see
    ONNX_RESNET101_CALIBRATION_FRAMES), so that the full bench fits the memory of the machines it runs on."""
    if model.config.backbone != "resnet101" or len(calibration) <= ONNX_RESNET101_CALIBRATION_FRAMES:
        return calibration
    log.info("ONNX Runtime int8 of ResNet-101 calibrated on %d of the %d frames (its calibration's memory)",
             ONNX_RESNET101_CALIBRATION_FRAMES, len(calibration))
    return calibration[:ONNX_RESNET101_CALIBRATION_FRAMES]


def _reference_medians(frame: np.ndarray, device: torch.device, repeats: int) -> dict[str, float]:
    """torchvision's segmentation networks, eager fp32 on the same input: milliseconds per frame."""
    builders = {"DeepLabV3-ResNet101 (torchvision)": torchvision.models.segmentation.deeplabv3_resnet101,
                "FCN-ResNet101 (torchvision)": torchvision.models.segmentation.fcn_resnet101}
    images = to_network_input(torch.from_numpy(frame)[None].to(device))
    medians = {}
    for name, build in builders.items():
        model = build(weights=None, weights_backbone=None, num_classes=19, aux_loss=False).to(device).eval()
        with torch.inference_mode():
            medians[name] = statistics.median(
                timed(lambda: synchronized(model(images)["out"], device), repeats, warm_up=True)) * 1e3
    return medians


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:  # Linux: writing 5 to clear_refs resets the process's resident high-water mark (VmHWM)
        release_freed_memory()  # the blocks earlier paths freed (host_memory.py keeps them) are not this path's
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "CPU")
    return f"{model}, {torch.get_num_threads()} threads"


def write_benchmark(result: dict, out: Path) -> tuple[Path, Path]:
    """``bench.json`` and ``bench.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench.md").write_text(format_benchmark(result))
    return out / "bench.json", out / "bench.md"


def format_benchmark(result: dict) -> str:
    """bench.md: the paths of each configuration ranked fastest first, the fastest that passes the guard marked."""
    peaks = ", ".join(f"{name} {value:.0f} ({result['gemm_peak_kernels'][name]})"
                      for name, value in result["gemm_peak_gflops"].items())
    features = ", ".join(result["features"]) or "none of AVX-512, AVX-512 BF16, AMX, VNNI"
    tried = "; ".join(f"{name}: " + ", ".join(f"{kernel} {value:.0f}" for kernel, value in kernels.items())
                      for name, kernels in result["gemm_measured"].items() if len(kernels) > 1)
    if tried:
        peaks += f" (measured: {tried})"
    lines = [
        f"# egnet bench — {result['date']}, {result['device']}, torch {result['torch']}"
        + (" (quick)" if result["quick"] else ""), "",
        f"{result['size'][0]}×{result['size'][1]}, generated night frames; each path is timed `runs` times at "
        f"batch 1 after a first run, which compiles the compiled paths ({result['reference_runs']} for the "
        f"references). Features found: {features}. GEMM peak ({GEMM_SIDE}×{GEMM_SIDE} matmul, GFLOP/s; int8 in "
        f"GOP/s, the fastest int8 kernel found): {peaks}. Guard: labels equal to eager fp32 on "
        f"≥ {LABEL_AGREEMENT_FLOOR:.1%} of pixels and exposure MAD ≤ {EXPOSURE_MAE_CEILING}, judged on the weights "
        "each row names. Paths are ranked per configuration, fastest first; ★ marks the fastest that passes.",
        "", "| configuration | rank | path | weights | runs | median ms | p90 ms | p99 ms | first run s | frames/s | "
        "best frames/s (batch) | × eager fp32 | GFLOP/s | × GEMM peak | peak MiB | labels equal | exposure MAD | "
        "guard |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    chosen = fastest_passing(result["paths"])
    for config, rows in ranked_paths(result["paths"]).items():
        for rank, r in enumerate(rows, 1):
            mark = " ★" if r is chosen[config] else ""
            lines.append(
                f"| {r['config']} | {rank} | {r['path']}{mark} | {r['weights']} | {r['timed_runs']} | "
                f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['first_run_s']:.1f} | "
                f"{r['fps']:.2f} | {r['best_fps']:.2f} ({r['best_batch']}) | {r['speedup']:.2f} | {r['gflops']:.0f} | "
                f"{r['share_of_peak']:.2f} | {r['peak_memory_mib']:.0f} | {r['label_agreement']:.4f} | "
                f"{r['exposure_mad']:.4f} | {'pass' if r['guard_passed'] else 'FAIL'} |")
    lines.append("")
    for config, row in chosen.items():
        lines.append(f"- {config}: " + (f"fastest path that passes the guard: **{row['path']}**, "
                                        f"{row['median_ms']:.1f} ms, ×{row['speedup']:.2f} eager fp32"
                                        if row else "no path passes the guard"))
    lines += _format_targets(result)
    if result["references"]:
        lines += ["", "| reference (eager fp32) | median ms | × EGNet-ResNet101 eager fp32 |", "|---|---:|---:|"]
        lines += [f"| {r['model']} | {r['median_ms']:.1f} | {r['ratio_to_paper_egnet']:.2f} |"
                  for r in result["references"]]
    return "\n".join(lines) + "\n"


def _format_targets(result: dict) -> list[str]:
    """The targets table (``bench_targets.py``) and the head-to-head timings behind its speed-ups, or nothing
    where the run had no int8 or bf16 path."""
    checks = [TargetCheck(**check) for check in result["targets"]]
    if not checks:
        return []
    lines = ["", f"Targets: int8 at least {INT8_SPEEDUP}× as fast as the fastest passing path of another precision "
             f"and at least {INT8_PEAK_SHARE} of the int8 GEMM peak; bf16 at least {BF16_PEAK_SHARE} of the bf16 GEMM "
             "peak; each judged on the fastest path of its precision that passes the guard (else its fastest), and "
             "met only with the guard passed. After the table, the judged paths are timed again side by side in "
             "rotating rounds: int8 head to head against every passing path of another precision within "
             f"{CONTENDER_MARGIN}× of the fastest one's median (the smallest ratio counts), and each beside its "
             "precision's GEMM (its share is its median speed there over the best its GEMM reached in the run, "
             "before the paths or in a round). PT2E int8 keeps the stem, the "
             "heads and the blocks its selection chose out of int8 (in bf16 where bf16 is the faster float, else "
             "fp32); its share of the int8 peak counts all of the model's operations.", "",
             "| configuration | target | path | measured | timed | floor | guard | met |",
             "|---|---|---|---:|---|---:|---|---|"]
    for c in checks:
        unit = "×" if c.ratio else ""
        value = "–" if c.value is None else f"{_down(c.value)}{unit}"
        side_by_side = "head to head" if c.ratio else "beside its GEMM"
        timing = (f"{side_by_side}, {c.rounds} rounds" if c.rounds else "–" if c.value is None
                  else "the table's medians")
        target = f"{c.target} ({c.against})" if c.against else c.target
        lines.append(f"| {c.config} | {target} | {c.path} | {value} | {timing} | {c.floor:.2f}{unit} | "
                     f"{'pass' if c.guard_passed else 'FAIL'} | {'yes' if c.met else 'no'} |")
    duels = [HeadToHead(**duel | {"speedup_range": tuple(duel["speedup_range"])}) for duel in result["head_to_head"]]
    shares = [PeakShare(**share) for share in result["peak_shares"]]
    if duels or shares:
        lines.append("")
    lines += [
        f"- {d.config}: head to head, {d.rounds} rounds in rotating order on one frame: {d.int8_path} "
        f"{d.int8_ms:.1f} ms, {d.other_path} {d.other_ms:.1f} ms (medians), ×{_down(d.speedup)} (the median of the "
        f"rounds' ratios, which ran from {_down(d.speedup_range[0])} to {_down(d.speedup_range[1])})" for d in duels]
    for p in shares:
        unit = "GOP/s" if path_precision(p.path) == "int8" else "GFLOP/s"
        lines.append(f"- {p.config}: {p.path} beside its GEMM, {p.rounds} rounds: {p.median_ms:.1f} ms, the GEMM "
                     f"{p.gemm_gflops:.0f} {unit} (medians; its best in the run {p.peak_gflops:.0f}): {_down(p.share)} "
                     "of that best")
    return lines


def _down(value: float) -> str:
    """``value`` with two decimals, rounded down, so that a value under its floor never reads as the floor (1.4996
    as 1.49, not 1.50); the tolerance keeps 0.29, whose float times 100 is 28.999..., as 0.29."""
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"
