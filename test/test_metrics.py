import json
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.metrics import precision_score, recall_score

from egnet_core.criteria.metrics import SegmentationEvaluator
from egnet_core.data.exposure import bin_names
from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX

# Class 4 is only ever predicted (zero support), class 5 never occurs at all (NaN IoU).
NUM_CLASSES = 6
EMPTY_BIN = 7


def random_batch(rng, shape):
    """Predictions right ~60% of the time, ~10% ignored targets, no exposure in [0.7, 0.8)."""
    target = rng.choice(4, size=shape, p=[0.4, 0.3, 0.2, 0.1])
    wrong = rng.integers(0, 5, size=shape)
    pred = np.where(rng.random(shape) < 0.6, target, wrong)
    target[rng.random(shape) < 0.1] = IGNORE_INDEX
    exposure = rng.random(shape)
    exposure[(exposure >= 0.7) & (exposure < 0.8)] = 1.0  # leaves bin 7 empty and puts pixels on the closed edge
    return pred, target, exposure


def accumulated(rng):
    """Feed several mixed updates; return the evaluator and the concatenated flat data it saw."""
    evaluator = SegmentationEvaluator(num_classes=NUM_CLASSES)
    seen = []
    for shape, as_torch in (((3, 12, 16), False), ((12, 16), True), ((2, 8, 8), True), ((5, 7), False)):
        pred, target, exposure = random_batch(rng, shape)
        if as_torch:
            evaluator.update(torch.from_numpy(pred), target.astype(np.uint8), torch.from_numpy(exposure))
        else:
            evaluator.update(pred, torch.from_numpy(target), exposure)
        seen.append((pred.ravel(), target.ravel(), exposure.ravel()))
    return evaluator, *(np.concatenate(parts) for parts in zip(*seen))


def test_iou_and_pixel_accuracy_match_a_per_class_count():
    evaluator, pred, target, _ = accumulated(np.random.default_rng(0))
    scores = evaluator.compute()

    labelled = target != IGNORE_INDEX
    expected = np.full(NUM_CLASSES, np.nan)
    for c in range(NUM_CLASSES):
        intersection = np.sum(labelled & (pred == c) & (target == c))
        union = np.sum(labelled & ((pred == c) | (target == c)))
        if union:
            expected[c] = intersection / union

    np.testing.assert_allclose(scores.iou, expected)
    assert np.isnan(scores.iou[5]) and scores.iou[4] == 0.0
    assert scores.miou == pytest.approx(np.mean(expected[:5]))
    assert scores.pixel_accuracy == pytest.approx(np.mean(pred[labelled] == target[labelled]))


@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
def test_ef1_per_bin_matches_sklearn(average):
    evaluator, pred, target, exposure = accumulated(np.random.default_rng(1))
    scores = evaluator.compute(average)

    bins = np.clip(np.floor(exposure * 10), 0, 9)
    expected = np.full(10, np.nan)
    for g in range(10):
        mask = (bins == g) & (target != IGNORE_INDEX)
        if not mask.any():
            continue
        truth, guess = target[mask], pred[mask]
        labels = np.union1d(truth, guess)
        options = dict(average=average, labels=labels, zero_division=0)
        p, r = precision_score(truth, guess, **options), recall_score(truth, guess, **options)
        expected[g] = 2 * p * r / (p + r) if p + r else 0.0
        assert scores.precision[g] == pytest.approx(p) and scores.recall[g] == pytest.approx(r)

    np.testing.assert_allclose(scores.ef1, expected)
    assert scores.empty_bins == (EMPTY_BIN,)
    assert scores.mef1 == pytest.approx(np.nanmean(expected))
    assert scores.average == average


