"""The PT2E int8 graph's options side by side: speed (compiled, interleaved rounds) and what each keeps of the
float model's labels and exposure.

    python benchmarks/bench_int8_recipe.py --checkpoint CKPT --out bench-out [--size 1024x512]
        [--blocks encoder.4.0,segmentation_stages.0.0] [--rounds 12] [--calibration 8] [--frames 2]

Variants, each quantized with ``int8_recipe``'s quantizer, calibrated on generated frames of seed 1 and compiled
as ``Int8Network`` compiles a .pt2 (Inductor, frozen weights):
- every block int8 (the shipped recipe before any block is kept out);
- residual sums in float (``float_sums``);
- with ``--blocks``: those blocks kept out of int8 in fp32, and in bf16 (what the selection's kept blocks run in
  where bf16 measured faster).
Each round times every variant once on the same frame, so the ratios are taken side by side; the median and
the fastest round are reported. Agreement is against the checkpoint's fp32 model on frames of seed 5. Writes
OUT/int8_recipe.json and OUT/int8_recipe.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch

from egnet_core.cli import parse_size
from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.compiled import compile_frozen
from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.deploy.inference import calibration_input
from egnet_core.deploy.int8_pt2e import FLOAT_MODULES, require_torchao
from egnet_core.deploy.int8_recipe import (
    agreement,
    calibrated,
    export_network,
    exported,
    int8_quantizer,
    with_blocks_in,
)
from egnet_core.deploy.timing import interleaved
from egnet_core.model.checkpoint import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="WIDTHxHEIGHT (default: 1024x512)")
    parser.add_argument("--blocks", default="", help="comma-separated module names to keep out of int8")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calibration", type=int, default=8)
    parser.add_argument("--frames", type=int, default=2)
    args = parser.parse_args()
    width, height = args.size
    blocks = tuple(name for name in args.blocks.split(",") if name)
    model = fuse_conv_bn(load_model(args.checkpoint)).eval()
    calibration = [calibration_input(f, args.size)
                   for f in render_night_frames(1, args.calibration, width=width, height=height)]
    frames = [calibration_input(f, args.size) for f in render_night_frames(5, args.frames, width=width, height=height)]
    with torch.no_grad():
        reference = [model(x) for x in frames]
    variants = {"every block int8": ((), "fp32", False), "residual sums in float": ((), "fp32", True)}
    if blocks:
        variants |= {f"{len(blocks)} blocks kept in fp32": (blocks, "fp32", False),
                     f"{len(blocks)} blocks kept in bf16": (blocks, "bf16", False)}
    quantizer_module = require_torchao()
    networks, rows = {}, {}
    for name, (kept, precision, float_sums) in variants.items():
        quantizer = int8_quantizer(quantizer_module, FLOAT_MODULES + kept, float_sums=float_sums)
        network = calibrated(export_network(with_blocks_in(model, kept, precision), calibration[0]), quantizer,
                             calibration)
        networks[name] = compile_frozen(exported(network, calibration[0]).module())  # as Int8Network compiles a .pt2
        with torch.no_grad():
            outputs = [networks[name](x) for x in frames]  # the first call compiles
        labels, exposure = agreement(outputs, reference)
        rows[name] = {"variant": name, "kept_out_of_int8": list(kept), "kept_precision": precision,
                      "float_sums": float_sums, "labels_equal": labels, "exposure_mad": exposure}
        print(f"{name}: labels {rows[name]['labels_equal']:.4f}, exposure {rows[name]['exposure_mad']:.4f}",
              flush=True)
    with torch.no_grad():
        # Once each before the rounds: after the other variants compiled, a network's next call can recompile
        # (seconds, measured), which would otherwise land in the first round.
        for network in networks.values():
            network(frames[0])
        seconds = interleaved({name: functools.partial(network, frames[0]) for name, network in networks.items()},
                              args.rounds)
    for name, row in rows.items():
        row["seconds"] = seconds[name]
    first = next(iter(rows.values()))
    for row in rows.values():
        row["median_ms"] = 1e3 * statistics.median(row["seconds"])
        row["fastest_ms"] = 1e3 * min(row["seconds"])
        row["x_every_block_int8"] = first["median_ms"] / row["median_ms"]
    result = {"date": time.strftime("%Y-%m-%d"), "checkpoint": str(args.checkpoint),
              "backbone": model.config.backbone, "output_stride": model.config.output_stride,
              "size": [width, height], "threads": torch.get_num_threads(), "torch": torch.__version__,
              "rounds": args.rounds, "variants": list(rows.values())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_recipe.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"EGNet-{model.config.backbone} OS{model.config.output_stride} ({args.checkpoint}), {width}×{height}, "
             f"{result['threads']} threads, {args.rounds} interleaved rounds, calibrated on {args.calibration} "
             f"generated frames, compared on {args.frames} others", "",
             "| variant | median ms | fastest ms | × every block int8 | labels equal | exposure MAD |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['median_ms']:.1f} | {r['fastest_ms']:.1f} | {r['x_every_block_int8']:.2f} | "
              f"{r['labels_equal']:.2%} | {r['exposure_mad']:.4f} |" for r in rows.values()]
    if blocks:
        lines += ["", f"Kept out of int8: {', '.join(blocks)}"]
    (args.out / "int8_recipe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
