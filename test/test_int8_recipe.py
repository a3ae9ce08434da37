"""What the PT2E int8 EGNet quantizes (int8_recipe.py): residual sums in uint8 or float, kept blocks in fp32 or
bf16."""

from __future__ import annotations

import copy
import operator

import pytest
import torch
from helpers import tiny_torchvision_model

from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.deploy.gptq import MIN_STEP, int8_steps
from egnet_core.deploy.int8_pt2e import FLOAT_MODULES, quantized_convolutions, require_torchao
from egnet_core.deploy.int8_recipe import (
    OUTPUTS_PREFIX,
    ObservedRanges,
    calibrated,
    export_network,
    float_block_precision,
    int8_quantizer,
    with_blocks_in,
)
from egnet_core.deploy.precision_choice import cpu_has_bf16
from egnet_core.model.egnet import EGNet

# Each test exports and quantizes a network: the slow tier.
pytestmark = pytest.mark.slow

KEPT = ("segmentation_stages.1.0", "guidance.0")  # a ResNet block and an EGL, which takes both streams
CONV = torch.ops.aten.conv2d.default
SUMS = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return fuse_conv_bn(EGNet(backbone="resnet18", output_stride=32).eval())


def _int8(model: torch.nn.Module, float_modules: tuple[str, ...], example: torch.Tensor, *,
          float_sums: bool = False) -> torch.fx.GraphModule:
    quantizer = int8_quantizer(require_torchao(), float_modules, float_sums=float_sums)
    return calibrated(export_network(model, example), quantizer, [example])


def _is_dequantized(node) -> bool:
    return isinstance(node, torch.fx.Node) and "dequantize" in str(node.target)


def test_float_sums_keep_the_residual_sums_and_their_relu_in_float_while_the_convolutions_are_int8(network):
    example = torch.rand(1, 3, 64, 64)
    graph = _int8(network, FLOAT_MODULES, example, float_sums=True).graph
    sums = [node for node in graph.nodes if node.target in SUMS]
    # ResNet-18's blocks: 2 in S1 and 2 per stage and stream; the EGLs' w1·f_s + w2·f_s·W_r add two more.
    assert len(sums) == 2 + 2 * 6 + 2
    assert not [node.name for node in sums if any(_is_dequantized(arg) for arg in node.args)]
    # By default, as the stock x86 quantizer, each block's residual stream enters its sum in uint8 (a dequantize).
    stock = _int8(network, FLOAT_MODULES, example).graph
    assert len([node for node in stock.nodes if node.target in SUMS and any(map(_is_dequantized, node.args))]) == 14
    convolutions = [node for node in graph.nodes if node.target == CONV]
    int8 = [node for node in convolutions if _is_dequantized(node.args[0]) and _is_dequantized(node.args[1])]
    assert len(convolutions) == 39 and len(int8) == 39 - 3  # all but the stem and the two heads


def test_kept_blocks_run_in_bf16_between_fp32_activations_and_out_of_int8(network):
    kept = with_blocks_in(network, KEPT, "bf16")
    assert kept is not network and all(p.dtype == torch.float32 for p in network.parameters())
    in_bf16 = {name for name, p in kept.named_parameters() if p.dtype == torch.bfloat16}
    assert in_bf16 and all(name.startswith(KEPT) for name in in_bf16)
    assert {name.replace(".block.", ".") for name in in_bf16} == {
        name for name, _ in network.named_parameters() if name.startswith(KEPT)}
    example = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        reference, output = network(example), kept(example)
    assert output.logits.dtype == torch.float32 and output.exposure.dtype == torch.float32
    scale = reference.logits.abs().max()
    assert 0 < (output.logits - reference.logits).abs().max() < 0.05 * scale  # bf16's rounding, no more

    quantized = _int8(kept, FLOAT_MODULES + KEPT, example)
    convolutions = [node for node in quantized.graph.nodes if node.target == CONV]

    def weight(node):
        return operator.attrgetter(node.args[1].target)(quantized)

    bf16 = [node for node in convolutions if node.args[1].op == "get_attr" and weight(node).dtype == torch.bfloat16]
    # segmentation S3's first block: conv1, conv2 and its downsample; the EGL: its attention convolution.
    assert len(bf16) == 4 and not [node.name for node in bf16 if _is_dequantized(node.args[0])]
    int8 = [node for node in convolutions if _is_dequantized(node.args[1])]
    assert len(int8) == 39 - 3 - 4


def test_with_blocks_in_fp32_is_the_model_itself(network):
    assert with_blocks_in(network, KEPT, "fp32") is network and with_blocks_in(network, (), "bf16") is network


def test_the_kept_blocks_precision_is_validated_and_auto_is_timed_only_where_bf16_is_native(network):
    example = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="must be one of auto, fp32, bf16, got 'fp16'"):
        float_block_precision("fp16", network, example)
    assert float_block_precision("bf16", network, example) == "bf16"
    assert float_block_precision("fp32", network, example) == "fp32"
    offered = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
    assert float_block_precision("auto", network, example) in offered
    # A torchvision baseline has no EGNet encoder: the whole network is timed instead.
    assert float_block_precision("auto", tiny_torchvision_model(), example) in offered


class _Counted(list):
    """Frames that count how many of them were run."""

    runs = 0

    def __iter__(self):
        for frame in list.__iter__(self):
            type(self).runs += 1
            yield frame


