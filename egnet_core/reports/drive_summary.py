"""What a recorded drive held, in counts that do not grow with its length, and the frames worth a second look.

A :class:`DriveCounter` sees each segmented frame once (the input image, its labels and the top softmax
probability of each pixel) and keeps only sums: the predicted pixels per class and, in bounded top-k lists,
the darkest frames (lowest mean exposure, the V channel of HSV as in the paper's Figure 4), the most saturated
(largest share of pixels with V >= 0.9, the paper's closed last bin) and the least confident (lowest mean top
softmax probability). Its :class:`DriveSummary` is small and JSON-able; summaries of many drives merge into one
with :func:`merge_drives`, the merged top-k being exactly the top-k of all frames.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from egnet_core.data.exposure import NUM_BINS, bin_names, exposure_bins, exposure_map
from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX
from egnet_core.data.statistics import ExposureHistogram

TOP_K = 10  # frames in each list of frames to look at
TOTAL = "(all drives)"  # the ``bag`` of a merged summary


@dataclass(frozen=True)
class FrameRef:
    """A frame to look at, and where to find it."""

    bag: str  # the bag's path relative to the fleet's common folder
    topic: str
    stamp_ns: int  # the frame's header stamp
    log_time_ns: int  # when the recorder received it (the bag's time, for ``ros2 bag play --start-offset``)
    value: float  # what ranked it: mean exposure, share of V >= 0.9, or mean top softmax probability


class TopFrames:
    """The ``k`` frames of the lowest ``value`` (or the highest, with ``largest``), ties broken by bag, topic and
    stamp so that the list does not depend on the order frames arrived in. Holds at most 2k frames."""

    def __init__(self, k: int = TOP_K, *, largest: bool = False) -> None:
        if k < 1:
            raise ValueError(f"top-k needs k of at least 1, got {k!r}")
        self.k, self.largest = k, largest
        self._frames: list[FrameRef] = []

    def _rank(self, frame: FrameRef) -> tuple:
        return (-frame.value if self.largest else frame.value, frame.bag, frame.topic, frame.stamp_ns)

    def add(self, frame: FrameRef) -> None:
        self._frames.append(frame)
        if len(self._frames) >= 2 * self.k:  # trimmed in bulk: amortised O(log k) a frame
            self._frames = heapq.nsmallest(self.k, self._frames, key=self._rank)

    def extend(self, frames: Iterable[FrameRef]) -> None:
        for frame in frames:
            self.add(frame)

    def frames(self) -> tuple[FrameRef, ...]:
        """The kept frames, the most extreme first."""
        return tuple(heapq.nsmallest(self.k, self._frames, key=self._rank))


@dataclass(frozen=True)
class DriveSummary:
    """One drive (a bag), or many merged (``bag`` is then :data:`TOTAL`)."""

    bag: str
    frames: int  # frames segmented
    duration_s: float  # bag time from the first to the last segmented frame (summed over drives when merged)
    skipped: dict[str, int]  # why a frame was not segmented -> how many
    exposure_pixels: tuple[int, ...]  # input pixels per exposure bin (the paper's Figure 4)
    class_pixels: tuple[int, ...]  # predicted pixels per class (train id)
    ignored_pixels: int  # pixels left unlabelled (below a confidence threshold)
    darkest: tuple[FrameRef, ...]
    most_saturated: tuple[FrameRef, ...]
    least_confident: tuple[FrameRef, ...]
    seconds: float  # time spent segmenting (summed over drives when merged)
    damage: tuple[str, ...] = ()  # where the input broke, if it did (every damaged drive's, when merged)
    drives: int = 1

    @property
    def exposure(self) -> ExposureHistogram | None:
        """The input frames' exposure histogram; None without frames."""
        if not self.frames:
            return None
        return ExposureHistogram(counts=np.array(self.exposure_pixels, dtype=np.int64), images=self.frames,
                                 bin_names=tuple(bin_names(len(self.exposure_pixels))))

    @property
    def class_shares(self) -> dict[str, float]:
        """Class name -> share of the predicted pixels (unlabelled ones included in the whole)."""
        total = sum(self.class_pixels) + self.ignored_pixels
        return {name: count / total if total else 0.0 for name, count in zip(class_names(len(self.class_pixels)),
                                                                             self.class_pixels)}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriveSummary:
        """The summary ``to_json`` wrote; KeyError or TypeError where ``data`` is not one."""
        lists = {name: tuple(FrameRef(**frame) for frame in data[name])
                 for name in ("darkest", "most_saturated", "least_confident")}
        return cls(**{**data, **lists, "skipped": dict(data["skipped"]), "damage": tuple(data["damage"]),
                      "exposure_pixels": tuple(data["exposure_pixels"]), "class_pixels": tuple(data["class_pixels"])})