@pytest.mark.parametrize(
    "average, ef1, mef1", [("micro", 0.5, 0.75), ("macro", 1 / 3, 2 / 3), ("weighted", 2 / 3, 5 / 6)]
)
def test_hand_made_case(average, ef1, mef1):
    # Dark bin: truth 0, 0 predicted 0, 1. Bright bin: truth 1, 1 predicted 1, 1. Overall [[1, 1], [0, 2]].
    evaluator = SegmentationEvaluator(num_classes=2)
    evaluator.update(np.array([[0, 1, 1, 1]]), np.array([[0, 0, 1, 1]]), np.array([[0.05, 0.05, 0.95, 1.0]]))
    scores = evaluator.compute(average)

    np.testing.assert_allclose(scores.iou, [1 / 2, 2 / 3])
    assert scores.miou == pytest.approx(7 / 12)
    assert scores.pixel_accuracy == pytest.approx(3 / 4)
    assert scores.ef1[0] == pytest.approx(ef1) and scores.ef1[9] == pytest.approx(1.0)
    assert scores.mef1 == pytest.approx(mef1)
    assert scores.empty_bins == tuple(range(1, 9))
    assert np.isnan(scores.ef1[1:9]).all()


def test_targets_outside_the_classes_are_ignored_like_the_ignore_index():
    pred = np.array([0, 1, 1, 1, 0, 1, 0])
    exposure = np.array([0.05, 0.05, 0.95, 1.0, 0.5, 0.5, 0.5])
    clean = SegmentationEvaluator(num_classes=2)
    clean.update(pred[None, :4], np.array([[0, 0, 1, 1]]), exposure[None, :4])
    noisy = SegmentationEvaluator(num_classes=2)
    noisy.update(pred[None], np.array([[0, 0, 1, 1, IGNORE_INDEX, -1, 2]]), exposure[None])

    assert torch.equal(clean.confusion, noisy.confusion)


def test_an_ignore_index_inside_the_class_range_is_ignored():
    evaluator = SegmentationEvaluator(num_classes=3, ignore_index=0)
    evaluator.update(np.array([[1, 2, 1, 2]]), np.array([[1, 2, 0, 0]]), np.full((1, 4), 0.5))
    scores = evaluator.compute()
    assert scores.pixel_accuracy == 1.0 and np.isnan(scores.iou[0])


def test_empty_bins_are_nan_listed_and_left_out_of_mef1():
    evaluator = SegmentationEvaluator(num_classes=3)
    evaluator.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 2]]), np.array([[0.25, 0.25], [0.55, 0.55]]))
    scores = evaluator.compute()

    assert scores.empty_bins == (0, 1, 3, 4, 6, 7, 8, 9)
    assert np.isnan(scores.ef1[list(scores.empty_bins)]).all()
    assert scores.ef1[2] == 1.0 and scores.ef1[5] == 0.5
    assert scores.mef1 == pytest.approx(0.75)


