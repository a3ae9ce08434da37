"""Which blocks of a network an int8 model keeps out of int8 (in fp32 or bf16): per-block sensitivity, most
sensitive first.

Quantizing every convolution costs a little agreement everywhere: on the trained EGNet-ResNet18 no single block
decides it (benchmarks/RESULTS.md). So the selection measures each block's share: one trial with every block in
int8, then one with each block alone kept out (its gain), then keeps the blocks out in the order of their gains
until the int8 model keeps ``min_agreement`` of the float model's labels and its exposure within
``max_exposure_mad``. A trial is the caller's: quantize with the given blocks kept out, calibrate, and compare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from egnet_core.deploy.precision_choice import EXPOSURE_MAE_CEILING, LABEL_AGREEMENT_FLOOR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Int8Guard:
    """What an int8 model must keep, and how many trials the selection may spend getting there."""

    # Judged on the calibration frames, with a margin under the bench's guard for frames calibration did not see.
    min_agreement: float = LABEL_AGREEMENT_FLOOR + 0.001  # share of pixels whose label equals the float model's
    max_exposure_mad: float = 0.9 * EXPOSURE_MAE_CEILING  # mean absolute difference of the exposure map
    max_trials: int = 48  # quantize-calibrate-compare rounds; a network needing more is quantized whole
    max_float_share: float = 0.5  # of the blocks: more in float is no longer an int8 network

    def __post_init__(self) -> None:
        if not 0.0 < self.min_agreement <= 1.0:
            raise ValueError(f"the int8 label agreement floor must be in (0, 1], got {self.min_agreement!r}")
        if self.max_exposure_mad < 0:
            raise ValueError(f"the int8 exposure error ceiling must be at least 0, got {self.max_exposure_mad!r}")
        if self.max_trials < 1:
            raise ValueError(f"the int8 selection needs at least 1 trial, got {self.max_trials!r}")


@dataclass(frozen=True)
class Trial:
    float_blocks: tuple[str, ...]  # kept out of int8 besides the network's always-float modules
    agreement: float
    exposure_mad: float

    def passes(self, guard: Int8Guard) -> bool:
        return self.agreement >= guard.min_agreement and self.exposure_mad <= guard.max_exposure_mad

    def describe(self) -> str:
        kept = ", ".join(self.float_blocks) or "none"
        return f"labels {self.agreement:.2%}, exposure error {self.exposure_mad:.4f} (blocks kept out of int8: {kept})"


@dataclass(frozen=True)
class Selection:
    chosen: Trial  # the blocks the int8 model keeps out of int8, and what it keeps of the float model
    trials: tuple[Trial, ...]  # every trial, in the order run
    passed: bool


def select_float_blocks(blocks: Sequence[str], trial: Callable[[tuple[str, ...]], Trial], guard: Int8Guard,
                        ) -> Selection:
    """The fewest of ``blocks``, most sensitive first, to keep out of int8 so that ``trial`` passes ``guard``."""
    trials: list[Trial] = []
    done: dict[tuple[str, ...], Trial] = {}  # a set kept out is measured once (a block alone, then promised)

    def run(float_blocks: tuple[str, ...]) -> Trial:
        if float_blocks not in done:
            done[float_blocks] = trial(float_blocks)
            trials.append(done[float_blocks])
            log.info("int8 trial %d: %s", len(trials), trials[-1].describe())
        return done[float_blocks]

    whole = run(())
    if whole.passes(guard):
        return Selection(chosen=whole, trials=tuple(trials), passed=True)
    if 1 + len(blocks) >= guard.max_trials:
        log.warning("int8 keeps %s; measuring each of the %d blocks' sensitivity takes more than the %d trials "
                    "allowed, so every block stays int8", whole.describe(), len(blocks), guard.max_trials)
        return Selection(chosen=whole, trials=tuple(trials), passed=False)
    alone = {block: run((block,)) for block in blocks}
    best, kept = whole, []
    labels, exposure = whole.agreement, whole.exposure_mad  # what the kept blocks promise
    # Greedy: each step keeps the block that covers most of what is still missing, labels and exposure each as a
    # share of its own shortfall; the gains roughly add up, so a trial is run only once they promise to pass.
    for _ in range(max(1, int(len(blocks) * guard.max_float_share))):
        candidates = [block for block in blocks if block not in kept]
        block = max(candidates, key=lambda b: (_cover(alone[b], whole, labels, exposure, guard),
                                               alone[b].agreement, -alone[b].exposure_mad))
        kept.append(block)
        labels += alone[block].agreement - whole.agreement
        exposure -= whole.exposure_mad - alone[block].exposure_mad
        if not Trial(tuple(kept), labels, exposure).passes(guard) or len(trials) >= guard.max_trials:
            continue
        best = run(tuple(kept))
        if best.passes(guard):
            return Selection(chosen=best, trials=tuple(trials), passed=True)
    if best.float_blocks != tuple(kept) and len(trials) < guard.max_trials:
        best = run(tuple(kept))
    passed = best.passes(guard)
    if not passed:
        log.warning("int8 keeps only %s, short of %.2f%% of the labels and exposure error %.3f after %d trials",
                    best.describe(), 100 * guard.min_agreement, guard.max_exposure_mad, len(trials))
    return Selection(chosen=best, trials=tuple(trials), passed=passed)


def _cover(alone: Trial, whole: Trial, labels: float, exposure: float, guard: Int8Guard) -> float:
    """How much of the shortfall left at the promised ``labels`` and ``exposure`` keeping one block in float covers
    (its gains measured alone against ``whole``): up to 1 for labels plus up to 1 for exposure."""
    cover = 0.0
    if (short := guard.min_agreement - labels) > 0:
        cover += min(max(alone.agreement - whole.agreement, 0.0), short) / short
    if (excess := exposure - guard.max_exposure_mad) > 0:
        cover += min(max(whole.exposure_mad - alone.exposure_mad, 0.0), excess) / excess
    return cover
