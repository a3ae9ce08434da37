"""bf16 networks whose residual stages run in bf16 between fp32 ends.

A ResNet's stages (runs of residual blocks) hold nearly all of its arithmetic; the stem, EGNet's EGLs and the heads
hold under 0.3% of EGNet-ResNet101's FLOPs but decide the labels and the exposure map. ``with_bf16_stages`` runs
each stage in bf16, its residual sums included (oneDNN fuses each into its convolution), and casts its output
back to fp32; every module outside the stages keeps its fp32 weights and computes in fp32.

Measured: on a ResNet-101 OS8 trained for 150 iterations from zero-initialised residual branches, the whole
network in bf16 kept 97.9% of fp32's labels at 1024×512, and so did its blocks in bf16 with an fp32 stream and the
rest in bf16; with the stem, the EGLs and the heads in fp32, 99.8%. It is those modules, not the stream, that bf16
must leave alone. On the bench's trained ResNet-101 guard weights at 1024×512 (2 frames; benchmarks/RESULTS.md,
2026-12-02, fourth session, a Xeon with AMX):

| bf16 layout | labels equal to fp32 | exposure MAD | compiled ms | share of the bf16 GEMM |
|---|---:|---:|---:|---:|
| the whole network | 99.67% | 0.0105 | 581–617 | 0.98–0.99 |
| the blocks, the residual stream in fp32 (the earlier layout) | 99.92% | 0.0089 | 826–869 | 0.69–0.73 |
| the stages, stem, EGLs and heads in fp32 (this one) | 99.91% | 0.0091 | 650 | 0.92 |

The fp32 stream cost a conversion and an fp32 add of every block's output, a quarter of the frame in memory
traffic, and kept no label more.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


def with_bf16_stages(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """``model`` (fp32) changed in place as the module docstring says, its stages in ``dtype``; returned. A stage is
    an ``nn.Sequential`` of torchvision residual blocks; one changed before and placed in fp32 again is changed
    again."""
    for module in model.modules():
        if isinstance(module, nn.Sequential) and len(module) and all(
                isinstance(block, (BasicBlock, Bottleneck)) for block in module):
            module.to(dtype)
            module.__class__ = _Bf16Stage
    return model


class _Bf16Stage(nn.Sequential):
    """A stage run in its weights' precision between fp32 activations (its parameter names unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self[0].conv1.weight.dtype)).float()