@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
@pytest.mark.parametrize("updated", [True, False])
def test_nothing_labelled_gives_nan_scores_without_warnings(average, updated):
    evaluator = SegmentationEvaluator(num_classes=3)
    if updated:
        evaluator.update(np.zeros((4, 4), np.int64), np.full((4, 4), IGNORE_INDEX), np.full((4, 4), 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = evaluator.compute(average)

    assert np.isnan(scores.iou).all() and np.isnan(scores.ef1).all()
    assert np.isnan(scores.miou) and np.isnan(scores.mef1) and np.isnan(scores.pixel_accuracy)
    assert scores.empty_bins == tuple(range(10))


@pytest.mark.parametrize(
    "pred, target, exposure, message",
    [
        (np.zeros((2, 3), int), np.zeros((3, 2), int), np.zeros((2, 3)), "(2, 3), (3, 2) and (2, 3)"),
        (np.zeros((2, 3), int), np.zeros((2, 3), int), np.zeros((1, 2, 3)), "(1, 2, 3)"),
        (np.zeros(6, int), np.zeros(6, int), np.zeros(6), "(6,)"),
        (np.full((2, 3), 19), np.zeros((2, 3), int), np.zeros((2, 3)), "0..18 or 255 (no prediction), got 19"),
        (np.full((2, 3), 254), np.zeros((2, 3), int), np.zeros((2, 3)), "got 254"),
        (np.full((2, 3), -1), np.zeros((2, 3), int), np.zeros((2, 3)), "got -1"),
        (np.zeros((2, 3)), np.zeros((2, 3), int), np.zeros((2, 3)), "float64"),
        (np.zeros((2, 3), int), np.zeros((2, 3), int), np.full((2, 3), 1.5), "1.5"),
    ],
)
def test_bad_inputs_are_rejected_with_the_offending_value(pred, target, exposure, message):
    evaluator = SegmentationEvaluator()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluator.update(pred, target, exposure)
    assert evaluator.confusion.sum() == 0


def test_unknown_average_is_rejected():
    with pytest.raises(ValueError, match="'samples'.*micro, macro, weighted"):
        SegmentationEvaluator().compute("samples")


def test_sixteen_bit_label_images_are_accepted():
    evaluator = SegmentationEvaluator(num_classes=2)
    evaluator.update(np.array([[0, 1]], np.uint16), np.array([[0, 255]], np.uint16), np.array([[0.0, 0.0]]))
    assert evaluator.compute().pixel_accuracy == 1.0


def test_reset_forgets_everything():
    evaluator, *_ = accumulated(np.random.default_rng(2))
    evaluator.reset()
    assert evaluator.confusion.shape == (10, NUM_CLASSES, NUM_CLASSES)
    assert evaluator.confusion.sum() == 0


def test_reduce_without_distributed_changes_nothing():
    evaluator, *_ = accumulated(np.random.default_rng(3))
    before = evaluator.confusion.clone()
    evaluator.reduce_across_processes()
    assert torch.equal(evaluator.confusion, before)


def test_reduce_in_a_single_process_group_keeps_the_scores():
    evaluator, *_ = accumulated(np.random.default_rng(4))
    before = evaluator.compute().to_dict()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        evaluator.reduce_across_processes()
    finally:
        dist.destroy_process_group()
    assert evaluator.compute().to_dict() == before


def test_to_dict_is_json_with_class_and_bin_names():
    evaluator = SegmentationEvaluator()
    evaluator.update(np.array([[0, 1]]), np.array([[0, 1]]), np.array([[0.05, 0.95]]))
    summary = json.loads(json.dumps(evaluator.compute().to_dict(), allow_nan=False))

    assert list(summary["iou"]) == list(CLASS_NAMES)
    assert summary["iou"]["road"] == 1.0 and summary["iou"]["bicycle"] is None
    assert summary["ef1"]["[0.0, 0.1)"] == 1.0 and summary["ef1"]["[0.5, 0.6)"] is None
    assert summary["empty_bins"] == bin_names()[1:9]
    assert summary["miou"] == 1.0 and summary["mef1"] == 1.0 and summary["average"] == "micro"


def test_to_dict_falls_back_to_class_indices():
    evaluator = SegmentationEvaluator(num_classes=2)
    evaluator.update(np.array([[0, 1]]), np.array([[0, 1]]), np.array([[0.05, 0.95]]))
    assert list(evaluator.compute().to_dict()["iou"]) == ["0", "1"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_confusion_lives_on_the_device_of_the_predictions():
    rng = np.random.default_rng(5)
    pred, target, exposure = random_batch(rng, (2, 16, 16))
    on_gpu = SegmentationEvaluator(num_classes=NUM_CLASSES)
    on_gpu.update(torch.from_numpy(pred).cuda(), target, exposure)
    on_cpu = SegmentationEvaluator(num_classes=NUM_CLASSES)
    on_cpu.update(pred, target, exposure)

    assert on_gpu.confusion.device.type == "cuda"
    assert torch.equal(on_gpu.confusion.cpu(), on_cpu.confusion)


def mmsegmentation_iou(pred, target, num_classes, ignore_index=IGNORE_INDEX):
    """IoU and aAcc as mmsegmentation's ``intersect_and_union`` and ``total_area_to_metrics`` count them, written
    out by hand: only ground truth ``ignore_index`` is dropped; class areas are histograms over 0..C-1, so a
    prediction outside the classes (255) falls in no bin and intersects nothing."""
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    bins = np.arange(num_classes + 1)
    intersect = np.histogram(pred[pred == target], bins=bins)[0]
    area_pred = np.histogram(pred, bins=bins)[0]
    area_label = np.histogram(target, bins=bins)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersect / (area_pred + area_label - intersect), intersect.sum() / area_label.sum()


def test_a_prediction_of_255_is_a_miss_scored_as_mmsegmentation_scores_it():
    # What the ROS node writes below its confidence threshold: 255 where the model is unsure.
    pred = np.array([[0, 255, 1, 1, 255, 2], [2, 2, 255, 0, 1, 255]])
    target = np.array([[0, 0, 1, 1, 1, 2], [2, 1, IGNORE_INDEX, 0, 0, 255]])
    evaluator = SegmentationEvaluator(num_classes=3)
    evaluator.update(pred, target, np.full(pred.shape, 0.5))
    scores = evaluator.compute()

    # By hand: class 0 has 4 labelled pixels (2 hits, 1 miss, 1 taken for class 1); class 1 has 4 (2 hits, 1 miss,
    # 1 taken for class 2); class 2 has 2 (2 hits) and 1 false positive. Predicted: 0 twice, 1 three times, 2 three.
    np.testing.assert_allclose(scores.iou, [2 / (4 + 2 - 2), 2 / (4 + 3 - 2), 2 / (2 + 3 - 2)])
    assert scores.pixel_accuracy == pytest.approx(6 / 10)
    expected_iou, expected_accuracy = mmsegmentation_iou(pred, target, 3)
    np.testing.assert_allclose(scores.iou, expected_iou)
    assert scores.pixel_accuracy == pytest.approx(expected_accuracy)
    np.testing.assert_array_equal(evaluator.missed.sum(axis=0), [1, 1, 0])
    assert evaluator.labelled_pixels == 10 and int(evaluator.confusion.sum()) == 8


def test_misses_match_mmsegmentation_on_random_maps():
    rng = np.random.default_rng(5)
    target = rng.integers(0, 4, (3, 20, 30))
    pred = np.where(rng.random(target.shape) < 0.5, target, rng.integers(0, 4, target.shape))
    pred[rng.random(target.shape) < 0.2] = IGNORE_INDEX
    target[rng.random(target.shape) < 0.1] = IGNORE_INDEX
    evaluator = SegmentationEvaluator(num_classes=4)
    evaluator.update(torch.from_numpy(pred).to(torch.uint8), target, rng.random(target.shape))
    scores = evaluator.compute()
    expected_iou, expected_accuracy = mmsegmentation_iou(pred, target, 4)
    np.testing.assert_allclose(scores.iou, expected_iou)
    assert scores.pixel_accuracy == pytest.approx(expected_accuracy)


@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
def test_ef1_counts_a_miss_against_recall_only_as_sklearn_does(average):
    _, pred, target, exposure = accumulated(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    unsure = np.where(rng.random(pred.shape) < 0.15, IGNORE_INDEX, pred)
    evaluator = SegmentationEvaluator(num_classes=NUM_CLASSES)
    evaluator.update(unsure[None], target[None], exposure[None])
    scores = evaluator.compute(average)

    bins = np.clip(np.floor(exposure * 10), 0, 9)
    for g in set(bins[target != IGNORE_INDEX].astype(int).tolist()):
        mask = (bins == g) & (target != IGNORE_INDEX)
        truth, guess = target[mask], unsure[mask]
        # Only the classes count: a pixel predicted as 255 is a false negative of its class and no one's positive.
        labels = np.setdiff1d(np.union1d(truth, guess), [IGNORE_INDEX])
        options = dict(average=average, labels=labels, zero_division=0)
        p, r = precision_score(truth, guess, **options), recall_score(truth, guess, **options)
        assert scores.precision[g] == pytest.approx(p) and scores.recall[g] == pytest.approx(r)
        assert scores.ef1[g] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)


def test_a_bin_with_only_misses_scores_zero_not_nan():
    evaluator = SegmentationEvaluator(num_classes=2)
    evaluator.update(np.array([[255, 255, 1]]), np.array([[0, 1, 1]]), np.array([[0.05, 0.05, 0.95]]))
    scores = evaluator.compute()
    assert (scores.precision[0], scores.recall[0], scores.ef1[0]) == (0.0, 0.0, 0.0)
    assert scores.ef1[9] == 1.0 and scores.mef1 == pytest.approx(0.5)
    np.testing.assert_allclose(scores.iou, [0.0, 0.5])
