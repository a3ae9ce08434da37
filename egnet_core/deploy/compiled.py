"""The network through ``torch.compile`` with Inductor's freezing, for inference.

Freezing treats the weights as constants (the Segmenter's network is its own copy and never trains), so Inductor
folds them and, on the CPU, prepacks each convolution's weights once for oneDNN and fuses the ReLU and residual add
that follow it into the convolution (``mkldnn::_convolution_pointwise``; in the Segmenter's bf16 networks the
residual add is fp32, after a cast of the convolution's bf16 output). Without it the compiled graph calls the same
unfused convolutions as eager mode, and the elementwise passes over every feature map are a quarter of a bf16
ResNet-101's time on an AMX CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch._inductor.config  # read by compile_frozen when a graph compiles
from torch import nn

from egnet_core.model.egnet import EGNetOutput


def compile_frozen(module: nn.Module) -> Callable:
    """``module`` through ``torch.compile`` with freezing: called like it; the first call (and the first of each
    new input shape) compiles. The float networks' (``CompiledNetwork``) and the int8 ones' (``int8_pt2e``)."""
    compiled = torch.compile(module, dynamic=False)

    def call(*inputs):
        # Inductor reads `freezing` from its process-wide config when a graph compiles, which happens inside this
        # call; torch.compile's `options` do not reach it. Patched for these calls only, so that other compiled
        # models in the process keep their weights as parameters.
        with torch._inductor.config.patch(freezing=True):
            return compiled(*inputs)

    return call


class CompiledNetwork:
    """Called like the network it wraps; the first call (and the first of each new input shape) compiles."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.config = network.config
        self._compiled = compile_frozen(network)

    def __call__(self, images: torch.Tensor) -> EGNetOutput:
        return self._compiled(images)
