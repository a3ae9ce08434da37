"""Int8 EGNet for CPUs with AMX or VNNI: PyTorch's PT2E quantization with the x86 Inductor quantizer (torchao),
saved as a ``.pt2`` file that ``Segmenter.from_checkpoint`` loads like a checkpoint. On the first frame Inductor
compiles it, with frozen weights, into oneDNN's int8 convolutions (AMX or VNNI) with their ReLU and residual
additions fused.

Static and per channel: each convolution's weights become int8 per output channel, its input activations uint8
per tensor, their ranges observed on calibration frames one frame at a time (the observers keep only running
statistics, so calibration memory does not grow with the number of frames). Kept in float, measured on trained
checkpoints (benchmarks/RESULTS.md): the two 1×1 heads, which decide the labels, and the stem convolution, whose
input is the normalised image (well under 1% of the FLOPs together); with a guard, also the blocks
``int8_selection.py`` finds most sensitive. The file carries the model config and ``egnet_precision: int8``, as an
``egnet export --int8`` ONNX file does.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from egnet_core.config import ModelConfig
from egnet_core.deploy.compiled import compile_frozen
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.export import CONFIG_KEY, PRECISION_KEY
from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.deploy.int8_selection import Int8Guard, Selection, Trial, select_float_blocks
from egnet_core.deploy.onnx_runtime import cpu_has_vnni
from egnet_core.extras import require
from egnet_core.model.checkpoint import load_model
from egnet_core.model.egnet import EGNetOutput

log = logging.getLogger(__name__)

PT2_SUFFIX = ".pt2"
FLOAT_MODULES = ("encoder.0", "segmentation_head", "exposure_head")  # left in float (see the module docstring)
CHECK_FRAMES = 4  # calibration frames the guard compares on (the first ones)
_QUANTIZER = "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer"  # importing it registers Inductor's fusions


@dataclass(frozen=True)
class Int8Model:
    path: Path  # the .pt2 file
    float_modules: tuple[str, ...]  # left in float: FLOAT_MODULES and the blocks the selection kept
    selection: Selection | None  # the trials that chose them; None when quantized without a guard


def quantize_pt2e(
    checkpoint: str | os.PathLike, path: str | os.PathLike, frames: Sequence[np.ndarray], *, size: tuple[int, int],
    guard: Int8Guard | None = Int8Guard(),
) -> Int8Model:
    """Write the checkpoint's model quantized to int8 at ``path`` (a ``.pt2`` file), its activation ranges
    calibrated on ``frames`` (H×W×3 uint8 RGB) resized to ``size`` (width, height), the one size it runs at.

    With a ``guard``, the blocks most sensitive to int8 stay in float until the int8 model keeps the guard's share
    of the float model's labels and its exposure on the calibration frames (``int8_selection.py``); without one,
    every block is int8."""
    quantizer_module = require_torchao()
    path = Path(path)
    if path.suffix != PT2_SUFFIX:
        raise ValueError(f"the int8 model goes to a {PT2_SUFFIX} file, got {str(path)!r}")
    if len(frames) == 0:
        raise ValueError("quantization needs at least one calibration frame")
    model = fuse_conv_bn(load_model(checkpoint))
    config = dataclasses.replace(model.config, backbone_weights=None)
    from egnet_core.deploy.inference import calibration_input  # the Segmenter loads this module

    # Frames are resized one at a time as they are used: calibration memory does not grow with their number.
    inputs = _Inputs(frames, size, calibration_input)
    example = next(iter(inputs))
    with torch.no_grad():
        # Strict export names each call of a module apart: torchvision's blocks call one nn.ReLU two or three
        # times, and the quantizer refuses a ReLU grouped with several outputs.
        exported = torch.export.export(_Outputs(model), (example,), strict=True).module()
        checks = [(x, model(x)) for x in itertools.islice(inputs, CHECK_FRAMES)] if guard else []
    latest: dict[tuple[str, ...], torch.fx.GraphModule] = {}  # the last trial's model only

    def trial(float_blocks: tuple[str, ...]) -> Trial:
        latest.clear()
        latest[float_blocks] = _quantized(exported, quantizer_module, FLOAT_MODULES + float_blocks, inputs)
        return _compare(latest[float_blocks], checks, float_blocks)

    selection = None if guard is None else select_float_blocks(sensitive_blocks(model), trial, guard)
    float_blocks = selection.chosen.float_blocks if selection else ()
    if float_blocks in latest:
        quantized = latest[float_blocks]
    else:
        quantized = _quantized(exported, quantizer_module, FLOAT_MODULES + float_blocks, inputs)
    with torch.no_grad():
        program = torch.export.export(quantized, (example,), strict=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved over it once complete: a failure leaves an earlier file as it was.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        partial = Path(scratch) / path.name
        torch.export.save(program, partial, extra_files={CONFIG_KEY: json.dumps(config.to_dict()),
                                                        PRECISION_KEY: "int8"})
        os.replace(partial, path)
    log.info("quantized %s to int8 (PT2E, x86 Inductor) at %s, calibrated on %d frames at %dx%d%s", checkpoint,
             path, len(frames), *size, f"; {selection.chosen.describe()}" if selection else "")
    return Int8Model(path=path, float_modules=FLOAT_MODULES + float_blocks, selection=selection)


def sensitive_blocks(model: nn.Module) -> tuple[str, ...]:
    """The units the selection keeps in float: each ResNet block, and each other module holding convolutions
    outside a block (an EGL's attention, say), less the always-float FLOAT_MODULES."""
    blocks: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or any(name == f or name.startswith(f"{f}.") for f in FLOAT_MODULES):
            continue
        parts = name.split(".")
        owners = [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        block = next((o for o in owners if isinstance(model.get_submodule(o), (BasicBlock, Bottleneck))),
                     owners[0] if owners else name)
        if block not in blocks:
            blocks.append(block)
    return tuple(blocks)


def _quantized(exported: torch.fx.GraphModule, quantizer_module, float_modules: tuple[str, ...],
               inputs: _Inputs) -> torch.fx.GraphModule:
    """``exported`` (left as it is) with every convolution but those under ``float_modules`` int8, calibrated on
    ``inputs`` one at a time."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = quantizer_module.X86InductorQuantizer().set_global(_min_max_config(quantizer_module))
    for name in float_modules:
        quantizer.set_module_name_qconfig(f"model.{name}", None)
    with torch.no_grad():
        prepared = prepare_pt2e(copy.deepcopy(exported), quantizer)
        for x in inputs:
            prepared(x)
        return convert_pt2e(prepared)


def _compare(quantized: torch.fx.GraphModule, checks: list[tuple[torch.Tensor, EGNetOutput]],
             float_blocks: tuple[str, ...]) -> Trial:
    agreement, mad = [], []
    with torch.no_grad():
        for x, reference in checks:
            logits, exposure = quantized(x)
            agreement.append((logits.argmax(1) == reference.logits.argmax(1)).float().mean().item())
            mad.append((exposure - reference.exposure).abs().mean().item())
    return Trial(float_blocks=float_blocks, agreement=float(np.mean(agreement)), exposure_mad=float(np.mean(mad)))


def _min_max_config(quantizer_module):
    """The x86 quantizer's default (int8 weights per channel, uint8 activations per tensor) with activation ranges
    from their minimum and maximum: on trained EGNets it kept more labels and exposure than the default's
    histogram (L2-optimal clipping), and calibrates several times faster."""
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    default = quantizer_module.get_default_x86_inductor_quantization_config()
    activation = QuantizationSpec(
        dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine, is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return QuantizationConfig(activation, None, default.weight, default.bias, is_qat=False)


class Int8Network:
    """A ``.pt2`` file from ``quantize_pt2e``, compiled by Inductor on its first call; called like the EGNet it
    replaces. It runs on the CPU, one frame at a time, at the size it was quantized for."""

    precision = "int8"
    fixed_batch = 1

    def __init__(self, path: str | os.PathLike, *, device: torch.device) -> None:
        require_torchao()
        path = Path(path)
        if device.type != "cpu":
            raise ValueError(f"{str(path)!r} is an int8 model for CPUs (oneDNN), not for {str(device)!r}; run it "
                             "with device cpu, or the .pt checkpoint on the GPU")
        if not path.is_file():
            raise FileNotFoundError(f"int8 model {str(path)!r} does not exist")
        extra = {CONFIG_KEY: "", PRECISION_KEY: ""}
        try:
            program = torch.export.load(path, extra_files=extra)
        except (zipfile.BadZipFile, RuntimeError, KeyError, ValueError, EOFError) as error:
            raise ValueError(f"int8 model {str(path)!r} cannot be loaded ({error}); write it again with "
                             "`egnet export --int8`") from error
        self.path = path
        self.config = _model_config(path, extra)
        if extra[PRECISION_KEY] != "int8":
            raise ValueError(f"{str(path)!r} has {PRECISION_KEY}={extra[PRECISION_KEY]!r}, not 'int8': it was not "
                             "written by `egnet export --int8`")
        height, width = program.example_inputs[0][0].shape[-2:]
        self.fixed_size = (int(width), int(height))
        if not cpu_has_vnni():
            log.warning("%s is an int8 model, but this CPU has no VNNI (AVX-512 VNNI or AVX-VNNI): it may run "
                        "slower than fp32", path)
        self._network = compile_frozen(program.module())

    def check_input_size(self, input_size: tuple[int, int] | None, *, resizes: bool) -> None:
        """The network runs at its own size only: the Segmenter must resize every frame to it, and no protocol
        (other scales, sliding windows) may give it another."""
        width, height = self.fixed_size
        if tuple(input_size or ()) != self.fixed_size:
            raise ValueError(f"int8 model {str(self.path)!r} runs at {width}x{height} only; set the input size to "
                             f"{width}x{height} (got {input_size!r}) or quantize it again at the size you need")
        if resizes:
            raise ValueError(f"int8 model {str(self.path)!r} runs at {width}x{height} only: multi-scale and "
                             "sliding-window protocols need the .pt checkpoint")

    def __call__(self, images: torch.Tensor) -> EGNetOutput:
        """B×3×H×W float32 RGB in [0, 1] -> logits and exposure, frame by frame."""
        images = images.float().contiguous()
        try:
            # Frozen, the int8 weights are constants that Inductor packs once for oneDNN when the first frame compiles.
            outputs = [self._network(images[i : i + 1]) for i in range(len(images))]
        except RuntimeError as error:  # torch's and oneDNN's kernel errors
            raise InferenceError(f"the int8 model failed on a {tuple(images.shape)} batch: {error}") from error
        if len(outputs) == 1:
            return EGNetOutput(*outputs[0])
        logits, exposure = (torch.cat(parts) for parts in zip(*outputs))
        return EGNetOutput(logits=logits, exposure=exposure)


class _Inputs:
    """Calibration frames as network inputs, resized one at a time each time they are iterated."""

    def __init__(self, frames: Sequence[np.ndarray], size: tuple[int, int], to_input) -> None:
        self.frames, self.size, self.to_input = frames, size, to_input

    def __iter__(self):
        return (self.to_input(frame, self.size) for frame in self.frames)


class _Outputs(nn.Module):
    """The network with a plain (logits, exposure) tuple out: a saved program cannot name EGNet's NamedTuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(images)
        return output.logits, output.exposure


def _model_config(path: Path, extra: dict[str, str]) -> ModelConfig:
    if not extra[CONFIG_KEY]:
        raise ValueError(f"{str(path)!r} carries no {CONFIG_KEY!r}: write it with `egnet export --int8`")
    try:
        return ModelConfig.from_dict(json.loads(extra[CONFIG_KEY]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{str(path)!r} carries an invalid model config: {error}") from error


def require_torchao():
    """torchao's x86 Inductor quantizer module; importing it registers the int8 fusions Inductor needs."""
    return require(_QUANTIZER, extra="int8", purpose="int8 models (.pt2)")
