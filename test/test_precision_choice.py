"""Precision ``auto``: the Segmenter times each precision this device offers and keeps the fastest that agrees
with fp32."""

import logging
from pathlib import Path

import pytest
import torch
from helpers import random_frames, tiny_model

from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.precision_choice import (
    EXPOSURE_MAE_CEILING,
    LABEL_AGREEMENT_FLOOR,
    PrecisionChoice,
    fastest_accepted,
    judge,
    offered_precisions,
)

SIZE = (128, 64)  # (width, height)


def tied_model():
    """An EGNet whose logits tie two classes to within bf16's resolution inside a residual block, which the bf16
    path runs in bf16 (its stream and heads stay fp32): the last stage's first block outputs zeros, so the second
    block outputs its last batch norm's bias, 1 for channel 0 and 1 + 2⁻⁹ for channel 1, which the head passes on
    as the logits of classes 0 and 1. Class 1 wins by 2⁻⁹ in fp32, a margin that rounds away in bf16 (8 significant
    bits), where the tie goes to class 0. So its bf16 labels differ from fp32's on every pixel."""
    model = tiny_model()
    first, second = model.segmentation_stages[-1]
    with torch.no_grad():
        for norm in (first.bn2, first.downsample[1], second.bn2):
            norm.weight.zero_()
            norm.bias.zero_()
        second.bn2.bias[:2] = torch.tensor([1.0, 1.0 + 2**-9])
        model.segmentation_head.weight.zero_()
        model.segmentation_head.weight[0, 0] = model.segmentation_head.weight[1, 1] = 1.0
        model.segmentation_head.bias.fill_(-10.0)
        model.segmentation_head.bias[:2] = 0.0
    return model


def test_auto_times_each_offered_precision_keeps_one_and_logs_the_table(caplog):
    segmenter = Segmenter(tiny_model(), precision="auto")
    with caplog.at_level(logging.INFO, logger="egnet_core.deploy.precision_choice"):
        segmenter.warm_up(SIZE, batch=2)
    choice = segmenter.precision_choice
    assert [trial.precision for trial in choice.trials] == list(offered_precisions(segmenter.device))
    assert (choice.size, choice.batch) == (SIZE, 2)
    assert choice.chosen == segmenter.precision == fastest_accepted(choice.trials)
    assert choice.startup_s > sum(trial.seconds for trial in choice.trials)
    reference = choice.trials[0]
    assert (reference.precision, reference.label_agreement, reference.exposure_mae) == ("fp32", 1.0, 0.0)
    assert reference.accepted
    assert choice.table() in caplog.text and f"precision auto chose {choice.chosen}" in caplog.text
    for trial in choice.trials:
        assert trial.precision in choice.table()
    (frame,) = random_frames(1, width=SIZE[0], height=SIZE[1])
    assert segmenter.predict(frame).labels.shape == (SIZE[1], SIZE[0])


def test_candidates_can_be_forced_and_only_the_chosen_paths_model_is_kept():
    segmenter = Segmenter(tiny_model(), precision="auto")
    segmenter.warm_up(SIZE, candidates=("bf16",))  # fp32 is always tried first: it is the reference
    choice = segmenter.precision_choice
    assert [trial.precision for trial in choice.trials] == ["fp32", "bf16"]
    networks = [value for value in vars(segmenter).values() if isinstance(value, torch.nn.Module)]
    assert {id(network) for network in networks} == {id(segmenter.model)}  # one model (also the eager one)
    # bf16 runs the ResNet stages in bf16 and the stem, the EGLs and the heads in fp32 (bf16_stages.py)
    block_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[choice.chosen]
    assert segmenter.model.segmentation_stages[0][0].conv1.weight.dtype == block_dtype
    assert segmenter.model.encoder[0].weight.dtype == segmenter.model.segmentation_head.weight.dtype == torch.float32


