"""Many bags, many processes: every bag of a fleet through ``segment_bag``, resumably, and one summary.

On one machine, ``workers`` processes (started with spawn, as torch needs) each build their own Segmenter and
take the next bag as they finish one; with one worker the bags are segmented in this process. Under
``torchrun`` every process takes its share of the bags (:func:`.fleet_plan.share_of`, the same split on every
machine) and rank 0 gathers the drives' summaries and writes the fleet summary. Each drive's output is
written and published as :mod:`.fleet_outputs` describes, so a rerun skips the finished ones and a killed run
loses only the bags in flight. A bag that cannot be read is reported as failed and the others go on; nothing
of a frame is kept beyond its drive's counts and top-k lists, so memory does not grow with the fleet.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import InferenceOptions
from egnet_core.engine.distributed import DistributedContext, gather_to_main
from egnet_core.reports.drive_summary import TOP_K, DriveCounter, DriveSummary, FailedDrive
from egnet_core.reports.fleet_report import FleetRun, FleetSummaryFiles, write_fleet_summary

from .bag_formats import DEFAULT_DISTRO
from .bag_segment import DEFAULT_PREFIX, SegmentedFrame, segment_bag
from .bags import BagError
from .fleet_outputs import OutputSlot, State
from .fleet_plan import FleetBag, share_of

log = logging.getLogger(__name__)

Outcome = DriveSummary | FailedDrive


@dataclass(frozen=True)
class FleetSettings:
    """How every bag is segmented: all a worker process needs to build its Segmenter and run ``segment_bag``."""

    checkpoint: Path
    options: InferenceOptions
    topics: tuple[str, ...] | None = None
    batch_size: int = 1
    prefix: str = DEFAULT_PREFIX
    color: bool = False
    copy_input: bool = True
    storage: str | None = None
    distro: str = DEFAULT_DISTRO
    max_frame_pixels: int = MAX_FRAME_PIXELS
    overwrite: bool = False
    top_k: int = TOP_K

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_frame_pixels", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class FleetPart:
    """What one process did with its share of the bags."""

    drives: tuple[DriveSummary, ...]  # finished now or by an earlier run
    failed: tuple[FailedDrive, ...]
    resumed: tuple[str, ...]  # bags an earlier run had finished
    frames: int  # segmented now
    seconds: float
    peak_memory_mib: dict[str, float]  # of this process and its workers


@dataclass(frozen=True)
class FleetOutcome:
    """The whole fleet, on rank 0."""

    drives: tuple[DriveSummary, ...]  # sorted by bag
    failed: tuple[FailedDrive, ...]
    run: FleetRun
    files: FleetSummaryFiles


def segment_fleet(bags: Sequence[FleetBag], out: Path, settings: FleetSettings, *, workers: int = 1,
                  context: DistributedContext | None = None,
                  on_drive: Callable[[Outcome, bool], None] | None = None) -> FleetOutcome | None:
    """Segment this process's share of ``bags`` (all of them without torchrun) into ``out`` and, on rank 0, write
    the fleet summary there; returns it on rank 0, None elsewhere. ``on_drive(outcome, resumed)`` is called in
    this process as each of its drives is finished, fails, or is found finished by an earlier run (``resumed``)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    rank, world_size = (context.rank, context.world_size) if context else (0, 1)
    part = segment_share(share_of(bags, rank, world_size), out, settings, workers=workers, rank=rank,
                         on_drive=on_drive)
    parts = gather_to_main(part)
    if parts is None:
        return None
    drives = tuple(sorted((d for p in parts for d in p.drives), key=lambda d: d.bag))
    failed = tuple(sorted((f for p in parts for f in p.failed), key=lambda f: f.bag))
    run = FleetRun(seconds=max(p.seconds for p in parts), frames=sum(p.frames for p in parts),
                   resumed=tuple(sorted(name for p in parts for name in p.resumed)), world_size=world_size,
                   workers=workers, peak_memory_mib={k: v for p in parts for k, v in p.peak_memory_mib.items()})
    files = write_fleet_summary(drives, failed, run, out, top_k=settings.top_k)
    return FleetOutcome(drives=drives, failed=failed, run=run, files=files)


