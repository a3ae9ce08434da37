"""The targets egnet holds its fast CPU paths to, judged on the rows of one ``egnet bench`` run: int8 at least 1.5×
as fast as the fastest path of another precision that passes the accuracy guard, and at least half the int8 GEMM
peak measured in the same run; bf16 at least 0.8 of the bf16 GEMM peak. A path meets a target only if it also
passes the guard. Which paths are fastest differs between CPUs (AMX, VNNI, neither), so the bench says, on the
machine at hand, whether each precision is worth its accuracy cost there.

The speed of a shared machine drifts between the rows of a run (a bf16 matmul ran 2.4× apart within an hour on a
2-core cloud machine), so after its table the bench times each configuration's judged paths again in rotating
rounds (``benchmark._side_by_side``): the fastest passing int8 path against every passing path of another precision
whose table median is within ``CONTENDER_MARGIN`` of the fastest of them (one noisy median must not pick the
opponent; the smallest ratio counts), and the fastest passing int8 and bf16 paths each beside its precision's GEMM.
A share is the path's median speed in those rounds over the best its GEMM reached in the run (before the paths or
in any round): a GEMM slowed with the machine never lifts a share, so a share can only be understated by noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

INT8_SPEEDUP = 1.5  # over the fastest passing path of another precision
INT8_PEAK_SHARE = 0.5  # of the int8 GEMM peak
BF16_PEAK_SHARE = 0.8  # of the bf16 GEMM peak
CONTENDER_MARGIN = 1.15  # paths of another precision within this factor of the fastest one's median are opponents
LOW_PRECISIONS = ("bf16", "fp16", "int8")  # named in a path's name; any other path is fp32
SPEEDUP = "int8 speed-up over the fastest passing path of another precision"


@dataclass(frozen=True)
class HeadToHead:
    config: str
    int8_path: str  # the fastest int8 path that passes the guard
    other_path: str  # a passing path of another precision (see ``duel_paths``)
    rounds: int  # each times int8 and every opponent once on one frame, in rotating order
    int8_ms: float  # medians over the rounds
    other_ms: float
    speedup: float  # median over the rounds of other / int8
    speedup_range: tuple[float, float]  # the lowest and the highest round's, how much the machine moved


@dataclass(frozen=True)
class PeakShare:
    config: str
    path: str
    rounds: int  # each times the path and its precision's GEMM once, among the configuration's other timings
    median_ms: float  # the path's median over the rounds
    gemm_gflops: float  # the GEMM's median over the rounds (GOP/s for int8)
    peak_gflops: float  # the best the GEMM reached in the run: before the paths or in any of the rounds
    share: float  # the path's GFLOP/s at its median over peak_gflops


@dataclass(frozen=True)
class TargetCheck:
    config: str
    target: str  # what is judged, in words
    path: str  # the row judged: the fastest of its precision that passes the guard, else the fastest of it
    value: float | None  # the ratio or share measured; None where the run has nothing to compare with
    floor: float
    ratio: bool  # value is a speed-up (×) rather than a share of a peak
    against: str | None  # for a speed-up: the path it is over
    rounds: int | None  # the side-by-side rounds it was taken in; None: the table's medians and the peak measured
    # before the paths
    guard_passed: bool  # the judged row's accuracy guard
    met: bool  # value at or over floor, and the guard passed


def path_precision(path: str) -> str:
    """The precision a bench path's name says it computes in: bf16, fp16, int8, else fp32."""
    return next((precision for precision in LOW_PRECISIONS if precision in path), "fp32")


def duel_paths(rows: list[dict]) -> tuple[str, list[str]] | None:
    """One configuration's rows (bench.json's ``paths``), fastest first: its fastest int8 path that passes the
    guard, and the passing paths of another precision within CONTENDER_MARGIN of the fastest of them, fastest
    first; None where either kind is missing."""
    int8 = _fastest_passing(rows, "int8")
    others = [row for row in rows if row["guard_passed"] and path_precision(row["path"]) != "int8"]
    if int8 is None or not others:
        return None
    return int8["path"], [row["path"] for row in others
                          if row["median_ms"] <= others[0]["median_ms"] * CONTENDER_MARGIN]


def share_paths(rows: list[dict]) -> list[str]:
    """One configuration's rows, fastest first: its fastest passing int8 and bf16 paths, whose shares of their
    GEMM peak are judged (a precision none of whose paths passes misses its target whatever its speed)."""
    return [row["path"] for row in (_fastest_passing(rows, "int8"), _fastest_passing(rows, "bf16")) if row]


