"""Which blocks an int8 model keeps in float (``deploy/int8_selection.py``), on trials whose outcome is known:
each block costs a fixed share of the labels and of the exposure when it is int8, and the costs add up."""

from __future__ import annotations

import logging

import pytest

from egnet_core.deploy.int8_selection import Int8Guard, Trial, select_float_blocks

BLOCKS = ("s1.0", "s2.0", "s2.1", "s3.0", "s3.1", "exposure.0")
GUARD = Int8Guard(min_agreement=0.995, max_exposure_mad=0.01)


def additive(label_cost: dict[str, float], exposure_cost: dict[str, float] | None = None):
    """A trial in which every int8 block costs its share; the blocks in float cost nothing."""
    exposure_cost = exposure_cost or {}
    calls: list[tuple[str, ...]] = []

    def trial(float_blocks: tuple[str, ...]) -> Trial:
        calls.append(float_blocks)
        int8 = [block for block in BLOCKS if block not in float_blocks]
        return Trial(float_blocks, 1.0 - sum(label_cost.get(b, 0.0) for b in int8),
                     0.002 + sum(exposure_cost.get(b, 0.0) for b in int8))

    return trial, calls


def test_a_network_that_passes_whole_is_all_int8_after_one_trial():
    trial, calls = additive({"s2.0": 0.002, "s3.0": 0.001})
    selection = select_float_blocks(BLOCKS, trial, GUARD)
    assert selection.passed and selection.chosen.float_blocks == () and calls == [()]


def test_the_blocks_that_cost_most_labels_are_kept_in_float_and_no_more():
    trial, calls = additive({"s1.0": 0.001, "s2.0": 0.003, "s2.1": 0.0015, "s3.0": 0.002, "s3.1": 0.0015})
    selection = select_float_blocks(BLOCKS, trial, GUARD)
    # 0.9% lost; keeping s2.0 alone still loses 0.6% (fails), keeping s2.0 and s3.0 loses 0.4% (passes).
    assert selection.passed and selection.chosen.float_blocks == ("s2.0", "s3.0")
    assert selection.chosen.agreement == pytest.approx(0.996)
    # One whole trial, one per block alone, then only the promising sets: here the first one.
    assert calls == [(), *[(block,) for block in BLOCKS], ("s2.0", "s3.0")] and len(selection.trials) == len(calls)


def test_a_block_whose_trial_alone_passes_is_chosen_without_measuring_it_again():
    trial, calls = additive({"s2.0": 0.006, "s3.0": 0.001})  # 99.3%; s2.0 alone in float: 99.9%
    selection = select_float_blocks(BLOCKS, trial, GUARD)
    assert selection.passed and selection.chosen.float_blocks == ("s2.0",)
    assert calls == [(), *[(block,) for block in BLOCKS]] and len(selection.trials) == len(calls)


def test_an_exposure_error_over_the_ceiling_keeps_the_exposure_blocks_that_cause_it():
    trial, _ = additive({"s2.0": 0.001}, {"exposure.0": 0.012, "s1.0": 0.001})
    selection = select_float_blocks(BLOCKS, trial, GUARD)
    assert selection.passed and selection.chosen.float_blocks == ("exposure.0",)
    assert selection.chosen.exposure_mad == pytest.approx(0.003)


def test_a_small_exposure_excess_costs_one_exposure_block_not_every_block_that_helps_exposure():
    # Labels 0.2 point short, exposure 0.0005 over: one label block and one exposure block cover both.
    trial, calls = additive({"s2.0": 0.004, "s3.0": 0.003},
                            {"exposure.0": 0.0075, "s1.0": 0.001, "s2.1": 0.0004, "s3.1": 0.0004})
    selection = select_float_blocks(BLOCKS, trial, GUARD)
    assert selection.passed and sorted(selection.chosen.float_blocks) == ["exposure.0", "s2.0"]
    assert len(calls) == 1 + len(BLOCKS) + 1


def test_a_network_too_big_for_the_trial_budget_stays_int8_and_says_so(caplog):
    trial, calls = additive({"s2.0": 0.01})
    with caplog.at_level(logging.WARNING, logger="egnet_core.deploy.int8_selection"):
        selection = select_float_blocks(BLOCKS, trial, Int8Guard(max_trials=6))
    assert not selection.passed and selection.chosen.float_blocks == () and calls == [()]
    assert "each of the 6 blocks' sensitivity takes more than the 6 trials allowed" in caplog.text


def test_no_more_than_half_the_blocks_are_kept_in_float(caplog):
    trial, _ = additive({block: 0.01 for block in BLOCKS})  # every block costs a point: none is enough
    with caplog.at_level(logging.WARNING, logger="egnet_core.deploy.int8_selection"):
        selection = select_float_blocks(BLOCKS, trial, GUARD)
    assert not selection.passed and len(selection.chosen.float_blocks) == len(BLOCKS) // 2
    assert selection.chosen.agreement == pytest.approx(0.97)
    assert "int8 keeps only labels 97.00%" in caplog.text


@pytest.mark.parametrize(("options", "message"), [
    ({"min_agreement": 0.0}, "floor must be in \\(0, 1\\], got 0.0"),
    ({"min_agreement": 99.5}, "got 99.5"),
    ({"max_exposure_mad": -0.1}, "ceiling must be at least 0, got -0.1"),
    ({"max_trials": 0}, "at least 1 trial, got 0"),
])
def test_a_guard_out_of_range_is_refused_naming_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        Int8Guard(**options)