def test_a_trial_reuses_the_ranges_of_the_whole_int8_calibration_and_gets_what_a_full_pass_gets(network):
    torch.manual_seed(1)
    _Counted.runs = 0
    frames = _Counted(torch.rand(1, 3, 64, 64) * (1 + i) / 3 for i in range(3))  # ranges grow frame by frame
    graph = export_network(network, frames[0])
    module = require_torchao()
    ranges = ObservedRanges()
    calibrated(graph, int8_quantizer(module, FLOAT_MODULES), frames, ranges)  # records
    assert _Counted.runs == 3
    kept = int8_quantizer(module, FLOAT_MODULES + KEPT)
    reused = calibrated(graph, kept, frames, ranges)
    assert _Counted.runs == 3 + 1  # the first frame only, for the weights
    full = calibrated(graph, kept, frames)
    assert _Counted.runs == 3 + 1 + 3
    with torch.no_grad():
        for x in frames:
            assert all(torch.equal(a, b) for a, b in zip(reused(x), full(x), strict=True))
    # A network whose observed nodes the ranges lack (its kept block in bf16 is another graph) calibrates in full.
    other = export_network(with_blocks_in(network, KEPT, "bf16"), frames[0])
    before = _Counted.runs
    calibrated(other, kept, frames, ranges)
    assert _Counted.runs - before == 3


def test_observers_shared_by_several_nodes_are_never_given_recorded_ranges():
    """The concat EGL's cat shares one observer between its inputs and output: the group's range is not each
    node's, and the group changes when a block is kept out of int8, so such a trial calibrates in full."""
    torch.manual_seed(0)
    network = fuse_conv_bn(EGNet(backbone="resnet18", output_stride=32, variant="concat").eval())
    _Counted.runs = 0
    frames = _Counted(torch.rand(1, 3, 64, 64) * (1 + i) / 3 for i in range(3))
    graph = export_network(network, frames[0])
    module = require_torchao()
    ranges = ObservedRanges()
    calibrated(graph, int8_quantizer(module, FLOAT_MODULES), frames, ranges)
    kept = int8_quantizer(module, FLOAT_MODULES + ("guidance.0",))
    reused = calibrated(graph, kept, frames, ranges)
    assert _Counted.runs == 3 + 3  # a full pass: the shared observers have no range of their own to take
    full = calibrated(graph, kept, frames)
    with torch.no_grad():
        for x in frames:
            assert all(torch.equal(a, b) for a, b in zip(reused(x), full(x), strict=True))


def _weights_of_convolutions(graph: torch.fx.GraphModule) -> list[torch.Tensor]:
    """Each convolution's weight as the converted graph computes it: the float tensor, or its int8 values
    dequantized."""
    def value(arg):
        return operator.attrgetter(arg.target)(graph) if isinstance(arg, torch.fx.Node) else arg

    weights = []
    for node in graph.graph.nodes:
        if node.target == CONV:
            source = node.args[1]
            weights.append(source.target(*map(value, source.args)) if _is_dequantized(source) else value(source))
    return weights


def test_given_weights_become_the_int8_values_on_the_float_weights_steps_and_float_convolutions_keep_theirs(
        network):
    """What GPTQ's rounded weights go through: the quantizer's steps come from the float weights it observed
    (at least 2⁻¹², its observer's eps, as GPTQ's grid), the int8 values from the weights given; a float
    convolution (the stem) never takes a weight given for it, and every quantized one must be given."""
    network = copy.deepcopy(network)
    name = "encoder.4.0.conv1"
    with torch.no_grad():
        network.get_submodule(name).weight[0] *= 0.01 / network.get_submodule(name).weight[0].abs().max()
    example = torch.rand(1, 3, 64, 64)
    graph = export_network(network, example)
    quantizer = int8_quantizer(require_torchao(), FLOAT_MODULES)
    weight = network.get_submodule(name).weight.detach()
    step = int8_steps(weight.flatten(1)).view(-1, 1, 1, 1)
    assert step[0].item() == MIN_STEP  # a channel of small weights: the eps decides its step
    given = ((weight / step).round() - 1).clamp(-128, 127) * step  # a step under the nearest
    stem = network.encoder[0].weight.detach()
    weights = {f"{OUTPUTS_PREFIX}{conv}.weight": network.get_submodule(conv).weight.detach()
               for conv in quantized_convolutions(network)}  # float weights: the quantizer's own rounding
    weights |= {f"{OUTPUTS_PREFIX}{name}.weight": given, f"{OUTPUTS_PREFIX}encoder.0.weight": torch.zeros_like(stem)}
    converted = _weights_of_convolutions(calibrated(graph, quantizer, [example], weights=weights))
    plain = _weights_of_convolutions(calibrated(graph, quantizer, [example]))
    assert torch.equal(converted[0], stem) and torch.equal(plain[0], stem)
    assert torch.allclose(converted[1], given, atol=1e-7) and not torch.allclose(plain[1], given, atol=1e-7)
    assert ((plain[1] - weight).abs() <= step / 2 + 1e-7).all()  # without: the nearest steps
    assert all(torch.equal(a, b) for a, b in zip(converted[2:], plain[2:], strict=True))
    # The graph given stays as it was.
    assert torch.equal(graph.get_parameter(f"{OUTPUTS_PREFIX}{name}.weight"), weight)
    with pytest.raises(ValueError, match=rf"given for {OUTPUTS_PREFIX}{name}.weight is \(3,\)"):
        calibrated(graph, quantizer, [example], weights=weights | {f"{OUTPUTS_PREFIX}{name}.weight": torch.zeros(3)})
    missing = {key: value for key, value in weights.items() if key != f"{OUTPUTS_PREFIX}{name}.weight"}
    with pytest.raises(ValueError, match=rf"no weight given for {OUTPUTS_PREFIX}{name}.weight, which the quantizer"):
        calibrated(graph, quantizer, [example], weights=missing)
