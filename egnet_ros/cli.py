"""The ROS side's subcommands of ``egnet``: ``egnet bag segment`` and ``egnet bag play``.

``egnet_core.cli`` finds :func:`register` through the ``egnet.commands`` entry point (see ``setup.py``), so the
library never imports this package; without the ``ros`` extra, ``egnet bag`` says what to install instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from egnet_core.cli import add_inference_arguments, build_segmenter, ensure_writable_dir, parse_size
from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.data.statistics import format_histogram_table
from egnet_core.reports.drive_summary import TOP_K

from .bag_formats import DEFAULT_DISTRO, DISTROS
from .bag_segment import segment_bag, total_frames
from .bags import is_own_bag
from .fleet_plan import bags_under, is_bag


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bag segment`` and ``bag play`` to the ``egnet`` command."""
    bag = commands.add_parser("bag", help="rosbag2 tools: segment a recorded drive, replay it").add_subparsers(
        dest="bag_command", required=True, metavar="BAG_COMMAND")
    segment = bag.add_parser(
        "segment", help="segment every camera frame of a bag into a new bag, or of many bags into a folder",
        usage="%(prog)s IN_BAG OUT_BAG [options]\n       %(prog)s IN [IN ...] --out DIR [--workers N] [options]")
    segment.add_argument("paths", type=Path, nargs="+", metavar="IN",
                         help="IN_BAG OUT_BAG: a rosbag2 directory, .db3 or .mcap (only read) into a new rosbag2 "
                              "directory; with --out: bags and folders searched for bags, all only read")
    segment.add_argument("--out", type=Path, metavar="DIR",
                         help="segment every bag of the INs into DIR, each output in its input's place under the "
                              "inputs' common folder, and summarise the fleet (DIR/summary.md); a rerun skips the "
                              "bags finished before. Under torchrun, each process takes its share of the bags")
    segment.add_argument("--workers", type=int, metavar="N",
                         help="with --out: processes on this machine, each with its own model, the CPU threads "
                              "split among them (default: 1)")
    segment.add_argument("--top", type=int, metavar="K",
                         help=f"with --out: frames listed as darkest, most saturated, least confident (default: "
                              f"{TOP_K})")
    add_inference_arguments(segment, precision="auto")
    segment.add_argument("--topic", action="append", help="image topic to segment (repeatable; default: all)")
    segment.add_argument("--batch", type=int, default=1, help="frames per forward pass (default: 1)")
    segment.add_argument("--input-size", type=parse_size, help="network input WIDTHxHEIGHT (default: frame size)")
    segment.add_argument("--prefix", default="/egnet", help="output topics are PREFIX/TOPIC/{labels,exposure,color}")
    segment.add_argument("--color", action="store_true", help="also write PREFIX/TOPIC/color (rgb8 palette)")
    segment.add_argument("--no-input", action="store_true", help="leave the input frames out of the output bag")
    segment.add_argument("--storage", choices=("sqlite3", "mcap"), help="output storage (default: the input's)")
    segment.add_argument("--distro", choices=DISTROS, default=DEFAULT_DISTRO,
                         help="write the bag as this ROS 2 distro's rosbag2 does, for its `ros2 bag info`/`play` "
                              f"(default: {DEFAULT_DISTRO}, which the newer distros read too)")
    segment.add_argument("--overwrite", action="store_true",
                         help="replace OUT_BAG (with --out: every output bag, instead of skipping the finished) if "
                              "it is a bag egnet wrote and its folder holds nothing else")
    segment.add_argument("--max-frame-pixels", type=int, default=MAX_FRAME_PIXELS, metavar="PIXELS",
                         help="skip frames of more pixels (width*height), read from the header before decoding "
                              f"(default: 4096*4096 = {MAX_FRAME_PIXELS})")
    segment.set_defaults(run=_bag_segment)

    play = bag.add_parser("play", help="publish a bag's messages with their recorded timing (needs rclpy)")
    play.add_argument("bag", type=Path, metavar="BAG")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1)")
    play.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    play.add_argument("--topics", nargs="+", help="topics to play (default: all image topics)")
    play.add_argument("--clock", action="store_true", help="publish /clock from the bag's time, for use_sim_time")
    play.add_argument("--delay", type=float, default=5.0,
                      help="wait up to this many seconds for every topic to have a subscriber (default: 5)")
    play.set_defaults(run=_bag_play)


def _bag_segment(args: argparse.Namespace) -> int:
    if args.out is not None:
        from .fleet_command import segment_fleet_command

        return segment_fleet_command(args)
    in_bag, out_bag = _single_form(args)
    from tqdm import tqdm

    ensure_writable_dir(out_bag, "OUT_BAG", folder=out_bag.parent)  # the bag writer makes OUT_BAG itself
    segmenter = build_segmenter(args, input_size=args.input_size)
    with tqdm(total=total_frames(in_bag, args.topic), desc="segmenting", unit="frame") as bar:
        result = segment_bag(
            in_bag, out_bag, segmenter, topics=args.topic, batch_size=args.batch, prefix=args.prefix,
            color=args.color, copy_input=not args.no_input, storage=args.storage, distro=args.distro,
            overwrite=args.overwrite, max_frame_pixels=args.max_frame_pixels, progress=bar.update,
        )
    print(f"{result.frames} frames segmented in {result.seconds:.1f} s ({result.frames_per_second:.2f} frames/s) "
          f"on {segmenter.device} ({segmenter.precision}); output: {result.output}")
    for reason, count in result.skipped.items():
        print(f"  skipped {count}: {reason}")
    if result.damage:
        print(f"  input damaged: {result.damage}")
    if result.exposure is not None:
        print("exposure of the drive (the paper's Figure 4):")
        print(format_histogram_table(result.exposure))
    return 0 if result.frames else 1


def _single_form(args: argparse.Namespace) -> tuple[Path, Path]:
    """IN_BAG and OUT_BAG, where the command line is unmistakably the one-bag form; ValueError saying how to write
    it otherwise (a fleet's inputs without --out would make the last input an output)."""
    paths = args.paths
    fleet = f"egnet bag segment {' '.join(str(path) for path in paths)} --out DIR"
    if len(paths) != 2:
        raise ValueError(f"bag segment takes IN_BAG OUT_BAG, or IN... --out DIR for many bags; got {len(paths)} "
                         f"path(s) without --out: to segment them all, write `{fleet}`")
    for option, value in (("--workers", args.workers), ("--top", args.top)):
        if value is not None:
            raise ValueError(f"{option} is for many bags, with --out DIR: `{fleet} {option} {value}`")
    in_bag, out_bag = paths
    if in_bag.is_dir() and not is_bag(in_bag) and bags_under(in_bag):
        raise ValueError(f"IN_BAG {str(in_bag)!r} is a folder of bags, not a bag: to segment every bag under it, "
                         f"write `egnet bag segment {in_bag} --out {out_bag}`")
    if is_bag(out_bag) and not is_own_bag(out_bag):
        raise ValueError(f"OUT_BAG {str(out_bag)!r} is a bag egnet did not write (a recording?), which is never "
                         f"replaced: to segment it too, write `{fleet}`; to segment {str(in_bag)!r} alone, name "
                         "a new OUT_BAG")
    return in_bag, out_bag


def _bag_play(args: argparse.Namespace) -> int:
    from .bag_play import main as play

    return play(args.bag, rate=args.rate, loop=args.loop, topics=args.topics, clock=args.clock, delay=args.delay)
