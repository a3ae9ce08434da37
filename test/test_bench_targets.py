"""egnet_core.deploy.bench_targets: which rows of a bench run its targets judge, which paths int8 is timed against,
and how bench.md shows them (rows built by hand: no timing is asserted)."""

import json

import pytest
from helpers_bench import PAPER, REAL_TIME, bench_result, bench_row

from egnet_core.deploy.bench_targets import (
    SPEEDUP,
    HeadToHead,
    PeakShare,
    duel_paths,
    head_to_heads,
    path_precision,
    peak_share,
    share_paths,
    target_checks,
)
from egnet_core.deploy.benchmark import format_benchmark, ranked_paths

INT8 = "PT2E int8 (Inductor)"


def _paths() -> list[dict]:
    return [bench_row(REAL_TIME, "eager fp32", 1200.0, 1.0),
            bench_row(REAL_TIME, "compiled bf16", 300.0, 0.997, share_of_peak=0.95),
            bench_row(REAL_TIME, "bf16", 250.0, 0.99, share_of_peak=0.99),  # faster, but it fails the guard
            bench_row(REAL_TIME, "onnxruntime int8", 150.0, 0.99, share_of_peak=0.9),  # fails the guard
            bench_row(REAL_TIME, INT8, 190.0, 0.997, share_of_peak=0.45),
            bench_row(REAL_TIME, "compiled fp32", 330.0, 1.0)]  # within 15% of compiled bf16


def _duel(other: str, speedup: float, int8: str = INT8) -> HeadToHead:
    return HeadToHead(config=REAL_TIME, int8_path=int8, other_path=other, rounds=5, int8_ms=200.0,
                      other_ms=200.0 * speedup, speedup=speedup, speedup_range=(speedup - 0.2, speedup + 0.1))


def test_each_precision_is_judged_on_its_fastest_path_that_passes_the_guard():
    checks = {check.target: check for check in target_checks(ranked_paths(_paths()))}
    speedup = checks[SPEEDUP]
    assert (speedup.path, speedup.against, speedup.rounds, speedup.ratio, speedup.guard_passed, speedup.met) == (
        INT8, "compiled bf16", None, True, True, True)
    assert speedup.value == pytest.approx(300.0 / 190.0)
    share = checks["int8 share of the int8 GEMM peak"]
    assert (share.path, share.value, share.floor, share.ratio, share.met) == (INT8, 0.45, 0.5, False, False)
    bf16 = checks["bf16 share of the bf16 GEMM peak"]
    assert (bf16.path, bf16.value, bf16.met) == ("compiled bf16", 0.95, True)


def test_int8_is_timed_against_every_passing_path_of_another_precision_near_the_fastest():
    assert duel_paths(ranked_paths(_paths())[REAL_TIME]) == (INT8, ["compiled bf16", "compiled fp32"])
    without_int8 = [row for row in _paths() if path_precision(row["path"]) != "int8"]
    assert duel_paths(ranked_paths(without_int8)[REAL_TIME]) is None
    only_int8 = [bench_row(REAL_TIME, "eager fp32", 1200.0, 0.99), bench_row(REAL_TIME, INT8, 190.0, 0.997)]
    assert duel_paths(ranked_paths(only_int8)[REAL_TIME]) is None  # the reference failing: nothing to time against


def test_side_by_side_records_take_medians_of_the_rounds_ratios():
    # Binary fractions, so that every ratio is exact.
    seconds = {INT8: [0.125, 0.25, 0.125], "compiled bf16": [0.25, 0.25, 0.375],
               "compiled fp32": [0.1875, 0.625, 0.125]}
    assert head_to_heads(REAL_TIME, INT8, ["compiled bf16", "compiled fp32"], seconds) == [
        HeadToHead(config=REAL_TIME, int8_path=INT8, other_path="compiled bf16", rounds=3, int8_ms=125.0,
                   other_ms=250.0, speedup=2.0, speedup_range=(1.0, 3.0)),
        HeadToHead(config=REAL_TIME, int8_path=INT8, other_path="compiled fp32", rounds=3, int8_ms=125.0,
                   other_ms=187.5, speedup=1.5, speedup_range=(1.0, 2.5))]
    # 10 GFLOP frames at 100 GFLOP/s (the median) beside a 100 GOP GEMM at 100, 100 and 200 GOP/s: the best GEMM of
    # the run is the rounds' 200 where the peak measured before them was lower, and that before them where higher.
    share = peak_share(REAL_TIME, INT8, 10.0, [0.1, 0.2, 0.1], 100.0, [1.0, 1.0, 0.5], peak_gflops=150.0)
    assert share == PeakShare(config=REAL_TIME, path=INT8, rounds=3, median_ms=100.0, gemm_gflops=100.0,
                              peak_gflops=200.0, share=0.5)
    assert peak_share(REAL_TIME, INT8, 10.0, [0.1, 0.2, 0.1], 100.0, [1.0, 1.0, 0.5], peak_gflops=400.0).share == 0.25


def test_the_smallest_head_to_head_ratio_of_the_judged_int8_path_is_its_speed_up():
    duels = [_duel("compiled bf16", 1.6), _duel("compiled fp32", 1.45), _duel("compiled bf16", 1.2, "onnxruntime int8")]
    (speedup,) = [check for check in target_checks(ranked_paths(_paths()), duels) if check.target == SPEEDUP]
    assert (speedup.value, speedup.against, speedup.rounds, speedup.met) == (1.45, "compiled fp32", 5, False)


