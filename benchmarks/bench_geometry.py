"""The three training geometries side by side: same data, seed and budget, each scored the paper's way.

    python benchmarks/bench_geometry.py --out bench-out [--iterations 200] [--size 1024x512] [--crop 300]
        [--eval-size 900x900] [--train 24] [--test 8] [--backbone resnet18] [--output-stride 32]

Generated night scenes in NightCity's layout (``egnet synth-data``); for each ``data.train_geometry`` (crop,
resize, resize_crop) one ``egnet train`` run, validating on scenes held out of the train split, then
``final.pt`` evaluated on the val split (the test split, never read in training) at ``--eval-size``, predictions
scaled back to the label's size. Writes OUT/geometry_bench.json and OUT/geometry_bench.md.

Generated scenes are not NightCity: the table says whether a geometry lets a small model learn these scenes
at all in a short run, not how EGNet fares on real night streets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from egnet_core.cli import parse_size
from egnet_core.config import TRAIN_GEOMETRIES, load_train_config
from egnet_core.data.datasets import open_dataset
from egnet_core.data.synthetic import write_nightcity
from egnet_core.deploy.inference import Segmenter
from egnet_core.engine.evaluation import evaluate
from egnet_core.engine.train import train


def _run(geometry: str, data: Path, out: Path, args: argparse.Namespace) -> dict:
    width, height = args.eval_size
    config = load_train_config(None, [
        f"data.root={data}", f"run.out_dir={out / geometry}", f"data.train_geometry={geometry}",
        f"model.backbone={args.backbone}", f"model.output_stride={args.output_stride}",
        f"data.crop_size={args.crop}", f"data.eval_size=[{width}, {height}]", f"data.holdout={args.holdout}",
        "data.workers=1", f"optim.batch_size={args.batch}", f"optim.lr={args.lr}",
        f"optim.iterations={args.iterations}", f"run.val_every={args.iterations}",
        f"run.checkpoint_every={args.iterations}", "run.keep_last=1", "run.log_every=10",
        f"run.seed={args.seed}", "run.device=cpu",
    ])
    start = time.perf_counter()
    summary = train(config)
    trained = time.perf_counter() - start
    segmenter = Segmenter.from_checkpoint(summary.final_checkpoint, device="cpu", input_size=args.eval_size)
    result = evaluate(segmenter, open_dataset("nightcity", data, "val"))
    return {"geometry": geometry, "miou": result.scores.miou, "mef1": result.scores.mef1,
            "pixel_accuracy": result.scores.pixel_accuracy, "held_out_miou": summary.best_miou,
            "validated_on": summary.validated_on, "test_images": result.images,
            "train_seconds": trained, "eval_seconds_per_image": result.seconds / result.images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="generated image WIDTHxHEIGHT")
    parser.add_argument("--crop", type=int, default=300, help="training crop side (the paper's 300)")
    parser.add_argument("--eval-size", type=parse_size, default=(900, 900), help="the paper's 900x900")
    parser.add_argument("--train", type=int, default=24, help="generated train scenes (before the holdout)")
    parser.add_argument("--test", type=int, default=8, help="generated val (test) scenes")
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--output-stride", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--geometries", nargs="+", default=list(TRAIN_GEOMETRIES), choices=TRAIN_GEOMETRIES)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = args.size
    data = write_nightcity(args.out / "data", train=args.train, val=args.test, width=width, height=height,
                           seed=args.seed).root
    rows = []
    for geometry in args.geometries:
        rows.append(_run(geometry, data, args.out / "runs", args))
        row = rows[-1]
        print(f"{geometry}: test mIoU {row['miou']:.4f}, mEF1 {row['mef1']:.4f} "
              f"(held-out mIoU {row['held_out_miou']:.4f}; trained in {row['train_seconds']:.0f} s)")
    settings = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(args).items()
                if key not in ("out", "geometries")}
    result = {"date": datetime.date.today().isoformat(), "device": f"CPU ({platform.machine()})",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "settings": settings, "rows": rows}
    (args.out / "geometry_bench.json").write_text(json.dumps(result, indent=2))
    lines = [f"{args.backbone} OS{args.output_stride}, {args.iterations} iterations of batch {args.batch}, "
             f"{args.crop}×{args.crop} training samples from {width}×{height} generated scenes ({args.train} train, "
             f"{args.holdout:g} held out for validation), final.pt tested on {args.test} val scenes at "
             f"{args.eval_size[0]}×{args.eval_size[1]} scaled back to {width}×{height}; seed {args.seed}, "
             f"{torch.get_num_threads()} threads", "",
             "| data.train_geometry | test mIoU | test mEF1 | test pixel acc. | held-out mIoU | train (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['geometry']} | {r['miou']:.4f} | {r['mef1']:.4f} | {r['pixel_accuracy']:.4f} | "
              f"{r['held_out_miou']:.4f} | {r['train_seconds']:.0f} |" for r in rows]
    (args.out / "geometry_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
