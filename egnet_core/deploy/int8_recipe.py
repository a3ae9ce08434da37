"""What the PT2E int8 EGNet quantizes, and in which precision it keeps the rest (``int8_pt2e.py`` runs the flow).

- **Convolutions**: int8 weights per output channel, uint8 inputs per tensor with ranges from their minimum and
  maximum (x86 Inductor quantizer, torchao).
- **Residual sums as the x86 quantizer fuses them**: each block's last convolution adds the residual stream in
  uint8, which oneDNN fuses into the int8 convolution. On trained EGNets that stream is heavy-tailed (in
  ResNet-101's segmentation S3 the median is under 1 and the maximum over 400, so one uint8 step is larger than
  half the values), and ``float_sums`` leaves the sums in float instead, but it was measured not worth shipping
  (benchmarks/RESULTS.md, 2026-12-01, second session): ResNet-101 with every block int8 kept 86.0% of the labels
  instead of 55.6% at 1024×512, still far from the guard, and ran 2.3× slower (2005 against 861 ms); ResNet-18
  kept 0.04 point more and ran 10% slower.
- **Blocks kept out of int8** (the selection's, ``int8_selection.py``) run in the faster of fp32 and bf16 on the
  CPU that exports, timed on the network's first stage (``float_block_precision``); bf16 is tried only where the
  CPU computes it natively (AVX-512 BF16 or AMX). The .pt2 records the precision (``KEPT_PRECISION_KEY``), and
  its loader warns on a CPU that would emulate bf16. On ResNet-18 at 1024×512 with AMX, three kept blocks cost
  43 ms in fp32 and 7.5 ms in bf16 over the 75.6 ms of the all-int8 network, with the same labels.
"""

from __future__ import annotations

import collections
import copy
import itertools
import logging
import statistics
import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from egnet_core.deploy.labels import label_map
from egnet_core.deploy.options import PRECISIONS
from egnet_core.deploy.precision_choice import cpu_has_bf16
from egnet_core.deploy.timing import timed

log = logging.getLogger(__name__)

FLOAT_PRECISIONS = ("auto", "fp32", "bf16")  # float_block_precision's choices
KEPT_PRECISION_KEY = "egnet_int8_kept_precision"  # in a .pt2's extra files: fp32 or bf16, or none kept
TIMED_RUNS = 3  # per precision, after one untimed run, when auto measures
OUTPUTS_PREFIX = "model."  # of the EGNet's parameter names in an ``export_network`` graph (``_Outputs.model``)
_SUMS = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)
_ANNOTATION = "quantization_annotation"  # where PT2E quantizers mark a node (torchao's Q_ANNOTATION_KEY)


