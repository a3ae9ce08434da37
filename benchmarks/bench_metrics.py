"""Time ``SegmentationEvaluator.update`` on NightCity-sized frames and project it to the 1,299 test images.

    python benchmarks/bench_metrics.py --images 200 --out reports/

Writes ``metrics_bench.json`` and ``metrics_bench.md`` to ``--out``. Frames are random 1024×512 predictions,
targets (10% ignored) and exposures, built before timing and cycled, so only ``update`` is measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from egnet_core.criteria.metrics import SegmentationEvaluator
from egnet_core.data.labels import IGNORE_INDEX, NUM_CLASSES

NIGHTCITY_TEST_IMAGES = 1299
HEIGHT, WIDTH = 512, 1024
DISTINCT_FRAMES = 8


def make_frames(seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Frames in the dtypes evaluation sees: int64 argmax predictions and targets, float32 exposure."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(DISTINCT_FRAMES):
        target = rng.integers(0, NUM_CLASSES, (HEIGHT, WIDTH))
        pred = np.where(rng.random((HEIGHT, WIDTH)) < 0.8, target, rng.integers(0, NUM_CLASSES, (HEIGHT, WIDTH)))
        target[rng.random((HEIGHT, WIDTH)) < 0.1] = IGNORE_INDEX
        exposure = rng.random((HEIGHT, WIDTH), dtype=np.float32)
        frames.append(tuple(torch.from_numpy(array) for array in (pred, target, exposure)))
    return frames


def measure(images: int, seed: int) -> dict[str, object]:
    frames = make_frames(seed)
    evaluator = SegmentationEvaluator()
    evaluator.update(*frames[0])  # first call allocates the confusion and warms up torch's kernels
    evaluator.reset()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for index in range(images):
        evaluator.update(*frames[index % DISTINCT_FRAMES])
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    return {
        "images": images,
        "frame": f"{WIDTH}x{HEIGHT}",
        "wall_s": wall,
        "cpu_s": cpu,
        "images_per_s": images / wall,
        "ms_per_image": 1000 * wall / images,
        "projected_nightcity_test_wall_s": wall / images * NIGHTCITY_TEST_IMAGES,
        "projected_nightcity_test_cpu_s": cpu / images * NIGHTCITY_TEST_IMAGES,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def to_markdown(result: dict[str, object]) -> str:
    rows = [
        ("images timed", f"{result['images']} ({result['frame']})"),
        ("wall time", f"{result['wall_s']:.2f} s"),
        ("CPU time", f"{result['cpu_s']:.2f} s"),
        ("throughput", f"{result['images_per_s']:.1f} images/s ({result['ms_per_image']:.2f} ms/image)"),
        (
            f"projected, {NIGHTCITY_TEST_IMAGES} NightCity test images",
            f"{result['projected_nightcity_test_wall_s']:.1f} s wall, "
            f"{result['projected_nightcity_test_cpu_s']:.1f} s CPU",
        ),
        ("torch threads", str(result["torch_threads"])),
        ("torch", str(result["torch"])),
    ]
    lines = ["# SegmentationEvaluator.update throughput", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="number of update() calls to time")
    parser.add_argument("--out", type=Path, required=True, help="folder for metrics_bench.json and .md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice); "
        "1 is steadier when other processes share the cores"
    )
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be at least 1, got {args.images}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    result = measure(args.images, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    (args.out / "metrics_bench.md").write_text(markdown)
    print(markdown, end="")


if __name__ == "__main__":
    main()
