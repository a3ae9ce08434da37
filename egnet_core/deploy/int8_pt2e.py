"""Int8 EGNet for CPUs with AMX or VNNI: PyTorch's PT2E quantization with the x86 Inductor quantizer (torchao),
saved as a ``.pt2`` file that ``Segmenter.from_checkpoint`` loads like a checkpoint. On the first frame Inductor
compiles it, with frozen weights, into oneDNN's int8 convolutions (AMX or VNNI) with their ReLU and residual
additions fused.

Static and per channel: each convolution's weights become int8 per output channel, its input activations uint8
per tensor, their ranges observed on calibration frames one frame at a time (the observers keep only running
statistics, so calibration memory does not grow with the number of frames); ``int8_recipe.py`` holds what is
quantized and what was measured against it. Kept out of int8, measured on trained checkpoints
(benchmarks/RESULTS.md): the two 1×1 heads, which decide the labels, and the stem convolution, whose input is the
normalised image (well under 1% of the FLOPs together), in fp32; with a guard, also the blocks
``int8_selection.py`` finds most sensitive, in the faster of fp32 and bf16. Where the kept blocks run in bf16, so
does the stem (on ResNet-18 at 1024×512 with AMX, 12% faster a frame for 0.03 point of the labels; the guard
judges it with the blocks). The file carries the model config and
``egnet_precision: int8``, as an ``egnet export --int8`` ONNX file does. Its logits come out at the last stage's
resolution (the exposure map at the input's): the Segmenter resizes them with its labels in one compiled pass
(``labels.py``); files written before that gave full-size logits, which the Segmenter takes as they are.
"""

from __future__ import annotations

import dataclasses
import functools
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
from egnet_core.deploy.gptq import gptq_weights
from egnet_core.deploy.int8_recipe import (
    KEPT_PRECISION_KEY,
    OUTPUTS_PREFIX,
    ObservedRanges,
    agreement,
    calibrated,
    check_float_precision,
    export_network,
    exported,
    float_block_precision,
    int8_quantizer,
    with_blocks_in,
)
from egnet_core.deploy.int8_selection import Int8Guard, Selection, Trial, select_float_blocks
from egnet_core.deploy.onnx_runtime import cpu_has_vnni
from egnet_core.deploy.precision_choice import cpu_has_bf16
from egnet_core.extras import require
from egnet_core.model.checkpoint import load_model
from egnet_core.model.egnet import EGNetOutput

log = logging.getLogger(__name__)

PT2_SUFFIX = ".pt2"
FLOAT_MODULES = ("encoder.0", "segmentation_head", "exposure_head")  # left in float (see the module docstring)
STEM = ("encoder.0",)  # of FLOAT_MODULES, what runs in bf16 with the kept blocks when they do
CHECK_FRAMES = 4  # calibration frames the guard compares on (the first ones)
_QUANTIZER = "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer"  # importing it registers Inductor's fusions


@dataclass(frozen=True)
class Int8Model:
    path: Path  # the .pt2 file
    float_modules: tuple[str, ...]  # out of int8: FLOAT_MODULES (fp32) and the blocks kept (selected or asked for)
    kept_precision: str | None  # fp32 or bf16, that of the blocks kept and the stem; None: every block int8
    selection: Selection | None  # the trials that chose them; None when quantized without a guard


