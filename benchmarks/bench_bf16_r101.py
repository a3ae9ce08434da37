"""EGNet-ResNet101 OS8 at 1024x512: eager against compiled (freezing) bf16 beside the bf16 GEMM, each timed once a
round in rotating order (as ``egnet bench`` takes its targets); random weights (speed only). A path's share is its
median speed over the best the GEMM reached in the rounds. Writes bf16_r101.json and .md into --out.

    python benchmarks/bench_bf16_r101.py [--out bench-out] [--rounds 3]
"""

import functools
import json
import logging
import statistics

import torch
from bench_args import timing_parser

from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.benchmark import model_gflop
from egnet_core.deploy.gemm_peaks import GEMM_OPS, float_gemm
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.timing import interleaved, timed
from egnet_core.model.egnet import EGNet

GEMM = "bf16 GEMM"


def main() -> None:
    args = timing_parser(__doc__, rounds=3).parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    model = EGNet(backbone="resnet101", output_stride=8).eval()
    gflop = model_gflop(model)
    frame = render_night_frames(0, 1, width=1024, height=512)[0]
    paths = {"eager bf16": dict(precision="bf16"), "compiled bf16": dict(precision="bf16", compile=True)}
    segmenters = {name: Segmenter(model, device="cpu", **options) for name, options in paths.items()}
    first = {name: timed(functools.partial(s.predict, frame), 1)[0] for name, s in segmenters.items()}  # compiles
    seconds = interleaved({**{name: functools.partial(s.predict, frame) for name, s in segmenters.items()},
                           GEMM: float_gemm("bf16", torch.device("cpu"))}, args.rounds)
    peak = GEMM_OPS / 1e9 / min(seconds[GEMM])
    out = {"threads": torch.get_num_threads(), "model_gflop": gflop, "rounds": args.rounds,
           "bf16_gemm_gflops": [GEMM_OPS / 1e9 / s for s in seconds[GEMM]], "bf16_peak_gflops": peak, "paths": {
               name: {"first_run_s": first[name], "ms": [s * 1e3 for s in seconds[name]],
                      "share_of_peak": gflop / statistics.median(seconds[name]) / peak} for name in paths}}
    text = json.dumps(out, indent=1)
    print(text)
    lines = [f"bf16 GEMM per round: {', '.join(f'{g:.0f}' for g in out['bf16_gemm_gflops'])} GFLOP/s (best {peak:.0f})",
             "", "| path | ms per round | share of the best bf16 GEMM (median) | first run s |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {', '.join(f'{ms:.0f}' for ms in row['ms'])} | {row['share_of_peak']:.2f} | "
              f"{row['first_run_s']:.1f} |" for name, row in out["paths"].items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bf16_r101.json").write_text(text + "\n")
    (args.out / "bf16_r101.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