def export_network(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """An EGNet as the quantizer takes it: exported at ``example``'s shape, with a plain (logits, exposure) out, the
    logits at its last stage's resolution (the Segmenter resizes them with its labels, ``labels.py``)."""
    if hasattr(model, "logits_at_input_size") and model.logits_at_input_size:
        model = copy.copy(model)  # a shallow copy, its own flag: the caller's model keeps its outputs
        model.logits_at_input_size = False
    return exported(_Outputs(model), example).module()


def exported(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``module`` exported at ``example``'s shape, without autograd (what a .pt2 saves)."""
    with torch.no_grad():
        # Strict export names each call of a module apart: torchvision's blocks call one nn.ReLU two or three
        # times, and the quantizer refuses a ReLU grouped with several outputs.
        return torch.export.export(module, (example,), strict=True)


def int8_quantizer(quantizer_module, float_modules: tuple[str, ...], *, float_sums: bool = False):
    """The x86 Inductor quantizer for an exported EGNet (``export_network``): min-max ranges, nothing under
    ``float_modules`` (module names of the EGNet) quantized, and with ``float_sums`` the residual sums in float
    (see the module docstring)."""

    class EGNetQuantizer(quantizer_module.X86InductorQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            for node in model.graph.nodes if float_sums else ():
                if node.target in _SUMS and node.meta.pop(_ANNOTATION, None) is not None:
                    for user in node.users:  # the ReLU after the sum, marked as the fused pattern's output
                        user.meta.pop(_ANNOTATION, None)
            return model

    quantizer = EGNetQuantizer().set_global(_min_max_config(quantizer_module))
    for name in float_modules:
        quantizer.set_module_name_qconfig(f"model.{name}", None)
    return quantizer


def calibrated(network: torch.fx.GraphModule, quantizer, inputs: Iterable[torch.Tensor],
               ranges: ObservedRanges | None = None, weights: Mapping[str, torch.Tensor] | None = None,
               ) -> torch.fx.GraphModule:
    """``network`` (an ``export_network`` graph, left as it is) quantized by ``quantizer``, its ranges observed on
    ``inputs`` one at a time: the PT2E reference graph, which ``exported`` saves and Inductor compiles.

    With ``ranges`` (of this same ``network`` and ``inputs``), a calibration records its activation ranges there,
    and a later one that observes no node they lack takes them and runs only the first input (for the weights):
    the same ranges as a full pass, since min-max ranges are the union of the frames'.

    ``weights`` (parameter name in ``network``, e.g. ``model.encoder.4.0.conv1.weight`` -> tensor) replace the
    float weights of the convolutions the quantizer quantizes once their observers have seen the float ones, so
    that the int8 steps are those of the float weights and the values those given (``gptq.gptq_rounded``'s, on
    that grid). They must name every weight the quantizer quantizes (ValueError naming those missing); those of
    convolutions left in float are never replaced."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with torch.no_grad(), warnings.catch_warnings():
        # The x86 quantizer says so for every maxpool after a float stem, which EGNet's always is.
        warnings.filterwarnings("ignore", message="The input of maxpool2d is not quantized")
        prepared = prepare_pt2e(copy.deepcopy(network), quantizer)
        reused = ranges is not None and ranges.load(prepared)
        for x in itertools.islice(inputs, 1) if reused else inputs:
            prepared(x)
        if ranges is not None and not reused:
            ranges.record(prepared)
        _replace_observed_weights(prepared, weights or {})
        return convert_pt2e(prepared)


def _replace_observed_weights(prepared: torch.fx.GraphModule, weights: Mapping[str, torch.Tensor]) -> None:
    """Each convolution weight an observer watches (it is to be quantized) set to its value in ``weights``."""
    if not weights:
        return
    observed = [node.target for node in prepared.graph.nodes if _is_observed_weight(prepared, node)]
    if missing := [name for name in observed if name not in weights]:
        raise ValueError(f"no weight given for {', '.join(missing)}, which the quantizer quantizes")
    for name in observed:
        parameter, replacement = prepared.get_parameter(name), weights[name]
        if replacement.shape != parameter.shape:
            raise ValueError(f"the weight given for {name} is {tuple(replacement.shape)}, the network's is "
                             f"{tuple(parameter.shape)}")
        parameter.data = replacement.to(parameter.dtype)


def _is_observed_weight(prepared: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    """Whether ``node`` reads a convolution's weight (a 4-D parameter) that an observer watches."""
    if node.op != "get_attr":
        return False
    try:
        parameter = prepared.get_parameter(node.target)
    except AttributeError:  # a buffer or a constant, not a parameter
        return False
    return parameter.ndim == 4 and any(
        user.op == "call_module" and hasattr(prepared.get_submodule(user.target), "min_val") for user in node.users)


class ObservedRanges:
    """The activation ranges one calibration observed, keyed by the node of the exported network each observer
    watched. The selection's trials quantize one export with different blocks kept out of int8: each node a trial
    observes was observed by the trial with every block int8, over the same frames, so its range is already known."""

    def __init__(self) -> None:
        self._ranges: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(self, prepared: torch.fx.GraphModule) -> None:
        for node, observer in _activation_observers(prepared):
            if node is not None:
                self._ranges[node] = (observer.min_val.clone(), observer.max_val.clone())

    def load(self, prepared: torch.fx.GraphModule) -> bool:
        """Whether every activation observer of ``prepared`` took its recorded range (else none is touched)."""
        observers = list(_activation_observers(prepared))
        if not self._ranges or any(node not in self._ranges for node, _ in observers):
            return False
        for node, observer in observers:
            observer(torch.stack(self._ranges[node]))  # a running min-max takes the union with what it sees
        return True


def _activation_observers(prepared: torch.fx.GraphModule):
    """(observed node's name, observer) for each observer of an activation; the name is None where the observer
    keeps no plain running min-max of that node alone (it cannot be given that node's range): another kind of
    observer, or one the quantizer shares between several nodes (a cat's or a pool's inputs and output), whose
    range is the group's and the group differs from trial to trial."""
    from torchao.quantization.pt2e import MinMaxObserver

    calls = [node for node in prepared.graph.nodes
             if node.op == "call_module" and node.args and node.args[0].op != "get_attr"]
    # A shared observer is one instance, under one name or several.
    uses = collections.Counter(id(prepared.get_submodule(node.target)) for node in calls)
    for node in calls:
        observer = prepared.get_submodule(node.target)
        if hasattr(observer, "min_val"):
            alone = type(observer) is MinMaxObserver and uses[id(observer)] == 1
            yield (node.args[0].name if alone else None), observer


def agreement(outputs: Iterable[tuple[torch.Tensor, torch.Tensor]], references: Iterable) -> tuple[float, float]:
    """What ``outputs`` ((logits, exposure) pairs, any float dtype, the logits at the input's size or the last
    stage's) keep of ``references`` (the fp32 model's EGNetOutputs, in the same order): the share of pixels with
    equal labels (as the Segmenter takes them, ``labels.label_map``) and the mean absolute difference of the
    exposure map, each averaged over the frames."""
    labels, exposure = [], []
    for (logits, exposure_map), reference in zip(outputs, references, strict=True):
        size = tuple(reference.logits.shape[-2:])
        same = label_map(logits, size, size) == label_map(reference.logits, size, size)
        labels.append(same.float().mean().item())
        exposure.append((exposure_map.float() - reference.exposure).abs().mean().item())
    return statistics.mean(labels), statistics.mean(exposure)


def check_float_precision(precision: str) -> str:
    """``precision`` if it names a precision for the blocks kept out of int8, else ValueError naming it."""
    if precision not in FLOAT_PRECISIONS:
        raise ValueError(f"the precision of the blocks kept out of int8 must be one of {', '.join(FLOAT_PRECISIONS)}, "
                         f"got {precision!r}")
    return precision


def float_block_precision(precision: str, model: nn.Module, example: torch.Tensor) -> str:
    """``precision`` (auto, fp32 or bf16) for the blocks kept out of int8, auto resolved on this CPU: fp32 where
    bf16 is not native, else whichever of the two runs the network's first stage (EGNet's ``encoder``, the largest
    activations; the whole network for others) faster at ``example``'s size, channels-last."""
    if check_float_precision(precision) != "auto":
        return precision
    if not cpu_has_bf16():
        return "fp32"
    stage = getattr(model, "encoder", model)
    channels = stage[0].in_channels if stage is not model else example.shape[1]
    images = torch.rand(example.shape[0], channels, *example.shape[-2:])  # what the stage takes
    seconds = {name: _seconds(stage, images, PRECISIONS[name]) for name in ("fp32", "bf16")}
    log.info("blocks kept out of int8 run in the faster of fp32 (%.1f ms) and bf16 (%.1f ms) on this CPU",
             *(1e3 * seconds[name] for name in ("fp32", "bf16")))
    return min(seconds, key=seconds.get)


def with_blocks_in(model: nn.Module, blocks: tuple[str, ...], precision: str) -> nn.Module:
    """``model`` itself when ``blocks`` stay in fp32; otherwise a copy with each of ``blocks`` (module names) run in
    ``precision``, its input cast to it and its output back to fp32."""
    dtype = PRECISIONS[precision]
    if dtype == torch.float32 or not blocks:
        return model
    model = copy.deepcopy(model)
    for name in blocks:
        owner, _, attribute = name.rpartition(".")
        parent = model.get_submodule(owner)
        setattr(parent, attribute, _InPrecision(getattr(parent, attribute), dtype))
    return model


class _InPrecision(nn.Module):
    """A block (or an EGL, which takes both streams) run in ``dtype`` between fp32 activations."""

    def __init__(self, block: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.block, self.dtype = block.to(dtype), dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.block(*(x.to(self.dtype) for x in inputs)).float()


class _Outputs(nn.Module):
    """The network with a plain (logits, exposure) tuple out: a saved program cannot name EGNet's NamedTuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(images)
        return output.logits, output.exposure


def _seconds(stage: nn.Module, images: torch.Tensor, dtype: torch.dtype) -> float:
    # Channels-last, as Inductor lays out the frozen graph's convolutions: contiguous bf16 convolutions ran
    # slower than fp32 here, channels-last ones 2.4–3.4× faster (ResNet-18's S1 at 1024×512, AMX).
    stage = copy.deepcopy(stage).to(dtype, memory_format=torch.channels_last)
    x = images.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # the untimed first run selects kernels and reorders weights
        return statistics.median(timed(lambda: stage(x), TIMED_RUNS, warm_up=True))


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