def quantize_pt2e(
    checkpoint: str | os.PathLike, path: str | os.PathLike, frames: Sequence[np.ndarray], *, size: tuple[int, int],
    guard: Int8Guard | None = Int8Guard(), keep: Sequence[str] | None = None, float_precision: str = "auto",
    gptq: bool = False,
) -> Int8Model:
    """Write the checkpoint's model quantized to int8 at ``path`` (a ``.pt2`` file), its activation ranges
    calibrated on ``frames`` (H×W×3 uint8 RGB) resized to ``size`` (width, height), the one size it runs at.

    With a ``guard``, the blocks most sensitive to int8 stay out of it until the int8 model keeps the guard's share
    of the float model's labels and its exposure on the calibration frames (``int8_selection.py``); without one,
    every block is int8. ``keep`` names the blocks to keep out instead (``sensitive_blocks``' names), say those an
    earlier export chose; a guard then judges that one choice (``selection.passed``). Kept blocks run in
    ``float_precision``: fp32, bf16, or auto, the faster of the two on this CPU
    (``int8_recipe.float_block_precision``). The selection's trials keep blocks in fp32, so that they share one
    export and one calibration pass (``int8_recipe.ObservedRanges``); where the kept blocks are to run in bf16, the
    chosen ones are judged once more in bf16 and stay in fp32 if bf16 loses what the guard asks. With ``gptq``, the
    int8 convolutions' weights are rounded by GPTQ (``gptq.py``) on the calibration frames, once for every trial."""
    quantizer_module = require_torchao()
    path = Path(path)
    if path.suffix != PT2_SUFFIX:
        raise ValueError(f"the int8 model goes to a {PT2_SUFFIX} file, got {str(path)!r}")
    if len(frames) == 0:
        raise ValueError("quantization needs at least one calibration frame")
    check_float_precision(float_precision)
    if isinstance(keep, str):
        raise ValueError(f"keep names blocks as a sequence of names, got the string {keep!r}")
    model = fuse_conv_bn(load_model(checkpoint))
    config = dataclasses.replace(model.config, backbone_weights=None)
    blocks = sensitive_blocks(model)
    if keep is not None and (unknown := [name for name in keep if name not in blocks]):
        raise ValueError(f"cannot keep {', '.join(map(repr, unknown))} out of int8: not a block of this "
                         f"{config.backbone} network; its blocks are {', '.join(blocks)}")
    from egnet_core.deploy.inference import calibration_input  # the Segmenter loads this module

    # Frames are resized one at a time as they are used: calibration memory does not grow with their number.
    inputs = _Inputs(frames, size, calibration_input)
    example = next(iter(inputs))
    precisions: list[str] = []  # resolved when a block is first kept out of int8: auto times both on this CPU

    def precision() -> str:
        if not precisions:
            precisions.append(float_block_precision(float_precision, model, example))
        return precisions[0]

    with torch.no_grad():
        checks = [(x, model(x)) for x in itertools.islice(inputs, CHECK_FRAMES)] if guard else []

    @functools.cache
    def network() -> torch.fx.GraphModule:  # every trial's with its kept blocks in fp32
        return export_network(model, example)

    @functools.cache
    def weights() -> dict[str, torch.Tensor]:  # the int8 convolutions', by their parameter names in ``network``
        if not gptq:
            return {}
        rounded = gptq_weights(model, quantized_convolutions(model), inputs)
        return {f"{OUTPUTS_PREFIX}{name}.weight": weight for name, weight in rounded.items()}

    ranges = ObservedRanges()  # recorded by the first calibration of ``network``, reused by the next ones
    stem = tuple(name for name in STEM if name in dict(model.named_modules()))  # run with the blocks in bf16
    latest: dict[tuple[tuple[str, ...], str], torch.fx.GraphModule] = {}  # the last trial's model only

    def quantized(float_blocks: tuple[str, ...], kept_in: str = "fp32") -> torch.fx.GraphModule:
        in_bf16 = bool(float_blocks) and kept_in == "bf16"
        key = (float_blocks, "bf16" if in_bf16 else "fp32")
        if key not in latest:
            latest.clear()
            quantizer = int8_quantizer(quantizer_module, FLOAT_MODULES + float_blocks)
            if not in_bf16:
                latest[key] = calibrated(network(), quantizer, inputs, ranges, weights())
            else:  # its own export and calibration: the kept blocks' bf16 outputs are other nodes
                graph = export_network(with_blocks_in(model, float_blocks + stem, "bf16"), example)
                latest[key] = calibrated(graph, quantizer, inputs, weights=weights())
        return latest[key]

    def trial(float_blocks: tuple[str, ...], kept_in: str = "fp32") -> Trial:
        return _compare(quantized(float_blocks, kept_in), checks, float_blocks)

    kept_in = precision() if keep else "fp32"  # that of the blocks kept out of int8, if any
    if guard is None:
        selection = None
    elif keep is not None:  # judged, not chosen
        asked = trial(tuple(keep), kept_in)
        selection = Selection(chosen=asked, trials=(asked,), passed=asked.passes(guard))
    else:
        # Chosen with the kept blocks in fp32, which share one export and its calibration; then judged in bf16
        # where bf16 is the faster, and left in fp32 if bf16 loses what the guard asks.
        selection = select_float_blocks(blocks, trial, guard)
        if selection.chosen.float_blocks and precision() == "bf16":
            judged = trial(selection.chosen.float_blocks, "bf16")
            trials = (*selection.trials, judged)
            if judged.passes(guard) or not selection.passed:
                kept_in, selection = "bf16", Selection(chosen=judged, trials=trials, passed=judged.passes(guard))
            else:
                log.warning("int8 keeps its blocks out of int8 in fp32: in bf16, which runs faster here, it keeps "
                            "only %s", judged.describe())
                selection = dataclasses.replace(selection, trials=trials)
    float_blocks = selection.chosen.float_blocks if selection else tuple(keep or ())
    kept_precision = kept_in if float_blocks else None
    program = exported(quantized(float_blocks, kept_in), example)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved over it once complete: a failure leaves an earlier file as it was.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        partial = Path(scratch) / path.name
        torch.export.save(program, partial, extra_files={CONFIG_KEY: json.dumps(config.to_dict()),
                                                        PRECISION_KEY: "int8",
                                                        KEPT_PRECISION_KEY: kept_precision or "none"})
        os.replace(partial, path)
    described = f"; {selection.chosen.describe()}" if selection else ""
    kept = f" in {kept_precision}" if float_blocks else ""
    log.info("quantized %s to int8 (PT2E, x86 Inductor%s) at %s, calibrated on %d frames at %dx%d%s%s", checkpoint,
             ", weights rounded by GPTQ" if gptq else "", path, len(frames), *size, described, kept)
    return Int8Model(path=path, float_modules=FLOAT_MODULES + float_blocks, kept_precision=kept_precision,
                     selection=selection)


