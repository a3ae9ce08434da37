"""GPTQ's int8 rounding of convolution weights (deploy/gptq.py): on the x86 quantizer's grid, exactly round-to-
nearest where a layer's inputs are uncorrelated, and a smaller output error than it where they are not."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from egnet_core.deploy.gptq import (
    INT8_LEVELS,
    MIN_STEP,
    convolution_rows,
    gptq_rounded,
    gptq_weights,
    input_moments,
    nearest_int8,
)


def test_nearest_int8_is_what_torchs_per_channel_weight_observer_and_fake_quantizer_make():
    """The oracle is torch's own: the observer the x86 quantizer gives weights (per channel, symmetric, qint8,
    eps 2⁻¹²) and the fake quantizer on its scales, over ordinary and tiny channels."""
    torch.manual_seed(7)
    weight = torch.randn(6, 5, 3, 3)
    weight[2] *= 1e-4  # a channel whose step is the observer's eps
    observer = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, eps=MIN_STEP)
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    expected = torch.fake_quantize_per_channel_affine(weight, scale.float(), zero_point.int(), 0, -128, 127)
    assert torch.equal(scale[2], torch.tensor(MIN_STEP, dtype=scale.dtype))
    assert torch.allclose(nearest_int8(weight), expected, atol=1e-7, rtol=0)
    assert nearest_int8(weight.double()).dtype == torch.float64


@pytest.mark.parametrize("conv", [
    nn.Conv2d(6, 5, 1),  # a bottleneck's 1×1
    nn.Conv2d(6, 5, 3, padding=2, dilation=2),  # a dilated 3×3 of output stride 8
    nn.Conv2d(6, 5, 1, stride=2),  # a downsample
    nn.Conv2d(6, 5, 3, stride=2, padding=1, bias=False),
], ids=["1x1", "3x3-dilated", "1x1-stride-2", "3x3-stride-2"])
def test_convolution_rows_times_the_weight_columns_is_the_convolution(conv):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 11)
    expected = conv(x)
    rows = convolution_rows(conv, x)  # (B·L)×K
    product = rows @ conv.weight.flatten(1).T + (conv.bias if conv.bias is not None else 0)
    height, width = expected.shape[-2:]
    assert rows.shape == (2 * height * width, conv.weight[0].numel())
    assert torch.allclose(product.view(2, height, width, 5).permute(0, 3, 1, 2), expected, atol=1e-5)


def test_grouped_convolutions_are_refused_by_name():
    with pytest.raises(ValueError, match="groups=2"):
        convolution_rows(nn.Conv2d(4, 4, 3, groups=2), torch.rand(1, 4, 5, 5))


def test_the_rounded_weights_lie_on_the_per_channel_int8_grid_of_the_float_weights():
    torch.manual_seed(1)
    weight = torch.randn(8, 4, 3, 3)
    x = torch.randn(500, 36) @ torch.randn(36, 36)  # correlated inputs: GPTQ moves weights off their nearest steps
    rounded = gptq_rounded(weight, x.T @ x / len(x))
    assert rounded.shape == weight.shape and rounded.dtype == weight.dtype
    steps = (rounded / (weight.abs().amax(dim=(1, 2, 3), keepdim=True) / INT8_LEVELS)).double()
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert steps.min() >= -128 and steps.max() <= 127
    assert not torch.equal(rounded, nearest_int8(weight))


def test_a_channel_of_small_weights_takes_the_quantizers_smallest_step():
    """The x86 quantizer's weight observer never makes a step under its eps (2⁻¹²): GPTQ rounds onto the same."""
    torch.manual_seed(6)
    weight = torch.randn(3, 8, 1, 1)
    weight[1] *= 1e-3 / weight[1].abs().max()  # 1e-3 / 127.5 would be a step under 2⁻¹²
    x = torch.randn(200, 8) @ torch.randn(8, 8)
    rounded = gptq_rounded(weight, x.T @ x / len(x))
    steps = rounded[1] / MIN_STEP
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 8


