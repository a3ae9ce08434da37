"""``egnet bag segment IN... --out DIR``: the command line of :mod:`.fleet`, alone or as one ``torchrun`` process.

    egnet bag segment drives/ --out segmented/ --checkpoint best.pt --workers 4
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --no-python egnet bag segment drives/ --out segmented/ --checkpoint best.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from datetime import timedelta

from egnet_core.cli import ensure_writable_dir, inference_options
from egnet_core.deploy.options import available_cpus
from egnet_core.engine.distributed import DistributedContext, cleanup_distributed, setup_distributed
from egnet_core.reports.drive_summary import TOP_K, FailedDrive
from egnet_core.reports.fleet_report import check_replaceable

from .fleet import FleetOutcome, FleetSettings, Outcome, segment_fleet
from .fleet_plan import find_bags

# How long rank 0 waits for the slowest process to finish its share: shares differ by a bag or so, but a bag
# can be hours of driving.
GATHER_TIMEOUT = timedelta(days=2)


def segment_fleet_command(args: argparse.Namespace) -> int:
    workers = 1 if args.workers is None else args.workers
    top = TOP_K if args.top is None else args.top
    for option, value in (("--workers", workers), ("--top", top)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    bags = find_bags(args.paths, args.out)  # refuses an --out overlapping an input before creating it
    check_replaceable(args.out)
    ensure_writable_dir(args.out, "--out")
    context = setup_distributed(args.device, timeout=GATHER_TIMEOUT)
    try:
        # torchrun's count of processes on this machine: they share its CPUs
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        options = dataclasses.replace(inference_options(args, input_size=args.input_size), device=context.device,
                                      threads=threads_per_worker(args.threads, workers, local_processes))
        settings = FleetSettings(
            checkpoint=args.checkpoint, options=options, topics=tuple(args.topic) if args.topic else None,
            batch_size=args.batch, prefix=args.prefix, color=args.color, copy_input=not args.no_input,
            storage=args.storage, distro=args.distro, max_frame_pixels=args.max_frame_pixels,
            overwrite=args.overwrite, top_k=top,
        )
        print(f"{len(bags)} bags under the common folder of {', '.join(map(str, args.paths))}; "
              f"{_processes(context, workers)}")
        outcome = segment_fleet(bags, args.out, settings, workers=workers, context=context,
                                on_drive=lambda drive, resumed: print(_drive_line(drive, resumed, context), flush=True))
    finally:
        cleanup_distributed()
    if outcome is None:
        return 0  # rank 0 reports
    _print_outcome(outcome)
    return 0 if sum(drive.frames for drive in outcome.drives) and not outcome.failed else 1


def threads_per_worker(threads: int | None, workers: int, local_processes: int) -> int:
    """CPU threads of each worker: ``threads`` (this process's, default: its part of the machine's CPUs) split
    among its ``workers``, at least one each."""
    total = threads if threads is not None else max(1, available_cpus() // local_processes)
    return max(1, total // workers)


def _processes(context: DistributedContext, workers: int) -> str:
    where = f"rank {context.rank} of {context.world_size}, " if context.world_size > 1 else ""
    return f"{where}{workers} worker(s) on {context.device}"


def _drive_line(drive: Outcome, resumed: bool, context: DistributedContext) -> str:
    rank = f"[rank {context.rank}] " if context.world_size > 1 else ""
    if isinstance(drive, FailedDrive):
        return f"{rank}{drive.bag}: FAILED: {drive.reason}"
    if resumed:
        return f"{rank}{drive.bag}: finished by an earlier run ({drive.frames} frames)"
    skipped = sum(drive.skipped.values())
    notes = [f"{skipped} skipped"] if skipped else []
    notes += ["damaged"] if drive.damage else []
    extra = f" ({', '.join(notes)})" if notes else ""
    return f"{rank}{drive.bag}: {drive.frames} frames{extra}, {drive.seconds:.1f} s"


def _print_outcome(outcome: FleetOutcome) -> None:
    run, frames = outcome.run, sum(drive.frames for drive in outcome.drives)
    print(f"{frames} frames in {len(outcome.drives)} drives ({len(run.resumed)} finished by an earlier run, "
          f"{len(outcome.failed)} failed); this run: {run.frames} frames in {run.seconds:.1f} s "
          f"({run.frames_per_second:.2f} frames/s) on {run.world_size} process(es) × {run.workers} worker(s)")
    for failed in outcome.failed:
        print(f"  failed: {failed.bag}: {failed.reason}")
    print(f"summary: {outcome.files.markdown}")
