"""What precision auto costs at start-up and what it chooses, beside an explicit fp32 start-up in the same run.

    python benchmarks/bench_precision.py --out bench-out [--device cpu] [--batch 1] [--repeats 3]

EGNet-ResNet18 OS16 (the real-time configuration) with random, seeded weights at 1024×512: an untrained
network's class margins are small, so reduced precisions agree less with fp32 than a trained one's would.
For each of fp32 and auto: the seconds from building the Segmenter to the end of ``warm_up`` (auto's choice
included), then the median of ``repeats`` predictions of a generated night frame afterwards. Writes
OUT/precision_bench.json and OUT/precision_bench.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import resolve_device
from egnet_core.model.egnet import EGNet

SIZE = (1024, 512)  # (width, height)
CONFIG = "EGNet-ResNet18 OS16 (random weights)"


def _start_and_run(model: EGNet, precision: str, device: torch.device, batch: int, repeats: int) -> dict:
    frames = render_night_frames(1, batch, width=SIZE[0], height=SIZE[1])  # not the choice's own frames (seed 0)
    start = time.perf_counter()
    segmenter = Segmenter(model, precision=precision, device=device)
    segmenter.warm_up(SIZE, batch=batch)
    startup = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        segmenter.predict_batch(frames)
        seconds.append(time.perf_counter() - start)
    choice = segmenter.precision_choice
    return {"precision": precision, "runs_as": segmenter.precision, "startup_s": startup,
            "median_batch_s": statistics.median(seconds), "runs_s": seconds,
            "choice": None if choice is None else asdict(choice), "table": None if choice is None else choice.table()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--batch", type=int, default=1, help="frames per batch, as cameras on the node (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed predictions after the start-up (default: 3)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = EGNet(backbone="resnet18", output_stride=16)
    rows = [_start_and_run(model, precision, device, args.batch, args.repeats) for precision in ("fp32", "auto")]
    fp32, auto = rows
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "CPU")
    result = {"date": time.strftime("%Y-%m-%d"), "config": CONFIG, "size": list(SIZE), "batch": args.batch,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows,
              "startup_ratio": auto["startup_s"] / fp32["startup_s"],
              "speedup": fp32["median_batch_s"] / auto["median_batch_s"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Precision auto, {CONFIG}, {SIZE[0]}×{SIZE[1]}, batch {args.batch}, {result['device']}, "
             f"{result['threads']} threads, torch {torch.__version__}", "",
             "| precision | runs as | start-up (s) | per batch after (ms) |", "|---|---|---:|---:|"]
    lines += [f"| {r['precision']} | {r['runs_as']} | {r['startup_s']:.2f} | {r['median_batch_s'] * 1e3:.1f} |"
              for r in rows]
    lines += ["", f"auto's start-up: {result['startup_ratio']:.2f}× fp32's ({auto['choice']['startup_s']:.2f} s of "
              f"it choosing); afterwards {result['speedup']:.2f}× fp32's speed.", "", "```", auto["table"], "```"]
    (args.out / "precision_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
