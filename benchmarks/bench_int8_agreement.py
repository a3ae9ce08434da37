"""What each int8 and bf16 treatment keeps of a trained EGNet's labels and exposure map (issue 15's guard), side by
side on generated night frames that calibration did not see.

    python benchmarks/bench_int8_agreement.py --checkpoint CKPT --out bench-out [--size 512x256]
        [--calibration 4] [--frames 2]

CKPT is a trained EGNet, e.g. the bench's cached guard weights (``egnet bench`` says where they are). Each
variant is compared with the checkpoint's own fp32 model: the share of pixels with equal labels and the mean
absolute difference of the exposure map. Int8 variants are quantized with ``int8_recipe``'s quantizer and judged
on PT2E's reference graph (uint8/int8 rounding in float arithmetic, as oneDNN's kernels round); the stem and the
two heads stay fp32 in all of them, as in the shipped .pt2. Writes OUT/int8_agreement.json and .md.

Variants:
- int8, as shipped: the x86 quantizer as torchao has it (each block's residual sum takes its stream in uint8),
  with every block int8 (what ``egnet export --int8 --out model.pt2`` starts its selection from);
- int8, residual sums in float (``int8_recipe``'s ``float_sums``);
- int8, and the stream-reading convolutions in float: also every convolution whose input is a residual stream
  (each block's first and its downsample) left fp32, so the stream is never rounded to uint8;
- int8, every block, with the weights rounded by GPTQ (``deploy/gptq.py``; ``egnet export --int8 --gptq``);
- int8 weights only: convolution weights rounded to int8 per output channel, activations fp32 (what weight
  rounding alone costs);
- the same after cross-layer equalisation (Nagel et al. 2019) inside each block;
- the same with the exposure stream's weights fp32;
- int8 weights rounded by GPTQ (``deploy/gptq.py``) instead of to nearest, their inputs' second moments measured
  on the calibration frames (activations fp32);
- per-pixel activations: every convolution's input rounded to uint8 (int8 where it has negative values) with a
  scale of its own for each row of the convolution's matrix product (``gptq.convolution_rows``), taken from that
  row's largest value when the frame is run (dynamic): a pixel's channels for a 1×1 convolution, an im2col patch
  for the others; with weights rounded to nearest, and by GPTQ; and with a scale per input pixel instead (one per
  pixel's channels, which a 3×3 convolution's patch mixes: the form ``bench_int8_dynamic.py`` times). These rows
  hold what a per-tensor uint8 range cannot: a few pixels whose activations are 50-100× the typical one
  (benchmarks/RESULTS.md, 2026-12-02, third session).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from egnet_core.cli import parse_size
from egnet_core.data.synthetic import render_night_frames
from egnet_core.deploy.bf16_stages import with_bf16_stages
from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.deploy.gptq import convolution_rows, gptq_weights, nearest_int8
from egnet_core.deploy.inference import calibration_input
from egnet_core.deploy.int8_pt2e import FLOAT_MODULES, quantized_convolutions, require_torchao
from egnet_core.deploy.int8_recipe import OUTPUTS_PREFIX, agreement, calibrated, export_network, int8_quantizer
from egnet_core.model.checkpoint import load_model

CONV = torch.ops.aten.conv2d.default
SUMS = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)
RELUS = (torch.ops.aten.relu.default, torch.ops.aten.relu_.default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=parse_size, default=(512, 256), help="WIDTHxHEIGHT (default: 512x256)")
    parser.add_argument("--calibration", type=int, default=4, help="calibration frames (seed 1)")
    parser.add_argument("--frames", type=int, default=2, help="frames compared (seed 5)")
    args = parser.parse_args()
    width, height = args.size
    model = fuse_conv_bn(load_model(args.checkpoint)).eval()
    calibration = [calibration_input(f, args.size) for f in render_night_frames(1, args.calibration, width=width,
                                                                                 height=height)]
    frames = [calibration_input(f, args.size) for f in render_night_frames(5, args.frames, width=width,
                                                                            height=height)]
    with torch.no_grad():
        reference = [model(x) for x in frames]

    def judged(name: str, run) -> dict:
        start = time.perf_counter()
        with torch.no_grad():
            outputs = [run(x) for x in frames]
        labels, exposure = agreement(outputs, reference)
        row = {"variant": name, "labels_equal": labels, "exposure_mad": exposure,
               "seconds": time.perf_counter() - start}
        print(f"{name}: labels {labels:.4f}, exposure MAD {exposure:.4f}", flush=True)
        return row

    def float_model(network: nn.Module):
        return lambda x: tuple(network(x))

    quantizer_module = require_torchao()
    rows = []
    for name, float_sums, stream_convs in (("int8, every block (shipped recipe)", False, False),
                                           ("int8, residual sums in float", True, False),
                                           ("int8, and the stream-reading convolutions in float", True, True)):
        quantizer = int8_quantizer(quantizer_module, FLOAT_MODULES, float_sums=float_sums)
        if stream_convs:
            quantizer = _stream_convolutions_in_float(quantizer)
        rows.append(judged(name, calibrated(export_network(model, calibration[0]), quantizer, calibration)))
    rounded = gptq_weights(model, quantized_convolutions(model), calibration)
    rows.append(judged("int8, every block, weights rounded by GPTQ", calibrated(
        export_network(model, calibration[0]), int8_quantizer(quantizer_module, FLOAT_MODULES), calibration,
        weights={f"{OUTPUTS_PREFIX}{name}.weight": weight for name, weight in rounded.items()})))
    rows.append(judged("int8 weights only", float_model(_int8_weights(model))))
    rows.append(judged("int8 weights only, after cross-layer equalisation",
                       float_model(_int8_weights(_equalised(model)))))
    if model.exposure_stages is not None:
        rows.append(judged("int8 weights only, exposure stream fp32",
                           float_model(_int8_weights(model, also_float=("exposure_stages",)))))
    gptq = _with_weights(model, rounded)
    rows.append(judged("int8 weights only, rounded by GPTQ", float_model(gptq)))
    rows.append(judged("int8 weights, per-pixel dynamic uint8 activations",
                       float_model(_per_row_activations(_int8_weights(model)))))
    rows.append(judged("int8 weights by GPTQ, per-pixel dynamic uint8 activations",
                       float_model(_per_row_activations(copy.deepcopy(gptq)))))
    rows.append(judged("int8 weights by GPTQ, per-input-pixel dynamic uint8 activations",
                       float_model(_per_row_activations(gptq, rows_of_input=True))))
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    rows.append(judged("bf16", lambda x: tuple(bf16(x.to(torch.bfloat16)))))
    bf16.segmentation_head = _Fp32(copy.deepcopy(model.segmentation_head))
    if model.exposure_head is not None:  # the single-stream variants have none
        bf16.exposure_head = _Fp32(copy.deepcopy(model.exposure_head))
    rows.append(judged("bf16, heads fp32", lambda x: tuple(bf16(x.to(torch.bfloat16)))))
    stream = with_bf16_stages(copy.deepcopy(model))
    rows.append(judged("bf16 stages, stem, EGLs and heads fp32 (the Segmenter's bf16)",
                       lambda x: tuple(stream(x))))

    result = {"date": time.strftime("%Y-%m-%d"), "checkpoint": str(args.checkpoint),
              "backbone": model.config.backbone, "output_stride": model.config.output_stride,
              "size": [width, height], "calibration_frames": args.calibration, "frames": args.frames,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "variants": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_agreement.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"EGNet-{model.config.backbone} OS{model.config.output_stride} ({args.checkpoint}), {width}×{height}, "
             f"calibrated on {args.calibration} generated frames, compared on {args.frames} others", "",
             "| variant | labels equal | exposure MAD |", "|---|---:|---:|"]
    lines += [f"| {r['variant']} | {r['labels_equal']:.2%} | {r['exposure_mad']:.4f} |" for r in rows]
    (args.out / "int8_agreement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _stream_convolutions_in_float(quantizer):
    """``quantizer`` that also leaves unquantized each convolution whose input is a residual stream (a ReLU of a
    sum)."""
    annotate = quantizer.annotate

    def and_streams(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = annotate(model)
        for node in model.graph.nodes:
            source = node.args[0] if node.target == CONV else None
            if source is not None and source.target in RELUS and source.args[0].target in SUMS:
                node.meta.pop("quantization_annotation", None)
        return model

    quantizer.annotate = and_streams
    return quantizer


def _int8_weights(model: nn.Module, also_float: tuple[str, ...] = ()) -> nn.Module:
    """A copy whose convolution weights are rounded to int8 per output channel (symmetric, as the x86 quantizer's
    weight observer does), except under FLOAT_MODULES and ``also_float``."""
    model = copy.deepcopy(model)
    kept = FLOAT_MODULES + also_float
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and not any(name == k or name.startswith(f"{k}.") for k in kept):
                module.weight.copy_(nearest_int8(module.weight))
    return model


def _with_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with the convolutions named in ``weights`` given those weights."""
    model = copy.deepcopy(model)
    for name, weight in weights.items():
        model.get_submodule(name).weight.data = weight
    return model


