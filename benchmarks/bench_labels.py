"""Labels from logits, side by side in interleaved rounds: ``argmax`` against ``max(...).indices`` over full-size
logits, and from the last stage's logits the eager resize and maximum against one compiled pass (``labels.py``).

    python benchmarks/bench_labels.py --out bench-out [--rounds 5] [--classes 19] [--size 1024x512] [--stride 16]

``argmax`` and ``max`` give the first of tied maxima; on a CPU ``max`` over the channels of NCHW logits runs in a
fraction of ``argmax``'s time, and every path (the node, the bag tool, the evaluator) pays it per frame. Random
float32 logits of 1×classes×H×W, contiguous (what the Segmenter gets from eager networks). The compiled CPU paths
and int8 files give logits at 1/stride of the size instead, which the Segmenter resizes and takes the labels of in
one ``torch.compile``'d pass; the eager way is ``F.interpolate`` to full size, then ``max``. The size being a whole
multiple of the last stage's, that pass is the whole-factor blend (``upsampled_label_map``); the general compiled
pass (``label_map``, gathered loads) is timed beside it. Each round times each path one after the other; the
ratios are taken within a round. Writes OUT/labels_bench.json and OUT/labels_bench.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from egnet_core.cli import parse_size
from egnet_core.deploy.labels import LabelMaps, label_map
from egnet_core.deploy.timing import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="WIDTHxHEIGHT (default: 1024x512)")
    parser.add_argument("--stride", type=int, default=16, help="the network's output stride (default: 16)")
    args = parser.parse_args()
    if args.rounds < 1 or args.classes < 2 or args.stride < 1:
        parser.error(f"--rounds, --classes and --stride must be at least 1, 2 and 1, got {args.rounds}, "
                     f"{args.classes} and {args.stride}")
    width, height = args.size
    size = (height, width)
    logits = torch.randn(1, args.classes, height, width, generator=torch.Generator().manual_seed(0))
    if not torch.equal(logits.argmax(1), logits.max(1).indices):
        raise SystemExit("max's indices differ from argmax's on these logits")
    low = torch.randn(1, args.classes, -(-height // args.stride), -(-width // args.stride),
                      generator=torch.Generator().manual_seed(1))
    eager, compiled = LabelMaps(compiled=False), LabelMaps(compiled=True)
    general = torch.compile(label_map, dynamic=False)
    expected = eager(low, size, size)
    agreement = {name: float((labels(low, size, size) == expected).float().mean())  # compiles
                 for name, labels in (("shipped", compiled), ("general", general))}
    if min(agreement.values()) < 0.9999:
        raise SystemExit(f"a compiled pass's labels differ from the eager resize and max: {agreement}")
    rounds = []
    for _ in range(args.rounds):
        argmax = statistics.mean(timed(lambda: logits.argmax(1), 3, warm_up=True))
        indices = statistics.mean(timed(lambda: logits.max(1).indices, 3, warm_up=True))
        resized = statistics.mean(timed(lambda: eager(low, size, size), 3, warm_up=True))
        fused = statistics.mean(timed(lambda: compiled(low, size, size), 3, warm_up=True))
        gathered = statistics.mean(timed(lambda: general(low, size, size), 3, warm_up=True))
        rounds.append({"argmax_ms": argmax * 1e3, "max_indices_ms": indices * 1e3, "speedup": argmax / indices,
                       "eager_resize_max_ms": resized * 1e3, "compiled_pass_ms": fused * 1e3,
                       "compiled_speedup": resized / fused, "general_pass_ms": gathered * 1e3,
                       "blend_speedup": gathered / fused})
    result = {"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "logits": [1, args.classes, height, width], "last_stage_logits": list(low.shape),
              "whole_factor_blend": compiled.upsamples(tuple(low.shape[-2:]), size, size),
              "labels_equal_to_eager": agreement, "rounds": rounds,
              "median_speedup": statistics.median(r["speedup"] for r in rounds),
              "median_compiled_speedup": statistics.median(r["compiled_speedup"] for r in rounds),
              "median_blend_speedup": statistics.median(r["blend_speedup"] for r in rounds)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "labels_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Labels of 1×{args.classes}×{height}×{width} float32 logits, and of the last stage's "
             f"1×{args.classes}×{low.shape[2]}×{low.shape[3]} resized to that size; {result['threads']} threads, "
             f"torch {result['torch']}", "",
             "| round | argmax ms | max().indices ms | speed-up | eager resize + max ms | one compiled pass ms | "
             "speed-up | general compiled pass ms | its time over the shipped pass's |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {r['argmax_ms']:.1f} | {r['max_indices_ms']:.1f} | {r['speedup']:.2f} | "
              f"{r['eager_resize_max_ms']:.1f} | {r['compiled_pass_ms']:.1f} | {r['compiled_speedup']:.2f} | "
              f"{r['general_pass_ms']:.1f} | {r['blend_speedup']:.2f} |" for i, r in enumerate(rounds)]
    lines += ["", f"Median speed-ups: max over argmax {result['median_speedup']:.2f}, the compiled pass over the "
              f"eager resize and max {result['median_compiled_speedup']:.2f}, over the general compiled pass "
              f"{result['median_blend_speedup']:.2f} (the shipped pass is the whole-factor blend: "
              f"{result['whole_factor_blend']}); labels equal to the eager ones: {agreement}"]
    (args.out / "labels_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