def segment_share(bags: Sequence[FleetBag], out: Path, settings: FleetSettings, *, workers: int = 1, rank: int = 0,
                  on_drive: Callable[[Outcome, bool], None] | None = None) -> FleetPart:
    """Segment ``bags`` with ``workers`` processes, skipping those an earlier run finished. Every output is
    checked before any is touched: BagError where one is in the way (see ``OutputSlot.state``)."""
    start = time.perf_counter()
    slots = {bag.name: OutputSlot(out / bag.relative) for bag in bags}
    states = {name: slot.state(overwrite=settings.overwrite) for name, slot in slots.items()}
    drives, failed, resumed = [], [], []
    for bag in bags:
        if states[bag.name] is State.DONE:
            slots[bag.name].discard_partial()
            drives.append(slots[bag.name].read_record())
            resumed.append(bag.name)
            if on_drive is not None:
                on_drive(drives[-1], True)
    todo = [bag for bag in bags if states[bag.name] is State.TO_DO]
    frames, memory = 0, {}
    for outcome, process, peak in _segment_all(todo, out, settings, workers, rank):
        memory[process] = max(memory.get(process, 0.0), peak)
        if isinstance(outcome, FailedDrive):
            failed.append(outcome)
        else:
            drives.append(outcome)
            frames += outcome.frames
        if on_drive is not None:
            on_drive(outcome, False)
    memory[_process_name(rank)] = max(memory.get(_process_name(rank), 0.0), _peak_memory_mib())
    return FleetPart(drives=tuple(drives), failed=tuple(failed), resumed=tuple(resumed), frames=frames,
                     seconds=time.perf_counter() - start, peak_memory_mib=memory)


def _segment_all(todo: Sequence[FleetBag], out: Path, settings: FleetSettings, workers: int,
                 rank: int) -> Iterator[tuple[Outcome, str, float]]:
    """Each bag's outcome as it is finished, with the name and peak memory of the process that did it."""
    if not todo:
        return
    if workers == 1:
        segmenter = Segmenter.from_checkpoint(settings.checkpoint, settings.options)
        for bag in todo:
            yield _segment_drive(bag, out, settings, segmenter), _process_name(rank), _peak_memory_mib()
        return
    # spawn: a forked child would inherit torch's thread pools and locks mid-use
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_segment_in_worker, bag, out, settings, rank) for bag in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()  # the bags in flight finish; none is started
            raise


def _segment_drive(bag: FleetBag, out: Path, settings: FleetSettings, segmenter: Segmenter) -> Outcome:
    """One bag into its output slot; a bag that cannot be read or written comes back as a FailedDrive."""
    slot = OutputSlot(out / bag.relative)
    counter = DriveCounter(bag.name, num_classes=segmenter.config.num_classes, k=settings.top_k)

    def observe(frame: SegmentedFrame) -> None:
        counter.add(topic=frame.topic, stamp_ns=frame.stamp_ns, log_time_ns=frame.log_time, image=frame.rgb,
                    labels=frame.result.labels, confidence=frame.result.confidence)

    try:
        with slot.writing(bag.source, overwrite=settings.overwrite) as partial:
            result = segment_bag(
                bag.source, partial, segmenter, topics=settings.topics, batch_size=settings.batch_size,
                prefix=settings.prefix, color=settings.color, copy_input=settings.copy_input, storage=settings.storage,
                distro=settings.distro, max_frame_pixels=settings.max_frame_pixels, observer=observe,
            )
            record = counter.summary(skipped=result.skipped, damage=result.damage, seconds=result.seconds)
            slot.publish(record)
    except BagError as error:
        log.error("%s not segmented: %s", bag.name, error)
        return FailedDrive(bag=bag.name, reason=str(error))
    log.debug("%s: %d frames in %.1f s", bag.name, record.frames, record.seconds)
    return record


_worker_segmenter: Segmenter | None = None  # a worker process's own, built for its first bag and kept


def _segment_in_worker(bag: FleetBag, out: Path, settings: FleetSettings, rank: int) -> tuple[Outcome, str, float]:
    global _worker_segmenter
    if _worker_segmenter is None:
        _worker_segmenter = Segmenter.from_checkpoint(settings.checkpoint, settings.options)
    outcome = _segment_drive(bag, out, settings, _worker_segmenter)
    return outcome, _process_name(rank), _peak_memory_mib()


def _process_name(rank: int) -> str:
    return f"rank {rank} pid {os.getpid()}"


def _peak_memory_mib() -> float:
    """This process's peak resident memory: Linux's VmHWM, of its own address space; not ru_maxrss, which a
    process started by another inherits as a floor (the starting process's resident memory at the exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
