"""Labels from logits: ``argmax`` against ``max(...).indices`` (the Segmenter's) side by side, interleaved rounds.

    python benchmarks/bench_labels.py --out bench-out [--rounds 5] [--classes 19] [--size 1024x512]

Both give the first of tied maxima; on a CPU ``max`` over the channels of NCHW logits runs in a fraction of
``argmax``'s time, and every path (the node, the bag tool, the evaluator) pays it per frame. Random float32
logits of 1×classes×H×W, contiguous (what the Segmenter gets from every network). Each round times both, one
after the other; the ratio is taken within a round. Writes OUT/labels_bench.json and OUT/labels_bench.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from egnet_core.cli import parse_size
from egnet_core.deploy.timing import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="WIDTHxHEIGHT (default: 1024x512)")
    args = parser.parse_args()
    width, height = args.size
    logits = torch.randn(1, args.classes, height, width, generator=torch.Generator().manual_seed(0))
    if not torch.equal(logits.argmax(1), logits.max(1).indices):
        raise SystemExit("max's indices differ from argmax's on these logits")
    rounds = []
    for _ in range(args.rounds):
        argmax = statistics.mean(timed(lambda: logits.argmax(1), 3, warm_up=True))
        indices = statistics.mean(timed(lambda: logits.max(1).indices, 3, warm_up=True))
        rounds.append({"argmax_ms": argmax * 1e3, "max_indices_ms": indices * 1e3, "speedup": argmax / indices})
    result = {"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "logits": [1, args.classes, height, width], "rounds": rounds,
              "median_speedup": statistics.median(r["speedup"] for r in rounds)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "labels_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Labels of 1×{args.classes}×{height}×{width} float32 logits, {result['threads']} threads, "
             f"torch {result['torch']}", "", "| round | argmax ms | max().indices ms | speed-up |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {r['argmax_ms']:.1f} | {r['max_indices_ms']:.1f} | {r['speedup']:.2f} |"
              for i, r in enumerate(rounds)]
    lines += ["", f"Median speed-up: {result['median_speedup']:.2f}"]
    (args.out / "labels_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