def test_shares_taken_beside_the_gemm_replace_the_table_ones_for_the_fastest_passing_int8_and_bf16_paths():
    assert share_paths(ranked_paths(_paths())[REAL_TIME]) == [INT8, "compiled bf16"]
    failing_bf16 = [row for row in _paths() if row["path"] != "compiled bf16"]
    assert share_paths(ranked_paths(failing_bf16)[REAL_TIME]) == [INT8]
    shares = [PeakShare(config=REAL_TIME, path=INT8, rounds=5, median_ms=120.0, gemm_gflops=2000.0,
                        peak_gflops=2500.0, share=0.52),
              PeakShare(config=REAL_TIME, path="compiled bf16", rounds=5, median_ms=100.0, gemm_gflops=900.0,
                        peak_gflops=1000.0, share=0.7)]
    checks = {check.target: check for check in target_checks(ranked_paths(_paths()), shares=shares)}
    int8, bf16 = checks["int8 share of the int8 GEMM peak"], checks["bf16 share of the bf16 GEMM peak"]
    assert (int8.value, int8.rounds, int8.met) == (0.52, 5, True)
    assert (bf16.value, bf16.rounds, bf16.met) == (0.7, 5, False)
    text = format_benchmark(bench_result(_paths(), shares=shares))
    assert (f"| {REAL_TIME} | int8 share of the int8 GEMM peak | {INT8} | 0.52 | beside its GEMM, 5 rounds | 0.50 | "
            "pass | yes |") in text
    assert (f"- {REAL_TIME}: {INT8} beside its GEMM, 5 rounds: 120.0 ms, the GEMM 2000 GOP/s (medians; its best in "
            "the run 2500): 0.52 of that best") in text
    assert f"- {REAL_TIME}: compiled bf16 beside its GEMM, 5 rounds: 100.0 ms, the GEMM 900 GFLOP/s" in text


def test_bench_md_shows_the_targets_the_timing_behind_them_and_the_head_to_head():
    result = bench_result(_paths(), [_duel("compiled bf16", 1.62), _duel("compiled fp32", 1.7)])
    text = format_benchmark(result)
    assert format_benchmark(json.loads(json.dumps(result))) == text  # as `egnet bench` writes and reads bench.json
    assert (f"| {REAL_TIME} | {SPEEDUP} (compiled bf16) | {INT8} | 1.62× | head to head, 5 rounds | 1.50× | pass | "
            "yes |") in text
    assert (f"| {REAL_TIME} | int8 share of the int8 GEMM peak | {INT8} | 0.45 | the table's medians | 0.50 | pass | "
            "no |") in text
    assert (f"- {REAL_TIME}: head to head, 5 rounds in rotating order on one frame: {INT8} 200.0 ms, compiled bf16 "
            "324.0 ms (medians), ×1.62 (the median of the rounds' ratios, which ran from 1.42 to 1.72)") in text
    assert f"{INT8} 200.0 ms, compiled fp32 340.0 ms (medians), ×1.70" in text
    table = format_benchmark(bench_result(_paths()))
    assert (f"| {REAL_TIME} | {SPEEDUP} (compiled bf16) | {INT8} | 1.57× | the table's medians | 1.50× | pass | "
            "yes |") in table
    assert "head to head, 5 rounds" not in table and "rounds in rotating order" not in table
    just_under = format_benchmark(bench_result(_paths(), [_duel("compiled bf16", 1.4996)]))
    assert f"| {INT8} | 1.49× | head to head, 5 rounds | 1.50× | pass | no |" in just_under
    exact = format_benchmark(bench_result(_paths(), [_duel("compiled bf16", 0.29)]))  # 0.29 × 100 is 28.999...
    assert f"| {INT8} | 0.29× | head to head, 5 rounds | 1.50× | pass | no |" in exact


def test_a_precision_that_only_fails_the_guard_misses_its_target_and_a_run_without_one_has_no_targets():
    paths = [bench_row(PAPER, "compiled fp32", 5000.0, 1.0),
             bench_row(PAPER, "compiled bf16", 1300.0, 0.996, exposure_mad=0.011, guard_passed=False),
             bench_row(PAPER, INT8, 900.0, 0.6, guard_passed=False)]
    checks = target_checks(ranked_paths(paths))
    assert [(c.target, c.path, c.value, c.guard_passed, c.met) for c in checks] == [
        (SPEEDUP, INT8, pytest.approx(5000.0 / 900.0), False, False),
        ("int8 share of the int8 GEMM peak", INT8, 0.9, False, False),
        ("bf16 share of the bf16 GEMM peak", "compiled bf16", 0.9, False, False)]
    text = format_benchmark(bench_result(paths))
    assert (f"| {PAPER} | bf16 share of the bf16 GEMM peak | compiled bf16 | 0.90 | the table's medians | 0.80 | FAIL "
            "| no |") in text
    nothing_passes = [bench_row(PAPER, "eager fp32", 5000.0, 0.99), bench_row(PAPER, INT8, 900.0, 0.6)]
    assert (f"| {PAPER} | {SPEEDUP} | {INT8} | – | – | 1.50× | FAIL | no |"
            in format_benchmark(bench_result(nothing_passes)))
    fp32_only = [bench_row(PAPER, "eager fp32", 5000.0, 1.0)]
    assert target_checks(ranked_paths(fp32_only)) == []
    assert "Targets:" not in format_benchmark(bench_result(fp32_only))


def test_a_path_computes_in_the_precision_its_name_says_else_fp32():
    assert [path_precision(name) for name in (INT8, "compiled bf16", "fp16", "onnxruntime fp32", "eager fp32")] == [
        "int8", "bf16", "fp16", "fp32", "fp32"]
