"""Offline segmentation of a recorded drive: every camera frame of a bag through the shared Segmenter, into a new bag.

For each input topic ``T`` the output bag holds ``PREFIX/T/labels`` (``mono8`` train ids), ``PREFIX/T/exposure``
(``32FC1``) and, if asked, ``PREFIX/T/color`` (``rgb8``), each message with the input's header and log time,
beside a copy of the input messages themselves so that a viewer shows both. The input is only read: an output
that overlaps it (the same folder, one inside the other, through ``..`` or a link) is refused before anything
is opened. A frame of more than ``max_frame_pixels`` is skipped from its header, before it is decoded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.data.statistics import ExposureCounter, ExposureHistogram
from egnet_core.deploy.batching import batches_of_one_size
from egnet_core.deploy.inference import Segmentation, Segmenter

from .bag_formats import DEFAULT_DISTRO
from .bags import (
    COMPRESSED_IMAGE,
    IMAGE,
    BagDamaged,
    BagError,
    BagRecord,
    BagWriter,
    decode_message,
    image_connections,
    open_bag,
    read_records,
    serialize_image,
    storage_of,
)
from .image_conversion import compressed_to_rgb, exposure_fields, image_to_rgb, labels_fields, rgb_fields

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/egnet"


@dataclass(frozen=True)
class BagSegmentation:
    """What ``segment_bag`` did."""

    output: Path
    frames: int  # frames segmented and written
    skipped: dict[str, int]  # why a frame was not segmented -> how many
    damage: str | None  # where the input bag broke, if it did
    seconds: float
    exposure: ExposureHistogram | None  # the input frames' pixels per exposure bin (the paper's Figure 4)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class SegmentedFrame:
    """A frame as it was written, for an ``observer`` of ``segment_bag`` that keeps statistics of the drive."""

    topic: str
    log_time: int  # ns, the bag's time
    stamp_ns: int  # the input's header stamp
    rgb: np.ndarray  # H×W×3 uint8, the input
    result: Segmentation  # with ``confidence``


@dataclass(frozen=True)
class _Frame:
    topic: str
    log_time: int
    header: object  # the input's std_msgs/Header, as rosbags decoded it
    rgb: np.ndarray


def output_topic(prefix: str, topic: str, name: str) -> str:
    return f"/{prefix.strip('/')}{topic}/{name}" if prefix.strip("/") else f"{topic}/{name}"


class _Segmenting:
    """Frames converted, predicted in batches and written; counts what happened."""

    def __init__(self, writer: BagWriter, segmenter: Segmenter, *, prefix: str, color: bool, max_frame_pixels: int,
                 progress: Callable[[int], None] | None, observer: Callable[[SegmentedFrame], None] | None) -> None:
        self.writer, self.segmenter, self.observer = writer, segmenter, observer
        self.prefix, self.color, self.progress = prefix, color, progress
        self.max_frame_pixels = max_frame_pixels
        self.frames = 0
        self.skipped: Counter[str] = Counter()
        self.exposure = ExposureCounter()

    def frames_of(self, records: Iterable[BagRecord]) -> Iterator[_Frame]:
        """The frames that convert, in order; the others are skipped with their reason."""
        for record in records:
            try:
                msg = decode_message(record.data, record.msgtype)
                to_rgb = compressed_to_rgb if record.msgtype == COMPRESSED_IMAGE else image_to_rgb
                rgb = to_rgb(msg, max_frame_pixels=self.max_frame_pixels)
                self.segmenter.check_frame(rgb)
            except ValueError as error:  # does not decode, or ImageConversionError, or too small for the network
                self._skip(f"{record.topic}: {error}")
                continue
            self.exposure.add(rgb)
            yield _Frame(topic=record.topic, log_time=record.log_time, header=msg.header, rgb=rgb)

    def write(self, batch: list[_Frame]) -> None:
        results = self.segmenter.predict_batch([frame.rgb for frame in batch], color=self.color,
                                               confidence=self.observer is not None)
        for frame, result in zip(batch, results):
            outputs = {"labels": labels_fields(result.labels), "exposure": exposure_fields(result.exposure)}
            if self.color:
                outputs["color"] = rgb_fields(result.color)
            for name, fields in outputs.items():
                topic = output_topic(self.prefix, frame.topic, name)
                self.writer.write(topic, IMAGE, frame.log_time, serialize_image(fields, frame.header))
            if self.observer is not None:
                stamp = frame.header.stamp.sec * 10**9 + frame.header.stamp.nanosec
                self.observer(SegmentedFrame(frame.topic, frame.log_time, stamp, frame.rgb, result))
        self.frames += len(batch)
        if self.progress is not None:
            self.progress(len(batch))

    def _skip(self, reason: str) -> None:
        if not self.skipped[reason]:
            log.warning("frame skipped: %s", reason)
        self.skipped[reason] += 1
        if self.progress is not None:
            self.progress(1)


def segment_bag(
    source: str | Path,
    output: str | Path,
    segmenter: Segmenter,
    *,
    topics: Sequence[str] | None = None,
    batch_size: int = 1,
    prefix: str = DEFAULT_PREFIX,
    color: bool = False,
    copy_input: bool = True,
    storage: str | None = None,
    distro: str = DEFAULT_DISTRO,
    overwrite: bool = False,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
    progress: Callable[[int], None] | None = None,
    observer: Callable[[SegmentedFrame], None] | None = None,
) -> BagSegmentation:
    """Segment the image topics of the bag at ``source`` (all of them by default) into a new bag at ``output``,
    stored like the input unless ``storage`` (sqlite3 or mcap) says otherwise, in the layout ``distro``'s
    ``ros2 bag`` reads (Humble's, the default, is read by every supported distro). Frames of more than
    ``max_frame_pixels`` (height*width) are skipped. ``progress`` is called with the number of input frames
    handled since its last call; ``observer`` with each frame written, its result carrying the confidence map."""
    source, output = Path(source), Path(output)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size!r}")
    if max_frame_pixels < 1:
        raise ValueError(f"max_frame_pixels must be at least 1, got {max_frame_pixels!r}")
    check_apart(source, output)
    start = time.perf_counter()
    with open_bag(source) as reader:
        connections = image_connections(reader, topics, source)
        with BagWriter(output, storage or storage_of(reader), overwrite=overwrite, distro=distro) as writer:
            run = _Segmenting(writer, segmenter, color=color, prefix=prefix, max_frame_pixels=max_frame_pixels,
                              progress=progress, observer=observer)
            records = _CopiedRecords(read_records(reader, connections, source), writer if copy_input else None)
            for batch in batches_of_one_size(run.frames_of(records), batch_size, size=lambda frame: frame.rgb.shape):
                run.write(batch)
            damage = records.damage
    return BagSegmentation(
        output=output, frames=run.frames, skipped=dict(run.skipped), damage=damage,
        seconds=time.perf_counter() - start,
        exposure=run.exposure.histogram() if run.exposure.images else None,
    )


class _CopiedRecords:
    """The records of a bag, each also copied to ``writer`` (when given) as it is read; a damaged bag ends the
    records, its damage kept in ``damage``, so that the frames before it are still segmented."""

    def __init__(self, records: Iterator[BagRecord], writer: BagWriter | None) -> None:
        self._records, self._writer = records, writer
        self.damage: str | None = None

    def __iter__(self) -> Iterator[BagRecord]:
        try:
            for record in self._records:
                if self._writer is not None:
                    self._writer.write(record.topic, record.msgtype, record.log_time, record.data)
                yield record
        except BagDamaged as error:
            self.damage = str(error)
            log.error("%s; the frames before it are segmented", self.damage)


def check_apart(source: Path, output: Path) -> None:
    """BagError where ``output`` and the input bag ``source`` overlap: the same path, or either inside the other,
    once links and ``..`` are resolved. Writing there could replace the recording being read."""
    source_real, output_real = source.resolve(), output.resolve()
    if source_real == output_real or source_real in output_real.parents or output_real in source_real.parents:
        raise BagError(f"output {str(output)!r} and input bag {str(source)!r} overlap (they resolve to "
                       f"{str(output_real)!r} and {str(source_real)!r}); write the output outside the input's "
                       "folder, and not to a folder that holds the input")


def total_frames(source: str | Path, topics: Sequence[str] | None = None) -> int | None:
    """The number of frames ``segment_bag`` will read, from the bag's index (for a progress bar); None where
    the index does not say (an MCAP file read up to a cut)."""
    with open_bag(source) as reader:
        return sum(c.msgcount for c in image_connections(reader, topics, source)) or None
