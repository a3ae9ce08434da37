"""Conv + BatchNorm folding for inference: each BatchNorm2d that directly follows a Conv2d becomes part of it.

In eval mode a BatchNorm is an affine map per channel, so it folds into the preceding convolution's weights
and bias (torch's ``fuse_conv_bn_eval``); the network computes the same function with one pass less over
every feature map. Only the patterns torchvision's ResNet uses are folded: ``convK``/``bnK`` pairs of a block,
and a Conv2d followed by a BatchNorm2d inside a Sequential (the stem, the downsample branches).
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model``, in eval mode, with every foldable BatchNorm folded; ``model`` itself is unchanged."""
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        for conv_name, bn_name in _pairs(module):
            setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), getattr(module, bn_name)))
            setattr(module, bn_name, nn.Identity())
    return fused


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names of (Conv2d, BatchNorm2d) children where the BatchNorm takes the convolution's output directly."""
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        candidates = list(zip(names, names[1:]))
    else:  # torchvision's BasicBlock and Bottleneck: out = bnK(convK(x))
        candidates = [(f"conv{k}", f"bn{k}") for k in (1, 2, 3)]
    return [
        (conv, bn) for conv, bn in candidates
        if isinstance(children.get(conv), nn.Conv2d) and isinstance(children.get(bn), nn.BatchNorm2d)
    ]
