"""Segmentation scores: IoU / mIoU / pixel accuracy and the exposure-aware F1 of Section 5 (Eq. 2, Table 2).

Every labelled pixel falls into one exposure bin (``exposure.exposure_bins`` of the *input* image's V channel).
``SegmentationEvaluator`` keeps one C×(C+1) confusion matrix per bin (rows = ground truth, columns = prediction,
the last column "no prediction"), filled with a single ``torch.bincount`` per batch like torchvision's
segmentation reference ``ConfusionMatrix``. IoU and pixel accuracy come from the matrices summed over bins, i.e.
they are data-set totals, not per-image averages.

A prediction of ``ignore_index`` (255, what the ROS node writes below its confidence threshold) is no
prediction: a miss, counted as a false negative of the ground-truth class and a false positive of no class, as
mmsegmentation's ``intersect_and_union`` and bdd100k's evaluation count it (they ignore only ground truth 255,
and a prediction of 255 then matches no class). It lowers recall and IoU of the true class, not precision.

EF1 of bin g is Eq. (2), F_β = (1+β²)·P_g·R_g / (β²·P_g + R_g) with β = 1. The paper does not say how P_g and
R_g are averaged over classes, so ``compute`` offers three averages:

* ``"micro"`` (the default) pools every class's TP/FP/FN in the bin; when every pixel has a prediction,
  P_g = R_g = EF1_g = the bin's pixel accuracy (pixels without one lower R_g only). It is the default because
  it reproduces the paper's magnitudes: Table 2 reports EF1 of about 0.87-0.92 for models with an mIoU near 50,
  and 0.67 for SegNet at an mIoU of 17. Those are per-pixel accuracies; a class-averaged F1 would sit near the
  mIoU.
* ``"macro"``: unweighted mean of per-class precision and recall over the classes occurring in the bin's ground
  truth or prediction (a class never predicted has precision 0, scikit-learn's ``zero_division=0``).
* ``"weighted"``: as macro, with each class weighted by its ground-truth pixel count in the bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from egnet_core.data.exposure import NUM_BINS, bin_names, exposure_bins
from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES

AVERAGES = ("micro", "macro", "weighted")


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """Scores over everything an evaluator accumulated. Arrays are read-only; NaN marks "no pixels to score"."""

    iou: np.ndarray  # C, NaN for a class absent from both ground truth and prediction
    # Mean IoU over the classes present in the ground truth or the prediction (nanmean of ``iou``).
    miou: float
    pixel_accuracy: float  # over all labelled pixels
    precision: np.ndarray  # num_bins, P_g under ``average``
    recall: np.ndarray  # num_bins, R_g under ``average``
    ef1: np.ndarray  # num_bins, Eq. (2); NaN for a bin without labelled pixels
    mef1: float  # mean EF1 over the non-empty bins
    empty_bins: tuple[int, ...]
    average: str

    def to_dict(self, class_names: Sequence[str] = CLASS_NAMES) -> dict[str, object]:
        """JSON-ready summary: IoU keyed by class name (index when the names do not fit), EF1 by bin name."""
        if len(class_names) != len(self.iou):
            class_names = [str(index) for index in range(len(self.iou))]
        names = bin_names(len(self.ef1))
        return {
            "miou": _json_float(self.miou),
            "mef1": _json_float(self.mef1),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "average": self.average,
            "iou": {name: _json_float(value) for name, value in zip(class_names, self.iou)},
            "ef1": {name: _json_float(value) for name, value in zip(names, self.ef1)},
            "empty_bins": [names[index] for index in self.empty_bins],
        }


class SegmentationEvaluator:
    """Accumulates per-exposure-bin confusion matrices over batches; ``compute`` turns them into scores."""

    def __init__(
        self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX, num_bins: int = NUM_BINS
    ) -> None:
        if num_classes < 1 or num_bins < 1:
            raise ValueError(f"num_classes and num_bins must be at least 1, got {num_classes} and {num_bins}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.num_bins = num_bins
        self.reset()

    def reset(self) -> None:
        # num_bins×C×(C+1), the last column for pixels without a prediction; allocated by the first update, on
        # the device of its predictions.
        self._counts: torch.Tensor | None = None

    @property
    def confusion(self) -> torch.Tensor:
        """num_bins×C×C int64 counts, [bin, ground truth, prediction], of the pixels with a prediction."""
        return self._all_counts()[..., : self.num_classes]

    @property
    def missed(self) -> torch.Tensor:
        """num_bins×C int64 counts, [bin, ground truth], of labelled pixels predicted as ``ignore_index``."""
        return self._all_counts()[..., self.num_classes]

    @property
    def labelled_pixels(self) -> int:
        """Pixels scored so far: labelled ones, predicted or missed."""
        return int(self._all_counts().sum())

    def _all_counts(self) -> torch.Tensor:
        if self._counts is None:
            return torch.zeros((self.num_bins, self.num_classes, self.num_classes + 1), dtype=torch.int64)
        return self._counts

    def update(self, pred, target, exposure) -> None:
        """Add H×W or B×H×W integer ``pred`` and ``target`` with the input's exposure in [0, 1] at each pixel.

        numpy arrays and tensors may be mixed; they are moved to the device of the accumulated confusion (of
        ``pred`` on the first call). Pixels whose target is ``ignore_index`` or outside 0..C-1 are skipped;
        every prediction must lie in 0..C-1 or be ``ignore_index``, no prediction (a miss of the true class).
        """
        pred = _as_tensor(pred, self._counts.device if self._counts is not None else None)
        target = _as_tensor(target, pred.device)
        exposure = _as_tensor(exposure, pred.device)
        misses = self._check_inputs(pred, target, exposure)
        c, columns = self.num_classes, self.num_classes + 1
        size = self.num_bins * c * columns
        labelled = (target >= 0) & (target < c)
        if 0 <= self.ignore_index < c:  # an ignore index inside the class range is not caught by the bounds
            labelled &= target != self.ignore_index
        # The largest index, num_bins·C·(C+1), fits int32 with room to spare; int32 halves the memory traffic of
        # the index arithmetic and bincount compared with int64 (see benchmarks/bench_metrics.py).
        column = torch.where(pred == self.ignore_index, c, pred) if misses else pred  # "no prediction": column C
        bins = exposure_bins(exposure, self.num_bins).to(torch.int32)
        index = bins.mul_(c).add_(target.to(torch.int32)).mul_(columns).add_(column.to(torch.int32))
        # Unlabelled pixels go to one overflow slot that is dropped: cheaper than boolean-mask indexing.
        index = torch.where(labelled, index, size)
        counts = torch.bincount(index.flatten(), minlength=size + 1)[:size]
        if self._counts is None:
            self._counts = torch.zeros((self.num_bins, c, columns), dtype=torch.int64, device=pred.device)
        self._counts += counts.view(self.num_bins, c, columns)

    def _none_predicted(self) -> bool:
        """Whether ``ignore_index`` can mark "no prediction": only when it is not a class."""
        return not 0 <= self.ignore_index < self.num_classes

    def reduce_across_processes(self) -> None:
        """Sum the confusion over all processes of an initialised ``torch.distributed`` group; else no-op.

        Every process must have called ``update`` at least once, so that the matrices share a device.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        self._counts = self._all_counts()
        torch.distributed.all_reduce(self._counts)

    def compute(self, average: str = "micro") -> SegmentationScores:
        if average not in AVERAGES:
            raise ValueError(f"unknown average {average!r}; expected one of {', '.join(AVERAGES)}")
        counts = self._all_counts().cpu().numpy().astype(np.float64)  # num_bins×C×(C+1)
        total = counts.sum(axis=0)  # C×(C+1)
        with np.errstate(divide="ignore", invalid="ignore"):
            tp, support, predicted = np.diag(total), total.sum(axis=1), total[:, :-1].sum(axis=0)
            iou = tp / (support + predicted - tp)
            pixel_accuracy = float(tp.sum() / total.sum())
        precision, recall = _bin_precision_recall(counts, average)
        ef1 = _f1(precision, recall)
        empty = counts.sum(axis=(1, 2)) == 0
        ef1[empty] = np.nan
        return SegmentationScores(
            iou=_read_only(iou),
            miou=_nanmean(iou),
            pixel_accuracy=pixel_accuracy,
            precision=_read_only(precision),
            recall=_read_only(recall),
            ef1=_read_only(ef1),
            mef1=_nanmean(ef1),
            empty_bins=tuple(int(index) for index in np.flatnonzero(empty)),
            average=average,
        )

    def _check_inputs(self, pred: torch.Tensor, target: torch.Tensor, exposure: torch.Tensor) -> bool:
        """Refuse bad shapes, types and predictions; whether any prediction is ``ignore_index`` (a miss)."""
        if pred.ndim not in (2, 3) or pred.shape != target.shape or pred.shape != exposure.shape:
            raise ValueError(
                "pred, target and exposure must share one H×W or B×H×W shape, got "
                f"{tuple(pred.shape)}, {tuple(target.shape)} and {tuple(exposure.shape)}"
            )
        for name, labels in (("pred", pred), ("target", target)):
            if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
        if not pred.numel():
            return False
        low, high = (int(value) for value in torch.aminmax(pred))
        misses = self._none_predicted() and self.ignore_index in (low, high)
        if misses:  # the range of the other predictions: a second pass, only for batches holding misses
            low, high = (int(value) for value in torch.aminmax(torch.where(pred == self.ignore_index, 0, pred)))
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            none = f" or {self.ignore_index} (no prediction)" if self._none_predicted() else ""
            raise ValueError(f"predictions must lie in 0..{self.num_classes - 1}{none}, got {bad}")
        return misses