def test_a_path_whose_labels_disagree_with_fp32_is_refused_naming_the_agreement():
    segmenter = Segmenter(tied_model(), precision="auto")
    segmenter.warm_up(SIZE, candidates=("fp32", "bf16"))
    fp32, bf16 = segmenter.precision_choice.trials
    assert bf16.label_agreement == 0.0 and not bf16.accepted
    assert "labels agree with fp32 on 0.00% of pixels, below 99.50%" in bf16.reason
    assert segmenter.precision == segmenter.precision_choice.chosen == "fp32"
    assert "refused: labels agree with fp32 on 0.00%" in segmenter.precision_choice.table()


def test_the_fastest_path_within_the_guard_wins_and_no_faster_path_outside_it():
    fp32 = judge("fp32", 1.0, label_agreement=1.0, exposure_mae=0.0)
    near = judge("bf16", 0.5, label_agreement=LABEL_AGREEMENT_FLOOR, exposure_mae=EXPOSURE_MAE_CEILING)
    assert near.accepted and fastest_accepted([fp32, near]) == "bf16"
    labels_off = judge("bf16", 0.1, label_agreement=0.99, exposure_mae=0.0)
    exposure_off = judge("fp16", 0.1, label_agreement=1.0, exposure_mae=0.0227)
    assert fastest_accepted([fp32, labels_off, exposure_off]) == "fp32"
    assert labels_off.reason == "labels agree with fp32 on 99.00% of pixels, below 99.50%"
    assert exposure_off.reason == "exposure differs from fp32's by 0.0227 mean absolute, above 0.01"
    assert fastest_accepted([fp32, near, judge("fp16", 0.4, label_agreement=1.0, exposure_mae=0.0)]) == "fp16"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_explicit_precision_runs_no_trial(precision, caplog):
    segmenter = Segmenter(tiny_model(), precision=precision)
    with caplog.at_level(logging.INFO):
        segmenter.warm_up(SIZE)
    assert segmenter.precision_choice is None and segmenter.precision == precision
    assert "precision auto" not in caplog.text
    with pytest.raises(ValueError, match=f"candidates are for precision auto before it has chosen; precision is "
                                         f"'{precision}'"):
        segmenter.warm_up(SIZE, candidates=("bf16",))


def test_without_warm_up_the_first_batch_chooses_at_its_own_size_once():
    segmenter = Segmenter(tiny_model(), precision="auto")
    assert segmenter.precision == "auto" and segmenter.precision_choice is None
    segmenter.predict_batch(random_frames(2, width=96, height=64))
    choice = segmenter.precision_choice
    assert (choice.size, choice.batch) == ((96, 64), 2)
    segmenter.predict_batch(random_frames(1, width=96, height=64))
    assert segmenter.precision_choice is choice


def test_frames_below_the_generated_scenes_minimum_still_choose():
    segmenter = Segmenter(tiny_model(), precision="auto")
    result = segmenter.predict(random_frames(1, width=40, height=32)[0])
    assert result.labels.shape == (32, 40) and segmenter.precision_choice.size == (40, 32)


def test_unknown_candidates_are_named():
    with pytest.raises(ValueError, match="candidate precisions must be among fp32, bf16, fp16, got 'int8'"):
        Segmenter(tiny_model(), precision="auto").warm_up(SIZE, candidates=("int8",))


def test_the_cpu_offers_bf16_exactly_where_it_computes_it_natively():
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    flags = next(line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags"))
    native = bool({"avx512_bf16", "amx_bf16"} & set(flags))
    assert offered_precisions(torch.device("cpu")) == (("fp32", "bf16") if native else ("fp32",))


def test_the_table_shows_every_trial_and_the_verdicts():
    trials = [judge("fp32", 0.4021, label_agreement=1.0, exposure_mae=0.0),
                   judge("bf16", 0.2503, label_agreement=0.9812, exposure_mae=0.0016)]
    table = PrecisionChoice(trials=tuple(trials), chosen="fp32", startup_s=2.5, size=SIZE, batch=1).table()
    lines = table.splitlines()
    assert lines[0].split() == ["precision", "ms/batch", "labels=fp32", "exposure", "MAE", "verdict"]
    assert lines[1].split()[:5] == ["fp32", "402.1", "100.00%", "0.0000", "chosen"]
    assert lines[2].split()[:5] == ["bf16", "250.3", "98.12%", "0.0016", "refused:"]
