"""bf16 networks whose residual stream stays fp32.

A ResNet carries its features from block to block in a residual stream, to which each block adds its branch. In
bf16 every one of these sums is rounded to 8 significant bits, so a branch much smaller than the stream is partly
lost, and the losses add up over the blocks: on a ResNet-101 OS8 trained for 150 iterations from zero-initialised
residual branches (so still small ones) the whole network in bf16 kept 97.9% of fp32's labels at 1024×512, and so
did its blocks in bf16 with the stream in fp32 and the rest bf16; the blocks' convolutions in bf16 with the
stream, the stem, the EGLs and the heads in fp32 kept 99.8%. On the bench's ResNet-101 guard weights (default
init, 512×256) whole-network bf16 kept 99.59% with an exposure error of 0.0052, this 99.91% and 0.0037
(benchmarks/RESULTS.md, 2026-12-02, AMD EPYC). Compiled, it is about 15% slower than whole-network bf16 there.

``with_float_stream`` makes that network: each torchvision residual block's weights become bf16, the block casts
the stream to bf16 for its convolutions and adds its branch (and its shortcut's projection) to the stream in
fp32; every module outside the blocks keeps its fp32 weights. Nearly all of EGNet's arithmetic is in its blocks
(the stem, the EGLs and the heads are under 0.3% of EGNet-ResNet101's FLOPs), so bf16 keeps its speed; the
torchvision baselines' heads (ASPP: 27% of DeepLabV3-ResNet101's FLOPs, 18% of FCN's) stay fp32 too, so their
bf16 gains less.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


def with_float_stream(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """``model`` (fp32) changed in place as the module docstring says, its blocks in ``dtype``; returned."""
    for module in model.modules():
        for block, float_stream in _FLOAT_STREAM_BLOCKS.items():
            if isinstance(module, block):  # also a block swapped before, then placed in fp32 again
                module.to(dtype)
                module.__class__ = float_stream
    return model


class _FloatStreamBottleneck(Bottleneck):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.to(self.conv1.weight.dtype)
        out = self.relu(self.bn1(self.conv1(low)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out.float() + _shortcut(self, x, low))


class _FloatStreamBasicBlock(BasicBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.to(self.conv1.weight.dtype)
        out = self.relu(self.bn1(self.conv1(low)))
        out = self.bn2(self.conv2(out))
        return self.relu(out.float() + _shortcut(self, x, low))


def _shortcut(block: Bottleneck | BasicBlock, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    return x if block.downsample is None else block.downsample(low).float()


_FLOAT_STREAM_BLOCKS = {Bottleneck: _FloatStreamBottleneck, BasicBlock: _FloatStreamBasicBlock}
