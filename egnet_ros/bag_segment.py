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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.data.statistics import ExposureCounter, ExposureHistogram
from egnet_core.deploy.inference import Segmenter

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
class _Frame:
    topic: str
    log_time: int
    header: object  # the input's std_msgs/Header, as rosbags decoded it
    rgb: np.ndarray


def output_topic(prefix: str, topic: str, name: str) -> str:
    return f"/{prefix.strip('/')}{topic}/{name}" if prefix.strip("/") else f"{topic}/{name}"


class _Segmenting:
    """Frames collected into batches of one size, predicted and written; counts what happened."""

    def __init__(self, writer: BagWriter, segmenter: Segmenter, *, batch_size: int, prefix: str, color: bool,
                 max_frame_pixels: int, progress: Callable[[int], None] | None) -> None:
        self.writer, self.segmenter = writer, segmenter
        self.batch_size, self.prefix, self.color, self.progress = batch_size, prefix, color, progress
        self.max_frame_pixels = max_frame_pixels
        self.pending: list[_Frame] = []
        self.frames = 0
        self.skipped: Counter[str] = Counter()
        self.exposure = ExposureCounter()

    def add(self, record: BagRecord) -> None:
        try:
            msg = decode_message(record.data, record.msgtype)
            to_rgb = compressed_to_rgb if record.msgtype == COMPRESSED_IMAGE else image_to_rgb
            rgb = to_rgb(msg, max_frame_pixels=self.max_frame_pixels)
            self.segmenter.check_frame(rgb)
        except ValueError as error:  # does not decode, or ImageConversionError, or too small for the network
            self._skip(f"{record.topic}: {error}")
            return
        self.exposure.add(rgb)
        if self.pending and self.pending[0].rgb.shape != rgb.shape:
            self.flush()  # a batch holds frames of one size
        self.pending.append(_Frame(topic=record.topic, log_time=record.log_time, header=msg.header, rgb=rgb))
        if len(self.pending) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        results = self.segmenter.predict_batch([frame.rgb for frame in self.pending], color=self.color)
        for frame, result in zip(self.pending, results):
            outputs = {"labels": labels_fields(result.labels), "exposure": exposure_fields(result.exposure)}
            if self.color:
                outputs["color"] = rgb_fields(result.color)
            for name, fields in outputs.items():
                topic = output_topic(self.prefix, frame.topic, name)
                self.writer.write(topic, IMAGE, frame.log_time, serialize_image(fields, frame.header))
        self.frames += len(self.pending)
        if self.progress is not None:
            self.progress(len(self.pending))
        self.pending.clear()

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
    overwrite: bool = False,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
    progress: Callable[[int], None] | None = None,
) -> BagSegmentation:
    """Segment the image topics of the bag at ``source`` (all of them by default) into a new bag at ``output``,
    stored like the input unless ``storage`` (sqlite3 or mcap) says otherwise. Frames of more than
    ``max_frame_pixels`` (height*width) are skipped. ``progress`` is called with the number of input frames
    handled since its last call."""
    source, output = Path(source), Path(output)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size!r}")
    if max_frame_pixels < 1:
        raise ValueError(f"max_frame_pixels must be at least 1, got {max_frame_pixels!r}")
    check_apart(source, output)
    start = time.perf_counter()
    damage = None
    with open_bag(source) as reader:
        connections = image_connections(reader, topics, source)
        with BagWriter(output, storage or storage_of(reader), overwrite=overwrite) as writer:
            run = _Segmenting(writer, segmenter, batch_size=batch_size, prefix=prefix, color=color,
                              max_frame_pixels=max_frame_pixels, progress=progress)
            try:
                for record in read_records(reader, connections, source):
                    if copy_input:
                        writer.write(record.topic, record.msgtype, record.log_time, record.data)
                    run.add(record)
            except BagDamaged as error:
                damage = str(error)
                log.error("%s; the frames before it are segmented", damage)
            run.flush()
    return BagSegmentation(
        output=output, frames=run.frames, skipped=dict(run.skipped), damage=damage,
        seconds=time.perf_counter() - start,
        exposure=run.exposure.histogram() if run.exposure.images else None,
    )


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