def _bin_precision_recall(counts: np.ndarray, average: str) -> tuple[np.ndarray, np.ndarray]:
    """num_bins×C×(C+1) counts (last column: no prediction) -> (P_g, R_g), each of length num_bins; NaN for a
    bin without labelled pixels, and 0 where nothing was predicted (scikit-learn's ``zero_division=0``)."""
    confusion = counts[:, :, :-1]
    tp = np.diagonal(confusion, axis1=1, axis2=2)  # num_bins×C
    support, predicted = counts.sum(axis=2), confusion.sum(axis=1)  # num_bins×C each; misses are support only
    with np.errstate(divide="ignore", invalid="ignore"):
        if average == "micro":
            # Each predicted pixel is one FP for its predicted class and one FN for its true class; a miss only FN.
            labelled, hits, made = support.sum(axis=1), tp.sum(axis=1), predicted.sum(axis=1)
            precision = np.where(labelled > 0, np.where(made > 0, hits / made, 0.0), np.nan)
            return precision, hits / labelled
        class_precision = np.where(predicted > 0, tp / predicted, 0.0)
        class_recall = np.where(support > 0, tp / support, 0.0)
        weights = (support + predicted > 0) if average == "macro" else support
        weights = weights.astype(np.float64)
        norm = weights.sum(axis=1)
        return (class_precision * weights).sum(axis=1) / norm, (class_recall * weights).sum(axis=1) / norm


def _f1(precision: np.ndarray, recall: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """Eq. (2); 0 where P + R = 0."""
    numerator = (1 + beta**2) * precision * recall
    denominator = beta**2 * precision + recall
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, 0.0)


def _nanmean(values: np.ndarray) -> float:
    present = ~np.isnan(values)
    return float(values[present].mean()) if present.any() else float("nan")


def _read_only(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _as_tensor(values, device: torch.device | None) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values if device is None else values.to(device)
    values = np.asarray(values)
    if values.dtype.kind == "u" and values.dtype.itemsize > 1:
        # torch has only partial support for uint16/32/64 (no aminmax); 16-bit label PNGs load as uint16.
        values = values.astype(np.int64)
    return torch.as_tensor(np.ascontiguousarray(values), device=device)
