"""Scoring a ``Segmenter`` on a labelled split: mIoU, pixel accuracy and the exposure-aware F1 of Table 2.

Predictions are made at each label's resolution (NightCity+ labels are twice the size of their images), and the
exposure bin of a pixel is read from the *input* image's V channel, resized to the label's size. Confusion
matrices are summed over the whole split, so IoU is a data-set total, not a mean of per-image scores. Under
``torch.distributed`` each rank evaluates its shard and the matrices are summed before scoring.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from egnet_core.criteria.metrics import AVERAGES, SegmentationEvaluator, SegmentationScores
from egnet_core.data.exposure import exposure_map
from egnet_core.data.sample import RawSample
from egnet_core.deploy.batching import batches_of_one_size
from egnet_core.deploy.inference import AttentionMaps, Segmenter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One evaluated image kept for the report, everything at the label's resolution except ``image``."""

    name: str
    image: np.ndarray  # H×W×3 uint8 RGB input
    label: np.ndarray  # h×w uint8 ground-truth train ids
    prediction: np.ndarray  # h×w uint8 predicted train ids
    exposure: np.ndarray  # h×w float32 input exposure in [0, 1], the map the EF1 bins come from
    attention: AttentionMaps | None = None  # h×w each: the EGLs' W_r (Figure 9), for an EGNet with EGLs


@dataclass(frozen=True)
class EvaluationResult:
    scores: SegmentationScores
    images: int  # images scored, over all processes
    seconds: float  # wall time of this process's predictions
    examples: tuple[Example, ...]


def evaluate(
    segmenter: Segmenter,
    dataset: Sequence[RawSample],
    *,
    batch_size: int = 1,
    average: str = "micro",
    limit: int | None = None,
    progress: bool = False,
    shard: tuple[int, int] | None = None,
    num_examples: int = 4,
) -> EvaluationResult:
    """Score ``segmenter`` on the first ``limit`` items of ``dataset`` (all by default).

    ``shard=(rank, world_size)`` evaluates every ``world_size``-th item from ``rank``; under an initialised
    ``torch.distributed`` group it defaults to, and must equal, this process's rank and world size, and the
    scores and image count cover all shards. ``dataset`` must hand out ``RawSample``s (no transform).
    """
    _check_options(batch_size, average, limit, num_examples)
    indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    rank, world_size = _resolve_shard(shard)
    local = indices[rank::world_size]
    evaluator = SegmentationEvaluator(num_classes=segmenter.config.num_classes)
    examples: list[Example] = []
    start = time.perf_counter()
    bar = tqdm(total=len(local), desc="evaluating", unit="image", disable=not progress)
    for batch in _batches(dataset, local, batch_size):
        scored = _score_batch(segmenter, batch, evaluator)
        examples += _with_attention(segmenter, scored[: num_examples - len(examples)])
        bar.update(len(batch))
    bar.close()
    seconds = time.perf_counter() - start
    logger.info("shard %d/%d: %d images in %.1f s", rank, world_size, len(local), seconds)
    evaluator.reduce_across_processes()
    images = len(indices) if _distributed() else len(local)
    if not evaluator.labelled_pixels:  # summed over all processes, so every process raises
        raise ValueError(
            f"none of the {images} evaluated images has a labelled pixel (every label is 255 or outside the "
            f"{segmenter.config.num_classes} classes): there is nothing to score, and mIoU would be NaN"
        )
    return EvaluationResult(evaluator.compute(average), images, seconds, tuple(examples))


def _score_batch(segmenter: Segmenter, batch: list[RawSample], evaluator: SegmentationEvaluator) -> list[Example]:
    """Predict ``batch`` at its labels' size and add it to ``evaluator``; the scored images as ``Example``s."""
    label_height, label_width = batch[0].label.shape
    predictions = segmenter.predict_batch([sample.image for sample in batch], output_size=(label_width, label_height))
    scored = []
    for sample, prediction in zip(batch, predictions):
        exposure = _exposure_at(sample.image, sample.label.shape)
        # On the model's device, so that the confusion matrices are too: NCCL reduces only CUDA tensors.
        evaluator.update(torch.from_numpy(prediction.labels).to(segmenter.device), sample.label, exposure)
        scored.append(Example(sample.name, sample.image, sample.label, prediction.labels, exposure))
    return scored


def _with_attention(segmenter: Segmenter, examples: list[Example]) -> list[Example]:
    """``examples`` (of one size) with the EGLs' attention maps at their labels' size, where the model has EGLs."""
    if not examples or not segmenter.has_attention:
        return examples
    label_height, label_width = examples[0].label.shape
    maps = segmenter.attention_maps([example.image for example in examples], output_size=(label_width, label_height))
    return [dataclasses.replace(example, attention=attention) for example, attention in zip(examples, maps)]


def _batches(dataset: Sequence[RawSample], indices: Sequence[int], batch_size: int) -> Iterator[list[RawSample]]:
    samples = (_check_sample(dataset[index], index) for index in indices)
    return batches_of_one_size(samples, batch_size, size=lambda sample: (sample.image.shape, sample.label.shape))


def _exposure_at(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The input's exposure map at ``size`` (height, width), resized bilinearly as the logits are."""
    exposure = exposure_map(image)  # H×W float32
    if exposure.shape == tuple(size):
        return exposure
    return np.clip(cv2.resize(exposure, size[::-1], interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _check_sample(sample: object, index: int) -> RawSample:
    if not isinstance(sample, RawSample):
        raise ValueError(
            f"evaluate needs a data set of RawSamples (built with transform=None), item {index} is a "
            f"{type(sample).__name__}"
        )
    if sample.label.ndim != 2:
        raise ValueError(f"label of {sample.name!r} must be H×W train ids, got shape {sample.label.shape}")
    return sample


def _check_options(batch_size: int, average: str, limit: int | None, num_examples: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be a non-negative number of images or None, got {limit!r}")
    if num_examples < 0:
        raise ValueError(f"num_examples must be non-negative, got {num_examples!r}")


def _resolve_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if _distributed():
        own = (torch.distributed.get_rank(), torch.distributed.get_world_size())
        if shard is not None and tuple(shard) != own:
            raise ValueError(f"under torch.distributed the shard must be (rank, world_size) = {own}, got {shard!r}")
        return own
    if shard is None:
        return 0, 1
    if len(shard) != 2 or shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
    return int(shard[0]), int(shard[1])


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
