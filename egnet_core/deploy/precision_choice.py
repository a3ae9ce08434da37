"""Precision ``auto``: the Segmenter's path chosen at start-up by measuring it on this device.

Which precision is fastest depends on the machine more than on its name: bf16 ran at half the fp32 rate on a
Xeon with AVX-512 BF16 but no AMX (benchmarks/RESULTS.md, 2026-11-26), and it is not always accurate enough
either. So each path the device offers (fp32 with BatchNorm folded and channels-last, bf16 where the CPU
computes it natively; fp32, fp16 and bf16 on CUDA) predicts the same generated night frames, at the size and
batch that will be predicted, and the fastest path within the guard is kept: labels equal to fp32's on at least
99.5% of pixels, and exposure within 0.01 of fp32's, mean absolute. fp32, the reference, always qualifies.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from egnet_core.data.synthetic import MIN_HEIGHT, MIN_WIDTH, render_night_frames
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.options import PRECISIONS, cpu_flags

if TYPE_CHECKING:
    from egnet_core.deploy.inference import Segmentation

log = logging.getLogger(__name__)

LABEL_AGREEMENT_FLOOR = 0.995  # share of pixels whose label must equal fp32's
EXPOSURE_MAE_CEILING = 1e-2  # largest mean absolute difference from fp32's exposure map
TIMED_RUNS = 3  # per path, after one untimed run that sets up its kernels; the median counts
FRAMES_SEED = 0

Network = TypeVar("Network")  # what runs one precision's path (the Segmenter's: its network and dtype)


@dataclass(frozen=True)
class PrecisionTrial:
    """One path as measured: ``seconds`` per batch (median), the share of pixels whose label equals fp32's, the
    mean absolute difference of its exposure map from fp32's, and why it was ``accepted`` or refused."""

    precision: str
    seconds: float
    label_agreement: float
    exposure_mae: float
    accepted: bool
    reason: str


@dataclass(frozen=True)
class PrecisionChoice:
    """What precision auto measured and kept: ``trials`` fp32 first, then each other candidate as tried;
    ``startup_s`` the seconds the whole choice took (frames, building and timing every path)."""

    trials: tuple[PrecisionTrial, ...]
    chosen: str
    startup_s: float
    size: tuple[int, int]  # (width, height) of the frames timed
    batch: int

    def table(self) -> str:
        """The trials as a plain-text table, for logs."""
        lines = [f"{'precision':<9}  {'ms/batch':>8}  {'labels=fp32':>11}  {'exposure MAE':>12}  verdict"]
        for trial in self.trials:
            verdict = ("chosen" if trial.precision == self.chosen else "accepted" if trial.accepted
                       else f"refused: {trial.reason}")
            lines.append(f"{trial.precision:<9}  {trial.seconds * 1e3:>8.1f}  {trial.label_agreement:>11.2%}  "
                         f"{trial.exposure_mae:>12.4f}  {verdict}")
        return "\n".join(lines)


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere torch emulates it, slowly."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def offered_precisions(device: torch.device) -> tuple[str, ...]:
    """The precisions worth timing on ``device``, fp32 first."""
    if device.type == "cuda":
        return ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported(including_emulation=False) else ("fp32", "fp16")
    return ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)


def judge(precision: str, seconds: float, *, label_agreement: float, exposure_mae: float) -> PrecisionTrial:
    """A measured path against the guard."""
    refusals = []
    if label_agreement < LABEL_AGREEMENT_FLOOR:
        refusals.append(f"labels agree with fp32 on {label_agreement:.2%} of pixels, below {LABEL_AGREEMENT_FLOOR:.2%}")
    if exposure_mae > EXPOSURE_MAE_CEILING:
        refusals.append(f"exposure differs from fp32's by {exposure_mae:.4f} mean absolute, "
                        f"above {EXPOSURE_MAE_CEILING:g}")
    return PrecisionTrial(precision, seconds, label_agreement, exposure_mae, accepted=not refusals,
                          reason="; ".join(refusals) or "within the guard")


def fastest_accepted(trials: Sequence[PrecisionTrial]) -> str:
    return min((trial for trial in trials if trial.accepted), key=lambda trial: trial.seconds).precision


def choose_precision(
    build: Callable[[str], Network], run: Callable[[Network, list[np.ndarray]], Sequence[Segmentation]], *,
    device: torch.device, size: tuple[int, int], batch: int, candidates: Sequence[str] | None = None,
) -> tuple[PrecisionChoice, Network]:
    """The fastest path within the guard, and that path: ``build(precision)`` makes one, ``run(path, frames)``
    predicts frames along it. ``candidates``: the precisions to try beside fp32, which is always tried first
    (default: what ``device`` offers). A path that fails (InferenceError) is refused; fp32 failing is raised.
    Each path not kept is dropped as soon as a faster one is accepted or it is refused."""
    start = time.perf_counter()
    precisions = _candidates(candidates, device)
    frames = trial_frames(size, batch)
    best = build("fp32")
    seconds, reference = _timed(run, best, frames)
    trials = [judge("fp32", seconds, label_agreement=1.0, exposure_mae=0.0)]
    for precision in precisions[1:]:
        try:
            path = build(precision)
            seconds, outputs = _timed(run, path, frames)
        except InferenceError as error:  # an operation this precision lacks on this device, out of memory
            trials.append(PrecisionTrial(precision, float("nan"), float("nan"), float("nan"), accepted=False,
                                         reason=f"failed: {error}"))
            continue
        trials.append(judge(precision, seconds, **_difference(reference, outputs)))
        if fastest_accepted(trials) == precision:
            best = path
        del path
    choice = PrecisionChoice(tuple(trials), fastest_accepted(trials), time.perf_counter() - start, size, batch)
    log.info("precision auto chose %s on %s in %.1f s (%d×%d frames, batch %d):\n%s", choice.chosen, device,
             choice.startup_s, size[0], size[1], batch, choice.table())
    return choice, best


def trial_frames(size: tuple[int, int], batch: int) -> list[np.ndarray]:
    """``batch`` generated night frames of ``size`` (width, height); below the generator's minimum, the corner
    of a minimum-size scene."""
    width, height = size
    frames = render_night_frames(FRAMES_SEED, batch, width=max(width, MIN_WIDTH), height=max(height, MIN_HEIGHT))
    return [np.ascontiguousarray(frame[:height, :width]) for frame in frames]


def _candidates(candidates: Sequence[str] | None, device: torch.device) -> tuple[str, ...]:
    precisions = offered_precisions(device) if candidates is None else tuple(candidates)
    unknown = [precision for precision in precisions if precision not in PRECISIONS]
    if unknown:
        raise ValueError(f"candidate precisions must be among {', '.join(PRECISIONS)}, got "
                         f"{', '.join(map(repr, unknown))}")
    return ("fp32", *dict.fromkeys(precision for precision in precisions if precision != "fp32"))


def _timed(run: Callable, path: Network, frames: list[np.ndarray]) -> tuple[float, Sequence[Segmentation]]:
    run(path, frames)  # kernel selection, weight reordering and allocation stay out of the time
    seconds = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        outputs = run(path, frames)  # results come back to the host, so CUDA work is finished here
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), outputs


def _difference(reference: Sequence[Segmentation], outputs: Sequence[Segmentation]) -> dict[str, float]:
    labels = np.mean([np.mean(a.labels == b.labels) for a, b in zip(reference, outputs)])
    exposure = np.mean([np.mean(np.abs(a.exposure - b.exposure)) for a, b in zip(reference, outputs)])
    return {"label_agreement": float(labels), "exposure_mae": float(exposure)}
