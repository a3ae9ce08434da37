"""Int8 convolution weights rounded by GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", ICLR 2023) rather than to nearest, on the grid the x86 quantizer gives them.

Rounding each weight to its nearest int8 step makes every output channel's error the sum of its K independent
roundings. GPTQ rounds a layer's K input columns one at a time and moves each column's rounding error onto the
columns not yet rounded, through the inverse of the layer's input second moments H = E[x xᵀ] (x: a row of the
convolution's matrix product, an im2col patch) measured on calibration frames, so that the errors cancel on the
inputs the layer sees. The grid is unchanged: symmetric per output channel, step = the channel's largest magnitude
over 127.5 but at least 2⁻¹², values -128..127, as the x86 quantizer's weight observer (PerChannelMinMaxObserver,
qint8, eps 2⁻¹²) computes it from the float weights; so the rounded weights, given to the quantizer in place of the
float ones after it has observed those, are exactly its int8 values.

Measured on the bench's trained EGNets (benchmarks/RESULTS.md, 2026-12-02, third session): with fp32
activations, ResNet-101 OS8 keeps 99.93% of the float model's labels and moves the exposure map by 0.0038, where
rounding to nearest keeps 99.66% and moves it by 0.0103; in the int8 .pt2 (``int8_pt2e``'s ``gptq``), ResNet-18
OS16 with every block int8 keeps 99.56% and 0.0082 instead of 99.47% and 0.0091.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

INT8_LEVELS = 127.5  # a symmetric int8 channel's largest magnitude over its step, as torch's observers take it
MIN_STEP = 2**-12  # the smallest step: the x86 quantizer's weight observer's eps (torchao's X86InductorQuantizer)
BLOCK = 128  # columns rounded between two updates of the rest (the paper's lazy batch)
DAMPING = 0.01  # of H's mean diagonal, added to its diagonal: H can be singular (ReLU inputs that never fire)


def convolution_rows(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``x`` (B×C×H×W) as the rows of ``conv``'s matrix product, (B·L)×K: each output pixel's input patch, its
    entries in the order of ``conv.weight.flatten(1)``'s columns."""
    if conv.groups != 1:
        raise ValueError(f"GPTQ rounds dense convolutions only, got one with groups={conv.groups}")
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0):
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    patches = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def input_moments(model: nn.Module, convolutions: Mapping[str, nn.Conv2d], inputs: Iterable[torch.Tensor],
                  ) -> dict[str, torch.Tensor]:
    """E[x xᵀ] (K×K, float32) of each of ``convolutions``' (modules of ``model``, by name) input rows over ``model``
    run on ``inputs`` one at a time: memory holds the matrices and one frame's activations, whatever the number of
    frames."""
    sums = {name: torch.zeros(conv.weight[0].numel(), conv.weight[0].numel()) for name, conv in convolutions.items()}
    counts = dict.fromkeys(convolutions, 0)

    def observe(name: str, conv: nn.Conv2d, args: tuple[torch.Tensor, ...]) -> None:
        rows = convolution_rows(conv, args[0].float())
        sums[name].addmm_(rows.T, rows)
        counts[name] += len(rows)

    hooks = [conv.register_forward_pre_hook(lambda conv, args, name=name: observe(name, conv, args))
             for name, conv in convolutions.items()]
    try:
        with torch.no_grad():
            for x in inputs:
                model(x)
    finally:
        for hook in hooks:
            hook.remove()
    if unseen := [name for name, count in counts.items() if count == 0]:
        raise ValueError(f"GPTQ saw no input for {', '.join(unseen)}: no calibration frame, or not on the path")
    return {name: total / counts[name] for name, total in sums.items()}


def gptq_rounded(weight: torch.Tensor, moment: torch.Tensor, *, block: int = BLOCK, damping: float = DAMPING,
                 ) -> torch.Tensor:
    """``weight`` (O×…, its K = numel / O columns in ``flatten(1)`` order) rounded onto its symmetric per-output-
    channel int8 grid (the module docstring's) by GPTQ, given its input rows' K×K second ``moment``; same shape and
    dtype, every value (an integer from -128 to 127) × its channel's step."""
    columns = weight.detach().flatten(1).to(torch.float64, copy=True)  # never the caller's tensor
    if moment.shape != (columns.shape[1],) * 2:
        raise ValueError(f"a weight with {columns.shape[1]} input columns needs a {columns.shape[1]}² second moment, "
                         f"got {tuple(moment.shape)}")
    step = int8_steps(columns)
    moment = moment.double().clone()
    dead = moment.diagonal() == 0  # an input that is always zero: its column's error costs nothing
    moment[dead, dead] = 1.0  # (dead columns, rounded to nearest, then pass no error on)
    moment.diagonal().add_(damping * moment.diagonal().mean())
    # The upper Cholesky factor of H⁻¹: its row i spreads column i's error over columns i.. (the paper's Alg. 1).
    factor = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(moment)), upper=True)
    rounded = torch.empty_like(columns)
    for start in range(0, columns.shape[1], block):
        end = min(start + block, columns.shape[1])
        part, local = columns[:, start:end].clone(), factor[start:end, start:end]
        errors = torch.empty_like(part)
        for i in range(end - start):
            rounded[:, start + i] = _on_grid(part[:, i : i + 1], step).squeeze(1)
            errors[:, i] = (part[:, i] - rounded[:, start + i]) / local[i, i]
            part[:, i:] -= errors[:, i : i + 1] * local[i : i + 1, i:]
        columns[:, end:] -= errors @ factor[start:end, end:]
    return rounded.view_as(weight).to(weight.dtype)


def gptq_weights(model: nn.Module, names: Iterable[str], inputs: Iterable[torch.Tensor],
                 ) -> dict[str, torch.Tensor]:
    """The GPTQ-rounded weight of each convolution of ``model`` named in ``names``, keyed by name, its second
    moments measured on ``inputs`` (network inputs, run one at a time)."""
    convolutions = {name: model.get_submodule(name) for name in names}
    if wrong := [name for name, module in convolutions.items() if not isinstance(module, nn.Conv2d)]:
        raise ValueError(f"GPTQ rounds convolutions; {', '.join(wrong)} is not one")
    moments = input_moments(model, convolutions, inputs)
    return {name: gptq_rounded(conv.weight, moments.pop(name)) for name, conv in convolutions.items()}


def int8_steps(columns: torch.Tensor) -> torch.Tensor:
    """Each row's int8 step (O×1) of ``columns`` (O×K: a weight's ``flatten(1)``), as the module docstring's grid
    takes it from the float weights."""
    return (columns.abs().amax(dim=1, keepdim=True) / INT8_LEVELS).clamp_min(MIN_STEP)


def nearest_int8(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (O×…) rounded to the nearest value of its per-output-channel int8 grid (the module docstring's):
    what the x86 quantizer's int8 weights are, given back in ``weight``'s dtype."""
    columns = weight.detach().flatten(1)
    return _on_grid(columns, int8_steps(columns)).view_as(weight)


def _on_grid(columns: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    return (columns / step).round().clamp(-128, 127) * step