def _per_row_activations(model: nn.Module, rows_of_input: bool = False) -> nn.Module:
    """``model`` (changed in place) with each quantized convolution's input rounded per row of its matrix product
    (``convolution_rows``: an output pixel's input patch), or with ``rows_of_input`` per input pixel (its channels),
    on every call: uint8 where the input has no negative values, else int8, each row or pixel scaled to its own
    largest magnitude. The two differ for the 3×3 convolutions only."""
    for name in quantized_convolutions(model):
        owner, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner), attribute, _PerRowInt8Input(model.get_submodule(name), rows_of_input))
    return model


class _PerRowInt8Input(nn.Module):
    def __init__(self, conv: nn.Conv2d, rows_of_input: bool) -> None:
        super().__init__()
        self.conv, self.rows_of_input = conv, rows_of_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        levels = 255 if bool((x >= 0).all()) else 127
        if self.rows_of_input:
            scale = x.abs().amax(dim=1, keepdim=True).clamp_min(2**-24) / levels
            return conv((x / scale).round() * scale)
        rows = convolution_rows(conv, x).view(len(x), -1, conv.weight[0].numel())  # B×L×K
        scale = rows.abs().amax(dim=2, keepdim=True).clamp_min(2**-24) / levels
        out = (rows / scale).round() * scale @ conv.weight.flatten(1).T  # B×L×O
        if conv.bias is not None:
            out = out + conv.bias
        height, width = (
            (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
            for size, pad, dilation, kernel, stride in zip(x.shape[-2:], conv.padding, conv.dilation,
                                                           conv.kernel_size, conv.stride))
        return out.transpose(1, 2).reshape(len(x), -1, height, width)


def _equalised(model: nn.Module, rounds: int = 3) -> nn.Module:
    """A copy with each pair of successive convolutions inside a block (a ReLU between them) rescaled per channel
    so that both see the same weight range (cross-layer equalisation); the float outputs are unchanged."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for _ in range(rounds):
            for module in model.modules():
                if isinstance(module, Bottleneck):
                    _equalise(module.conv1, module.conv2)
                    _equalise(module.conv2, module.conv3)
                elif isinstance(module, BasicBlock):
                    _equalise(module.conv1, module.conv2)
    return model


def _equalise(first: nn.Conv2d, second: nn.Conv2d) -> None:
    first_range = first.weight.abs().amax(dim=(1, 2, 3))
    second_range = second.weight.abs().amax(dim=(0, 2, 3))
    scale = (first_range / second_range.clamp_min(1e-12)).sqrt().clamp(1e-3, 1e3)
    first.weight.div_(scale.view(-1, 1, 1, 1))
    first.bias.div_(scale)
    second.weight.mul_(scale.view(1, -1, 1, 1))


class _Fp32(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.float())


if __name__ == "__main__":
    main()
