"""EGNet-ResNet101 OS8 at 1024x512: eager vs compiled (freezing) bf16, each round timing both once and the bf16
GEMM peak once; random weights (speed only). Writes bench-out/bf16_r101.json and .md.

    python benchmarks/bench_bf16_r101.py
"""
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.benchmark import model_gflop
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.timing import timed
from egnet_core.model.egnet import EGNet


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    N = 4096
    a, b = torch.rand(N, N).bfloat16(), torch.rand(N, N).bfloat16()
    torch.manual_seed(0)
    model = EGNet(backbone="resnet101", output_stride=8).eval()
    gflop = model_gflop(model)
    frame = render_night_frames(0, 1, width=1024, height=512)[0]
    paths = {"eager bf16": dict(precision="bf16"), "compiled bf16": dict(precision="bf16", compile=True)}
    segs, first = {}, {}
    for name, options in paths.items():
        segs[name] = Segmenter(model, device="cpu", **options)
        start = time.perf_counter()
        segs[name].predict(frame)
        first[name] = time.perf_counter() - start
    times = {name: [] for name in paths}
    peaks = []
    for r in range(3):
        peaks.append(2 * N**3 / min(timed(lambda: a @ b, 3, warm_up=True)) / 1e9)
        for name, seg in segs.items():
            times[name].append(timed(lambda: seg.predict(frame), 1)[0])
    out = {"threads": torch.get_num_threads(), "model_gflop": gflop, "bf16_peak_gflops": peaks, "paths": {}}
    for name in paths:
        shares = [gflop / t / pk for t, pk in zip(times[name], peaks)]
        out["paths"][name] = {"first_run_s": first[name], "ms": [t * 1e3 for t in times[name]],
                              "share_of_peak_per_round": shares, "median_share": statistics.median(shares)}
    text = json.dumps(out, indent=1)
    print(text)
    lines = ["| path | ms per round | share of that round's bf16 matmul peak | first run s |", "|---|---|---|---:|"]
    lines += [f"| {name} | {', '.join(f'{ms:.0f}' for ms in row['ms'])} | "
              f"{', '.join(f'{share:.2f}' for share in row['share_of_peak_per_round'])} | {row['first_run_s']:.1f} |"
              for name, row in out["paths"].items()]
    Path("bench-out").mkdir(exist_ok=True)
    Path("bench-out/bf16_r101.json").write_text(text + "\n")
    Path("bench-out/bf16_r101.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
