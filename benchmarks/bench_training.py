"""Training and evaluation throughput at the paper's sizes, and the data-loading share of a training step.

    python benchmarks/bench_training.py --out bench-out [--backbones resnet18 resnet101] [--steps 3] [--batch 2]

Training: 300×300 crops from 1024×512 generated NightCity-layout images through the real loader and
transforms; the time the loop waits for the loader is reported as a share of the step. Evaluation: frames
resized to 900×900, predicted, and scaled back to 1024×512 (the paper's protocol). Writes
OUT/training_bench.json and OUT/training_bench.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from egnet_core.config import load_train_config
from egnet_core.criteria.losses import EGNetLoss
from egnet_core.data.datasets import open_dataset
from egnet_core.data.synthetic import write_nightcity
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import resolve_device
from egnet_core.engine.train import build_training_data
from egnet_core.model.networks import build_model


def _train_throughput(config, steps: int, device: torch.device) -> dict:
    model = build_model(config.model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.optim.lr, momentum=0.9)
    criterion = EGNetLoss()
    loader = torch.utils.data.DataLoader(build_training_data(config).train, batch_size=config.optim.batch_size,
                                         shuffle=True, num_workers=config.data.workers, drop_last=True)
    batches = iter(loader)
    waiting, total = 0.0, 0.0
    for step in range(steps + 1):  # step 0 warms up
        start = time.perf_counter()
        sample = next(batches)
        loaded = time.perf_counter()
        parts = criterion(model(sample.image.to(device)), sample.label.to(device), sample.exposure.to(device))
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            waiting += loaded - start
            total += time.perf_counter() - start
    return {"images_per_s": steps * config.optim.batch_size / total, "step_s": total / steps,
            "data_wait_share": waiting / total}


def _eval_throughput(config, frames: int, device: torch.device) -> dict:
    segmenter = Segmenter(build_model(config.model), device=device, input_size=(900, 900))
    dataset = open_dataset("nightcity", config.data.root, "val")
    images = [dataset[i % len(dataset)].image for i in range(frames + 1)]
    segmenter.predict(images[0])
    start = time.perf_counter()
    for image in images[1:]:
        segmenter.predict(image)
    seconds = (time.perf_counter() - start) / frames
    return {"images_per_s": 1 / seconds, "seconds_per_image": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet101"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="training batch (the paper's 14 is a GPU batch)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = write_nightcity(Path(folder) / "data", train=8, val=2, seed=0).root
        for backbone in args.backbones:
            config = load_train_config(None, [f"data.root={data}", f"model.backbone={backbone}",
                                              f"optim.batch_size={args.batch}", f"data.workers={args.workers}"])
            training = _train_throughput(config, args.steps, device)
            evaluation = _eval_throughput(config, args.steps, device)
            rows.append({"backbone": backbone, "output_stride": config.model.output_stride,
                         "train": training, "evaluate": evaluation})
            print(f"{backbone}: train {training['images_per_s']:.2f} img/s (data wait "
                  f"{training['data_wait_share']:.1%}), evaluate {evaluation['images_per_s']:.2f} img/s")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    result = {"device": name, "threads": torch.get_num_threads(), "batch": args.batch, "crop": 300,
              "eval_size": [900, 900], "torch": torch.__version__, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_bench.json").write_text(json.dumps(result, indent=2))
    lines = [f"EGNet throughput on {name} ({torch.get_num_threads()} threads), training batch {args.batch} of "
             "300×300 crops, evaluation at 900×900 scaled back to 1024×512", "",
             "| backbone | OS | train img/s | step (s) | data wait share | eval img/s | eval s/img |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['backbone']} | {r['output_stride']} | {r['train']['images_per_s']:.2f} | "
              f"{r['train']['step_s']:.2f} | {r['train']['data_wait_share']:.1%} | "
              f"{r['evaluate']['images_per_s']:.2f} | {r['evaluate']['seconds_per_image']:.2f} |" for r in rows]
    (args.out / "training_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