def class_names(num_classes: int) -> tuple[str, ...]:
    return CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(str(index) for index in range(num_classes))


class DriveCounter:
    """Counts of one drive, a frame at a time; nothing of a frame is kept but its place in the top-k lists."""

    def __init__(self, bag: str, *, num_classes: int = len(CLASS_NAMES), k: int = TOP_K) -> None:
        self.bag, self.num_classes = bag, num_classes
        self.frames = 0
        self._log_times: tuple[int, int] | None = None  # first and last
        self._class_pixels = np.zeros(num_classes + 1, dtype=np.int64)  # the last: IGNORE_INDEX
        self._exposure_pixels = np.zeros(NUM_BINS, dtype=np.int64)
        self._lists = {"darkest": TopFrames(k), "most_saturated": TopFrames(k, largest=True),
                       "least_confident": TopFrames(k)}

    def add(self, *, topic: str, stamp_ns: int, log_time_ns: int, image: np.ndarray, labels: np.ndarray,
            confidence: np.ndarray) -> None:
        """One segmented frame: the H×W×3 uint8 input, its H×W train ids and H×W top softmax probabilities."""
        exposure = exposure_map(image)  # H×W, the V channel in [0, 1]
        exposure_counts = np.bincount(exposure_bins(exposure).ravel(), minlength=NUM_BINS)
        self._exposure_pixels += exposure_counts
        ids = np.where(labels == IGNORE_INDEX, self.num_classes, labels).ravel()
        self._class_pixels += np.bincount(ids, minlength=self.num_classes + 1)
        where = dict(bag=self.bag, topic=topic, stamp_ns=int(stamp_ns), log_time_ns=int(log_time_ns))
        self._lists["darkest"].add(FrameRef(**where, value=float(np.mean(exposure, dtype=np.float64))))
        self._lists["most_saturated"].add(FrameRef(**where, value=float(exposure_counts[-1] / exposure.size)))
        self._lists["least_confident"].add(FrameRef(**where, value=float(np.mean(confidence, dtype=np.float64))))
        first, last = self._log_times or (log_time_ns, log_time_ns)
        self._log_times = (min(first, log_time_ns), max(last, log_time_ns))
        self.frames += 1

    def summary(self, *, skipped: dict[str, int], damage: str | None, seconds: float) -> DriveSummary:
        first, last = self._log_times or (0, 0)
        return DriveSummary(
            bag=self.bag, frames=self.frames, duration_s=(last - first) / 1e9, skipped=dict(sorted(skipped.items())),
            exposure_pixels=tuple(int(n) for n in self._exposure_pixels),
            class_pixels=tuple(int(n) for n in self._class_pixels[:-1]), ignored_pixels=int(self._class_pixels[-1]),
            darkest=self._lists["darkest"].frames(), most_saturated=self._lists["most_saturated"].frames(),
            least_confident=self._lists["least_confident"].frames(), seconds=seconds,
            damage=(damage,) if damage else (),
        )


def merge_drives(drives: Sequence[DriveSummary], *, k: int = TOP_K) -> DriveSummary:
    """The drives as one: counts summed, the top-k lists of all their frames."""
    num_classes = len(drives[0].class_pixels) if drives else len(CLASS_NAMES)
    skipped: Counter[str] = Counter()
    lists = {"darkest": TopFrames(k), "most_saturated": TopFrames(k, largest=True), "least_confident": TopFrames(k)}
    exposure, classes = np.zeros(NUM_BINS, dtype=np.int64), np.zeros(num_classes, dtype=np.int64)
    for drive in drives:
        skipped.update(drive.skipped)
        exposure += drive.exposure_pixels
        classes += drive.class_pixels
        for name, top in lists.items():
            top.extend(getattr(drive, name))
    return DriveSummary(
        bag=TOTAL, frames=sum(d.frames for d in drives), duration_s=math.fsum(d.duration_s for d in drives),
        skipped=dict(sorted(skipped.items())), exposure_pixels=tuple(int(n) for n in exposure),
        class_pixels=tuple(int(n) for n in classes), ignored_pixels=sum(d.ignored_pixels for d in drives),
        darkest=lists["darkest"].frames(), most_saturated=lists["most_saturated"].frames(),
        least_confident=lists["least_confident"].frames(), seconds=math.fsum(d.seconds for d in drives),
        damage=tuple(message for d in drives for message in d.damage), drives=len(drives),
    )


@dataclass(frozen=True)
class FailedDrive:
    """A drive that could not be segmented, and why (its bag does not open, has no image topic, ...)."""

    bag: str
    reason: str
