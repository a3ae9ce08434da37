"""Offline bag segmentation: throughput at 1024×512 per model, and peak memory against the bag's length.

    python benchmarks/bench_bag.py --out bench-out [--frames 3] [--long 1000] [--short 100]

Each measurement runs ``egnet bag segment`` as its own process on a bag of generated night frames (1024×512
``bgr8``, MCAP) and reads the process's peak resident memory from the kernel. Throughput: EGNet-ResNet18 OS16
(the real-time configuration), ResNet18 OS8 and the paper's ResNet101 OS8 on ``--frames`` frames. Memory: the
ResNet18 OS32 model on a ``--short`` and a ``--long`` bag; streaming keeps the two peaks equal. Writes
OUT/bag_bench.json and OUT/bag_bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=3, help="frames per throughput run")
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1000)
    args = parser.parse_args()
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