def test_uncorrelated_inputs_make_gptq_round_to_nearest():
    """With H diagonal, no column's error has anywhere to go: GPTQ is round-to-nearest."""
    torch.manual_seed(2)
    weight = torch.randn(8, 16, 1, 1)
    moment = torch.diag(torch.rand(16) + 0.5)
    rounded, nearest = gptq_rounded(weight, moment), nearest_int8(weight)
    # Each channel's largest weight lies half way between two steps (±127.5): either is the nearest.
    ties = weight.abs() == weight.abs().amax(dim=(1, 2, 3), keepdim=True)
    step = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / INT8_LEVELS
    assert torch.allclose(rounded[~ties], nearest[~ties], atol=1e-6)
    apart = ((rounded - nearest) / step)[ties]  # in steps
    assert torch.allclose(apart, apart.round(), atol=1e-4) and apart.abs().max() <= 1 + 1e-4


def test_correlated_inputs_lose_less_through_gptq_than_through_rounding_to_nearest():
    torch.manual_seed(3)
    weight = torch.randn(32, 64, 1, 1)
    x = torch.relu(torch.randn(4096, 16) @ torch.randn(16, 64))  # post-ReLU inputs that share a few directions
    moment = x.T @ x / len(x)

    def error(rounded: torch.Tensor) -> float:
        return ((x @ (weight - rounded).flatten(1).T) ** 2).mean().item()

    # Measured here: about a fifth of round-to-nearest's squared error.
    assert error(gptq_rounded(weight, moment)) < 0.5 * error(nearest_int8(weight))


def test_a_moment_of_the_wrong_size_is_refused_with_both_sizes():
    with pytest.raises(ValueError, match=r"36 input columns needs a 36² second moment, got \(16, 16\)"):
        gptq_rounded(torch.randn(4, 4, 3, 3), torch.eye(16))


def test_input_moments_average_each_convolutions_rows_over_the_frames():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    frames = [torch.rand(1, 3, 6, 7) for _ in range(3)]
    moments = input_moments(model, {"0": model[0], "2": model[2]}, frames)
    with torch.no_grad():
        rows = torch.cat([convolution_rows(model[2], model[1](model[0](x))) for x in frames])
    assert torch.allclose(moments["2"], rows.T @ rows / len(rows), atol=1e-5)
    assert moments["0"].shape == (27, 27)
    assert not model[0]._forward_pre_hooks and not model[2]._forward_pre_hooks  # the hooks are gone


class _OneBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.relu, self.unused = nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.used(x))


def test_convolutions_off_the_path_and_modules_that_are_no_convolutions_are_named():
    model = _OneBranch()
    with pytest.raises(ValueError, match="saw no input for unused"):
        gptq_weights(model, ["used", "unused"], [torch.rand(1, 3, 4, 4)])
    with pytest.raises(ValueError, match="saw no input for used"):
        gptq_weights(model, ["used"], [])
    with pytest.raises(ValueError, match="relu is not one"):
        gptq_weights(model, ["relu"], [torch.rand(1, 3, 4, 4)])


def test_gptq_weights_bring_a_network_closer_to_its_float_outputs_than_rounding_to_nearest():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                          nn.ReLU(), nn.Conv2d(16, 8, 1)).eval()
    frames = [F.avg_pool2d(torch.rand(1, 3, 24, 24), 3, 1, 1) for _ in range(4)]  # smooth: neighbours correlate
    rounded = gptq_weights(model, ["2", "4"], frames)
    nearest = {name: nearest_int8(model.get_submodule(name).weight.detach()) for name in rounded}
    test = F.avg_pool2d(torch.rand(1, 3, 24, 24), 3, 1, 1)  # a frame the moments did not see

    def error(weights: dict[str, torch.Tensor]) -> float:
        network = copy.deepcopy(model)
        for name, weight in weights.items():
            network.get_submodule(name).weight.data = weight
        with torch.no_grad():
            return ((network(test) - model(test)) ** 2).mean().item()

    assert error(rounded) < error(nearest)