def head_to_heads(config: str, int8: str, others: list[str], seconds: dict[str, list[float]]) -> list[HeadToHead]:
    """``int8`` against each of ``others`` from ``seconds``: each path's seconds in the same rounds, in order."""
    duels = []
    for other in others:
        ratios = [o / i for i, o in zip(seconds[int8], seconds[other], strict=True)]
        duels.append(HeadToHead(
            config=config, int8_path=int8, other_path=other, rounds=len(ratios),
            int8_ms=statistics.median(seconds[int8]) * 1e3, other_ms=statistics.median(seconds[other]) * 1e3,
            speedup=statistics.median(ratios), speedup_range=(min(ratios), max(ratios))))
    return duels


def peak_share(config: str, path: str, gflop: float, seconds: list[float], gemm_gop: float,
               gemm_seconds: list[float], peak_gflops: float) -> PeakShare:
    """``path``'s share of its GEMM's peak: a frame of ``gflop`` GFLOP took ``seconds`` in the rounds, the GEMM of
    ``gemm_gop`` GOP took ``gemm_seconds`` in the same rounds and reached ``peak_gflops`` before them."""
    peak = max(peak_gflops, gemm_gop / min(gemm_seconds))
    median = statistics.median(seconds)
    return PeakShare(config=config, path=path, rounds=len(seconds), median_ms=median * 1e3,
                     gemm_gflops=gemm_gop / statistics.median(gemm_seconds), peak_gflops=peak,
                     share=gflop / median / peak)


def target_checks(ranked: dict[str, list[dict]], duels: Sequence[HeadToHead] = (),
                  shares: Sequence[PeakShare] = ()) -> list[TargetCheck]:
    """The targets of each configuration whose run has an int8 or a bf16 path; ``ranked``: each configuration's
    rows, fastest first, as ``benchmark.ranked_paths`` gives them; ``duels`` and ``shares``: the run's side-by-side
    timings. The judged int8 path's smallest head-to-head ratio is its speed-up, and a path's share beside its GEMM
    is its share; without them, the table's medians and the peak measured before the paths."""
    checks = []
    for config, rows in ranked.items():
        int8, bf16 = _judged(rows, "int8"), _judged(rows, "bf16")
        if int8 is not None:
            own = [d for d in duels if (d.config, d.int8_path) == (config, int8["path"])]
            if own:
                duel = min(own, key=lambda d: d.speedup)
                speedup, against, rounds = duel.speedup, duel.other_path, duel.rounds
            else:
                other = next((r for r in rows if r["guard_passed"] and path_precision(r["path"]) != "int8"), None)
                speedup = other and other["median_ms"] / int8["median_ms"]
                against, rounds = other and other["path"], None
            checks += [
                _check(config, SPEEDUP, int8, speedup, INT8_SPEEDUP, ratio=True, against=against, rounds=rounds),
                _share_check(config, "int8", int8, INT8_PEAK_SHARE, shares)]
        if bf16 is not None:
            checks.append(_share_check(config, "bf16", bf16, BF16_PEAK_SHARE, shares))
    return checks


def _share_check(config: str, precision: str, row: dict, floor: float, shares: Sequence[PeakShare]) -> TargetCheck:
    side_by_side = next((s for s in shares if (s.config, s.path) == (config, row["path"])), None)
    value, rounds = (side_by_side.share, side_by_side.rounds) if side_by_side else (row["share_of_peak"], None)
    return _check(config, f"{precision} share of the {precision} GEMM peak", row, value, floor, rounds=rounds)


def _judged(rows: list[dict], precision: str) -> dict | None:
    """The fastest row of ``precision`` that passes the guard, else its fastest row; None without one."""
    return _fastest_passing(rows, precision) or next((r for r in rows if path_precision(r["path"]) == precision), None)


def _fastest_passing(rows: list[dict], precision: str) -> dict | None:
    """The first row (rows fastest first) of ``precision`` that passes the guard; None without one."""
    return next((r for r in rows if r["guard_passed"] and path_precision(r["path"]) == precision), None)


def _check(config: str, target: str, row: dict, value: float | None, floor: float, *, ratio: bool = False,
           against: str | None = None, rounds: int | None = None) -> TargetCheck:
    return TargetCheck(config=config, target=target, path=row["path"], value=value, floor=floor, ratio=ratio,
                       against=against, rounds=rounds, guard_passed=row["guard_passed"],
                       met=value is not None and value >= floor and row["guard_passed"])