def quantized_convolutions(model: nn.Module) -> tuple[str, ...]:
    """The names of ``model``'s convolutions that an int8 model may quantize: all but those of FLOAT_MODULES."""
    return tuple(name for name, module in model.named_modules()
                 if isinstance(module, nn.Conv2d) and not _is_float_module(name))


def sensitive_blocks(model: nn.Module) -> tuple[str, ...]:
    """The units the selection may keep out of int8: each ResNet block, and each other module holding convolutions
    outside a block (an EGL's attention, say), less the always-float FLOAT_MODULES."""
    blocks: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or _is_float_module(name):
            continue
        parts = name.split(".")
        owners = [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        block = next((o for o in owners if isinstance(model.get_submodule(o), (BasicBlock, Bottleneck))),
                     owners[0] if owners else name)
        if block not in blocks:
            blocks.append(block)
    return tuple(blocks)


def _is_float_module(name: str) -> bool:
    return any(name == f or name.startswith(f"{f}.") for f in FLOAT_MODULES)


def _compare(quantized: torch.fx.GraphModule, checks: list[tuple[torch.Tensor, EGNetOutput]],
             float_blocks: tuple[str, ...]) -> Trial:
    with torch.no_grad():
        labels, exposure = agreement([quantized(x) for x, _ in checks], [reference for _, reference in checks])
    return Trial(float_blocks=float_blocks, agreement=labels, exposure_mad=exposure)


class Int8Network:
    """A ``.pt2`` file from ``quantize_pt2e``, compiled by Inductor on its first call; called like the EGNet it
    replaces, with its logits at the last stage's resolution. It runs on the CPU, one frame at a time, at the size
    it was quantized for."""

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
        extra = {CONFIG_KEY: "", PRECISION_KEY: "", KEPT_PRECISION_KEY: ""}
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
        if extra[KEPT_PRECISION_KEY] == "bf16" and not cpu_has_bf16():
            log.warning("%s keeps some blocks out of int8 in bf16, which this CPU emulates (no AVX-512 BF16 or "
                        "AMX): it may run slower than a file exported here", path)
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
