"""Offline bag segmentation: throughput at 1024×512 per model, peak memory against the bag's length, and fleets.

    python benchmarks/bench_bag.py --out bench-out [--frames 3] [--long 1000] [--short 100]
    python benchmarks/bench_bag.py --out bench-out --fleet [--bags 8] [--bag-frames 20]

Each measurement runs ``egnet bag segment`` as its own process on a bag of generated night frames (1024×512
``bgr8``, MCAP) and reads the process's peak resident memory from the kernel. Throughput: EGNet-ResNet18 OS16
(the real-time configuration), ResNet18 OS8 and the paper's ResNet101 OS8 on ``--frames`` frames. Memory: the
ResNet18 OS32 model on a ``--short`` and a ``--long`` bag; streaming keeps the two peaks equal. Writes
OUT/bag_bench.json and OUT/bag_bench.md.

``--fleet``: ``egnet bag segment BAGS --out DIR`` on ``--bags`` bags of ``--bag-frames`` frames each
(EGNet-ResNet18 OS16, fp32, ``--no-input``) with 1 worker, 2 workers and 2 ``torchrun`` processes on this
machine, side by side: frames/s over the run (model loading and process start included), the peak resident
memory of each process that segmented (as each reports it in summary.json), and the speed-up against one
worker. Writes OUT/bag_fleet_bench.json and OUT/bag_fleet_bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from egnet_core.data.synthetic import render_night_frames
from egnet_core.model.checkpoint import save_checkpoint
from egnet_core.model.egnet import EGNet
from egnet_ros.bags import write_camera_bag

THROUGHPUT_MODELS = {"EGNet-ResNet18 OS16": ("resnet18", 16), "EGNet-ResNet18 OS8": ("resnet18", 8),
                     "EGNet-ResNet101 OS8 (paper)": ("resnet101", 8)}
MEMORY_MODEL = ("resnet18", 32)


def _drive(frames: list[np.ndarray], length: int):
    """``length`` frames, cycling through ``frames``, generated lazily."""
    return (frames[index % len(frames)] for index in range(length))


def _segment(bag: Path, checkpoint: Path, out: Path) -> dict:
    """``egnet bag segment`` in its own process: frames/s from its summary, peak memory from the kernel."""
    command = [str(Path(sys.executable).with_name("egnet")), "bag", "segment", str(bag), str(out), "--checkpoint",
               str(checkpoint), "--device", "cpu", "--no-input", "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    output = process.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"egnet bag segment failed:\n{output}")
    frames, fps = re.search(r"(\d+) frames segmented in [\d.]+ s \(([\d.]+) frames/s\)", output).groups()
    return {"frames": int(frames), "frames_per_second": float(fps), "wall_s": wall,
            "peak_rss_mib": usage.ru_maxrss / 1024}


FLEET_MODEL = ("resnet18", 16)
# name -> the command's prefix and its options: how each fleet configuration starts
FLEET_RUNS = {"1 worker": ([], ["--workers", "1"]), "2 workers": ([], ["--workers", "2"]),
              "2 torchrun processes": (["torchrun", "--standalone", "--nproc_per_node", "2", "--no-python"], [])}


def _fleet(bags: Path, checkpoint: Path, out: Path, launcher: list[str], options: list[str]) -> dict:
    """One fleet run in its own process(es): frames/s and per-process peak memory from its summary.json."""
    venv = Path(sys.executable).parent
    launcher = [str(venv / launcher[0]), *launcher[1:]] if launcher else []
    command = [*launcher, str(venv / "egnet"), "bag", "segment", str(bags), "--out", str(out), "--checkpoint",
               str(checkpoint), "--device", "cpu", "--precision", "fp32", "--no-input", *options]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr[-3000:]}")
    run = json.loads((out / "summary.json").read_text())["run"]
    shutil.rmtree(out)  # the outputs are large: one configuration's at a time
    return {"frames": run["frames"], "seconds": run["seconds"], "frames_per_second": run["frames_per_second"],
            "wall_s": wall, "peak_rss_mib": run["peak_memory_mib"]}


def fleet_main(args: argparse.Namespace) -> None:
    scenes = render_night_frames(0, 10, width=1024, height=512)
    result = {"size": [1024, 512], "bags": args.bags, "frames_per_bag": args.bag_frames, "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for index in range(args.bags):
            frames = (scenes[(index + i) % len(scenes)] for i in range(args.bag_frames))
            write_camera_bag(scratch / "drives" / f"drive_{index}", frames, storage="mcap")
        checkpoint = save_checkpoint(scratch / "model.pt", EGNet(backbone=FLEET_MODEL[0], output_stride=FLEET_MODEL[1]))
        for name, (launcher, options) in FLEET_RUNS.items():
            result["runs"][name] = _fleet(scratch / "drives", checkpoint, scratch / "out", launcher, options)
            print(name, result["runs"][name])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bag_fleet_bench.json").write_text(json.dumps(result, indent=2))
    one = result["runs"]["1 worker"]["frames_per_second"]
    lines = [f"Fleet segmentation (`egnet bag segment DRIVES --out DIR`), {args.bags} MCAP bags × {args.bag_frames} "
             "frames of 1024×512 bgr8, EGNet-ResNet18 OS16 fp32, CPU", "",
             "| configuration | frames | s | frames/s | speed-up vs 1 worker | peak memory per process (MiB) |",
             "|---|---:|---:|---:|---:|---|"]
    for name, run in result["runs"].items():
        memory = ", ".join(f"{mib:.0f}" for mib in sorted(run["peak_rss_mib"].values(), reverse=True))
        lines.append(f"| {name} | {run['frames']} | {run['seconds']:.1f} | {run['frames_per_second']:.2f} | "
                     f"{run['frames_per_second'] / one:.2f}× | {memory} |")
    (args.out / "bag_fleet_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=3, help="frames per throughput run")
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--fleet", action="store_true", help="measure fleets instead: workers and torchrun")
    parser.add_argument("--bags", type=int, default=8, help="bags of a fleet")
    parser.add_argument("--bag-frames", type=int, default=20, help="frames per bag of a fleet")
    args = parser.parse_args()
    if args.fleet:
        fleet_main(args)
        return
    scenes = render_night_frames(0, 10, width=1024, height=512)
    result = {"size": [1024, 512], "throughput": {}, "memory": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_camera_bag(scratch / "short_drive", _drive(scenes, args.frames), storage="mcap")
        for name, (backbone, stride) in THROUGHPUT_MODELS.items():
            checkpoint = save_checkpoint(
                scratch / f"{backbone}_{stride}.pt", EGNet(backbone=backbone, output_stride=stride)
            )
            result["throughput"][name] = _segment(scratch / "short_drive", checkpoint, scratch / "out")
            print(name, result["throughput"][name])
        checkpoint = save_checkpoint(
            scratch / "memory.pt", EGNet(backbone=MEMORY_MODEL[0], output_stride=MEMORY_MODEL[1])
        )
        for length in (args.short, args.long):
            write_camera_bag(scratch / "drive", _drive(scenes, length), storage="mcap", overwrite=True)
            result["memory"][length] = _segment(scratch / "drive", checkpoint, scratch / "out")
            print(length, "frames:", result["memory"][length])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bag_bench.json").write_text(json.dumps(result, indent=2))
    lines = ["Offline bag segmentation (`egnet bag segment`), 1024×512 bgr8 frames in MCAP, CPU", "",
             "| model | frames | frames/s | peak memory (MiB) |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['frames']} | {r['frames_per_second']:.2f} | {r['peak_rss_mib']:.0f} |"
              for name, r in result["throughput"].items()]
    short, long = result["memory"][args.short], result["memory"][args.long]
    lines += ["", "Peak memory against the bag's length (EGNet-ResNet18 OS32):", "",
              "| frames in the bag | peak memory (MiB) | × the short bag |", "|---:|---:|---:|",
              f"| {args.short} | {short['peak_rss_mib']:.0f} | 1.00 |",
              f"| {args.long} | {long['peak_rss_mib']:.0f} | {long['peak_rss_mib'] / short['peak_rss_mib']:.2f} |"]
    (args.out / "bag_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
