"""Forward-pass time of EGNet next to torchvision's DeepLabV3-ResNet101, side by side in one run.

    python benchmarks/bench_forward.py --out bench-out [--size 1024x512] [--repeats 3] [--threads N]

Writes OUT/forward_bench.json and OUT/forward_bench.md; every figure is also given as a ratio to
DeepLabV3-ResNet101, measured in the same process on the same input.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torchvision

from egnet_core.cli import parse_size
from egnet_core.model.egnet import EGNet

REFERENCE = "deeplabv3_resnet101 (torchvision)"


def _models() -> dict[str, torch.nn.Module]:
    return {
        REFERENCE: torchvision.models.segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None,
                                                                      num_classes=19, aux_loss=False),
        "EGNet-ResNet101 OS8 (paper)": EGNet(backbone="resnet101", output_stride=8),
        "EGNet-ResNet50 OS16": EGNet(backbone="resnet50", output_stride=16),
        "EGNet-ResNet18 OS8": EGNet(backbone="resnet18", output_stride=8),
    }


@torch.inference_mode()
def _time(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> list[float]:
    model.eval()
    model(images)  # warm-up: allocator and kernel selection stay out of the numbers
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(images)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=parse_size, default=(1024, 512))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = args.size
    torch.manual_seed(0)
    images = torch.rand(1, 3, height, width)
    rows = []
    for name, model in _models().items():
        seconds = _time(model, images, args.repeats)
        rows.append({"model": name, "median_s": statistics.median(seconds), "runs_s": seconds,
                     "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6})
        print(f"{name}: median {rows[-1]['median_s']:.3f} s over {args.repeats}")
    reference = rows[0]["median_s"]
    for row in rows:
        row["ratio_to_deeplabv3"] = row["median_s"] / reference
    result = {"size": [width, height], "batch": 1, "device": "cpu", "threads": torch.get_num_threads(),
              "torch": torch.__version__, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "forward_bench.json").write_text(json.dumps(result, indent=2))
    lines = [f"Forward pass, batch 1, {width}×{height}, CPU, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__}",
             "", "| model | parameters (M) | median (s) | × DeepLabV3-R101 |", "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['parameters_m']:.1f} | {r['median_s']:.3f} | {r['ratio_to_deeplabv3']:.2f} |"
              for r in rows]
    (args.out / "forward_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
