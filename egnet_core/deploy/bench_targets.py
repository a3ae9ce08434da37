"""The targets egnet holds its fast CPU paths to, judged on the rows of one ``egnet bench`` run: int8 at least 1.5×
as fast as the fastest path of another precision that passes the accuracy guard, and at least half the int8 GEMM
peak measured in the same run; bf16 at least 0.8 of the bf16 GEMM peak. A path meets a target only if it also
passes the guard. Which paths are fastest differs between CPUs (AMX, VNNI, neither), so the bench says, on the
machine at hand, whether each precision is worth its accuracy cost there.
"""

from __future__ import annotations

from dataclasses import dataclass

INT8_SPEEDUP = 1.5  # over the fastest passing path of another precision
INT8_PEAK_SHARE = 0.5  # of the int8 GEMM peak
BF16_PEAK_SHARE = 0.8  # of the bf16 GEMM peak
LOW_PRECISIONS = ("bf16", "fp16", "int8")  # named in a path's name; any other path is fp32
TABLE_TIMING = "the table's medians"
SPEEDUP = "int8 speed-up over the fastest passing path of another precision"  # the one target that is a ratio


@dataclass(frozen=True)
class HeadToHead:
    config: str
    int8_path: str  # the fastest int8 path that passes the guard
    other_path: str  # the fastest passing path of another precision
    rounds: int  # each times both paths once on one frame, in alternating order
    int8_ms: float  # medians over the rounds
    other_ms: float
    speedup: float  # median over the rounds of other / int8


@dataclass(frozen=True)
class TargetCheck:
    config: str
    target: str  # what is judged, in words
    path: str  # the row judged: the fastest of its precision that passes the guard, else the fastest of it
    value: float | None  # the ratio or share measured; None where the run has nothing to compare with
    floor: float
    against: str | None  # for a speed-up: the path it is over
    timing: str  # how the value was measured: "head to head, N rounds" or "the table's medians"
    guard_passed: bool  # the judged row's accuracy guard
    met: bool  # value at or over floor, and the guard passed


def path_precision(path: str) -> str:
    """The precision a bench path's name says it computes in: bf16, fp16, int8, else fp32."""
    return next((precision for precision in LOW_PRECISIONS if precision in path), "fp32")


def target_checks(ranked: dict[str, list[dict]], duels: list[dict] = ()) -> list[TargetCheck]:
    """The targets of each configuration whose run has an int8 or a bf16 path; ``ranked``: each configuration's
    rows (bench.json's ``paths``), fastest first, as ``benchmark.ranked_paths`` gives them; ``duels``: the run's
    ``HeadToHead`` records as dicts, whose ratio the speed-up takes where one matches its two paths."""
    checks = []
    for config, rows in ranked.items():
        int8, bf16 = _judged(rows, "int8"), _judged(rows, "bf16")
        if int8 is not None:
            other = next((r for r in rows if r["guard_passed"] and path_precision(r["path"]) != "int8"), None)
            speedup, timing = other and other["median_ms"] / int8["median_ms"], TABLE_TIMING
            duel = next((d for d in duels if other and (d["config"], d["int8_path"], d["other_path"]) == (
                config, int8["path"], other["path"])), None)
            if duel:
                speedup, timing = duel["speedup"], f"head to head, {duel['rounds']} rounds"
            checks += [
                _check(config, SPEEDUP, int8, speedup, INT8_SPEEDUP, against=other and other["path"], timing=timing),
                _check(config, "int8 share of the int8 GEMM peak", int8, int8["share_of_peak"], INT8_PEAK_SHARE)]
        if bf16 is not None:
            checks.append(_check(config, "bf16 share of the bf16 GEMM peak", bf16, bf16["share_of_peak"],
                                 BF16_PEAK_SHARE))
    return checks


def _judged(rows: list[dict], precision: str) -> dict | None:
    """The fastest row of ``precision`` that passes the guard, else its fastest row; None without one."""
    own = [row for row in rows if path_precision(row["path"]) == precision]
    return next((row for row in own if row["guard_passed"]), own[0] if own else None)


def _check(config: str, target: str, row: dict, value: float | None, floor: float, *,
           against: str | None = None, timing: str = TABLE_TIMING) -> TargetCheck:
    return TargetCheck(config=config, target=target, path=row["path"], value=value, floor=floor, against=against,
                       timing=timing, guard_passed=row["guard_passed"],
                       met=value is not None and value >= floor and row["guard_passed"])
