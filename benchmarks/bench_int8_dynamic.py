"""What per-pixel activation scales cost an int8 convolution on this CPU, beside bf16 and plain int8 GEMMs: the three
convolutions of an EGNet-ResNet101 OS8 block in segmentation S3 at 1024×512 (128×64 pixels, 1024 → 256 → 256 →
1024 channels, the 3×3 dilated by 2), each timed once a round in rotating order. Random weights and inputs
(speed only); writes int8_dynamic.json and .md into --out.

    python benchmarks/bench_int8_dynamic.py [--out bench-out] [--rounds 10]

Per-pixel int8 (``bench_int8_agreement.py``'s "per-pixel dynamic uint8 activations", which keeps ResNet-101's
labels where a per-tensor range does not) has no fused kernel in torch or oneDNN as torch exposes them: oneDNN's
int8 matmul takes one activation scale per tensor. So it is timed as it can be composed: the rows' largest values
and the uint8 rounding (compiled), oneDNN's uint8 × int8 linear with unit activation scale and fp32 out, then each
row's scale and the bias (compiled); the 3×3 as 9 such products over the shifted input (each pixel keeps one
scale), summed. Beside it: the bf16 convolution (channels-last, oneDNN) and the int8 linear alone on an
already-rounded input (what a fused kernel could approach).
"""

import functools
import json
import statistics

import torch
import torch.nn.functional as F
from bench_args import timing_parser

from egnet_core.deploy.host_memory import keep_freed_memory
from egnet_core.deploy.timing import interleaved

HEIGHT, WIDTH = 64, 128  # segmentation S3 of ResNet-101 OS8 at 1024×512
STREAM, BRANCH, DILATION = 1024, 256, 2
TAPS = [(dy, dx) for dy in (0, DILATION, 2 * DILATION) for dx in (0, DILATION, 2 * DILATION)]


def main() -> None:
    args = timing_parser(__doc__, rounds=10).parse_args()
    keep_freed_memory()  # as a CPU Segmenter's process: outputs reuse freed blocks instead of faulting pages in
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for name, inputs, outputs, kernel in (("conv1 1×1", STREAM, BRANCH, 1), ("conv2 3×3, dilation 2", BRANCH,
                                              BRANCH, 3), ("conv3 1×1", BRANCH, STREAM, 1)):
            rows.append(_convolution(name, inputs, outputs, kernel, args.rounds))
            print(json.dumps(rows[-1]), flush=True)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds,
              "pixels": HEIGHT * WIDTH, "convolutions": rows}
    lines = [f"{HEIGHT}×{WIDTH} pixels, {torch.get_num_threads()} threads, medians of {args.rounds} interleaved "
             "rounds; GOP/s counts the convolution's multiply-adds twice", "",
             "| convolution | bf16 ms | GOP/s | int8 linear alone ms | GOP/s | per-pixel int8 ms | GOP/s | "
             "per-pixel int8 × bf16 time |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ms, rates = row["median_ms"], row["gops"]
        lines.append(f"| {row['convolution']} | {ms['bf16']:.1f} | {rates['bf16']:.0f} | {ms['int8 linear alone']:.1f}"
                     f" | {rates['int8 linear alone']:.0f} | {ms['per-pixel int8']:.1f} | "
                     f"{rates['per-pixel int8']:.0f} | {ms['per-pixel int8'] / ms['bf16']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_dynamic.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "int8_dynamic.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _convolution(name: str, inputs: int, outputs: int, kernel: int, rounds: int) -> dict:
    pixels = HEIGHT * WIDTH
    x = torch.rand(1, inputs, HEIGHT, WIDTH) * 3
    weight = torch.randn(outputs, inputs, kernel, kernel) * 0.05
    padding = DILATION * (kernel // 2)
    x_bf16 = x.bfloat16().contiguous(memory_format=torch.channels_last)
    w_bf16 = weight.bfloat16().contiguous(memory_format=torch.channels_last)
    # The int8 weights of each tap (all of them for a 1×1), prepacked once as a frozen model's are.
    taps = TAPS if kernel == 3 else [(0, 0)]
    w_int8 = torch.randint(-128, 128, (len(taps), outputs, inputs), dtype=torch.int8)
    packed = [torch.ops.onednn.qlinear_prepack(w_int8[t], [pixels, inputs]) for t in range(len(taps))]
    w_scales, w_zeros = torch.rand(outputs) * 1e-3, torch.zeros(outputs, dtype=torch.int32)
    bias = torch.randn(outputs)
    linear = functools.partial(_int8_linear, w_scales=w_scales, w_zeros=w_zeros)
    rounded = torch.randint(0, 256, (pixels, inputs), dtype=torch.uint8)
    pixels_last = x[0].permute(1, 2, 0).contiguous()  # H×W×C, the channels-last frame
    quantize, rescale = torch.compile(_per_pixel_uint8), torch.compile(_rescaled)

    def per_pixel() -> torch.Tensor:
        q, scale = quantize(pixels_last)  # H×W×C uint8, H×W×1
        if kernel == 1:
            return rescale(linear(q.view(pixels, inputs), packed[0]), scale.view(pixels, 1), bias)
        q, scale = (F.pad(t.permute(2, 0, 1), (padding,) * 4).permute(1, 2, 0) for t in (q, scale))
        total = None
        for (dy, dx), weights in zip(taps, packed):
            part = linear(q[dy : dy + HEIGHT, dx : dx + WIDTH].reshape(pixels, inputs), weights)
            part = rescale(part, scale[dy : dy + HEIGHT, dx : dx + WIDTH].reshape(pixels, 1), 0.0)
            total = part if total is None else total + part
        return total + bias

    calls = {"bf16": lambda: F.conv2d(x_bf16, w_bf16, padding=padding, dilation=DILATION),
             "int8 linear alone": lambda: [linear(rounded, weights) for weights in packed],
             "per-pixel int8": per_pixel}
    for call in calls.values():  # compiles, selects kernels
        call()
    seconds = interleaved(calls, rounds)
    gop = 2 * pixels * inputs * kernel * kernel * outputs / 1e9
    medians = {path: statistics.median(times) for path, times in seconds.items()}
    return {"convolution": name, "gop": gop, "median_ms": {path: s * 1e3 for path, s in medians.items()},
            "gops": {path: gop / s for path, s in medians.items()}}


def _int8_linear(q: torch.Tensor, weights, *, w_scales: torch.Tensor, w_zeros: torch.Tensor) -> torch.Tensor:
    """oneDNN's uint8 × int8 linear with activation scale 1 and fp32 out: the row scales come after."""
    return torch.ops.onednn.qlinear_pointwise(q.contiguous(), 1.0, 0, weights, w_scales, w_zeros, None, 1.0, 0,
                                              torch.float32, "none", [], "")


def _per_pixel_uint8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = x.amax(dim=-1, keepdim=True).clamp_min(2**-24) / 255
    return (x / scale).round().to(torch.uint8), scale


def _rescaled(product: torch.Tensor, scale: torch.Tensor, bias) -> torch.Tensor:
    return product * scale + bias


if __name__ == "__main__":
    main()
