"""The ResNet backbone, taken from torchvision and dilated to the requested output stride."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from egnet_core.model.weights_file import read_weights_file

# Which of layer2..layer4 trade their stride for dilation, by output stride.
_DILATE = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


def build_resnet(name: str, *, output_stride: int, weights: str | None = None) -> ResNet:
    """A torchvision ResNet at the given output stride, optionally with backbone weights loaded."""
    dilate = _DILATE[output_stride]
    builder = getattr(torchvision.models, name)
    if _block_type(name) is BasicBlock:
        resnet = builder(weights=None)
        _dilate_basic_stages(resnet, dilate)
    else:
        resnet = builder(weights=None, replace_stride_with_dilation=dilate)
    if weights is not None:
        load_backbone_weights(resnet, name, weights)
    return resnet


def load_backbone_weights(module: nn.Module, name: str, weights: str) -> None:
    """Backbone weights of torchvision's ResNet ``name`` into ``module``: a ResNet, or its stages without the
    classifier (the ``IntermediateLayerGetter`` of torchvision's DeepLabV3 and FCN), for which ``fc`` is left out."""
    state = load_backbone_state(name, weights)
    own = module.state_dict()
    if not any(key.startswith("fc.") for key in own):
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    problems = [f"missing {key}" for key in own if key not in state][:2]
    problems += [f"unexpected {key}" for key in state if key not in own][:2]
    problems += [f"{key} is {tuple(state[key].shape)}, expected {tuple(own[key].shape)}"
                 for key in own if key in state and state[key].shape != own[key].shape][:2]
    if problems:
        raise ValueError(f"backbone weights {weights!r} do not fit torchvision's {name}: {'; '.join(problems)}")
    module.load_state_dict(state)


def stage_channels(resnet: ResNet) -> tuple[int, int, int, int]:
    """Output channels of layer1..layer4 (64·e, 128·e, 256·e, 512·e with e the block expansion)."""
    expansion = resnet.fc.in_features // 512
    return tuple(c * expansion for c in (64, 128, 256, 512))


def load_backbone_state(name: str, weights: str) -> dict[str, torch.Tensor]:
    """Backbone weights from a local state-dict file, or a torchvision weights name found in torch's cache.

    Nothing is downloaded: a missing file is an error that says where to put it.
    """
    path = Path(weights).expanduser()
    if path.suffix in {".pth", ".pt", ".bin"} or path.exists():
        return _read_state_dict(path)
    enum = torchvision.models.get_model_weights(name)
    member = weights.rsplit(".", 1)[-1]
    try:
        entry = enum[member]
    except KeyError:
        choices = ", ".join(enum.__members__)
        raise ValueError(
            f"backbone weights {weights!r} are neither a file nor one of {name}'s torchvision weights ({choices})"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    if not cached.is_file():
        raise FileNotFoundError(
            f"backbone weights {enum.__name__}.{member} are not in torch's cache: put the file from {entry.url} "
            f"at {cached} (this machine downloads nothing), or pass a local state-dict path instead"
        )
    return _read_state_dict(cached)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = read_weights_file(path, what="backbone weights file", expected="state dict")
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights file {str(path)!r} holds a {type(state).__name__}, not a state dict")
    if "model_config" in state and "model" in state:
        raise ValueError(f"backbone weights file {str(path)!r} is an egnet checkpoint, not backbone weights (a "
                         "torchvision ResNet state dict); to start from an egnet checkpoint, set run.init_from")
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise ValueError(f"backbone weights file {str(path)!r} holds a dict that is not a state dict "
                         f"(parameter name -> tensor); its keys begin {list(state)[:3]}")
    return state


def _block_type(name: str) -> type:
    return BasicBlock if name in ("resnet18", "resnet34") else torchvision.models.resnet.Bottleneck


def _dilate_basic_stages(resnet: ResNet, dilate: list[bool]) -> None:
    # torchvision's BasicBlock refuses dilation, so these stages are converted after construction, the way
    # torchvision's _make_layer converts Bottleneck stages: the first block keeps the previous dilation.
    dilation = 1
    for stage, replace in zip((resnet.layer2, resnet.layer3, resnet.layer4), dilate):
        if not replace:
            continue
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(stage):
            rate = previous if index == 0 else dilation
            for conv in (block.conv1, block.conv2):
                conv.stride, conv.dilation, conv.padding = (1, 1), (rate, rate), (rate, rate)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)


def widen_input(conv: nn.Conv2d, extra_channels: int) -> nn.Conv2d:
    """``conv`` with ``extra_channels`` more input channels whose weights start at zero."""
    wider = nn.Conv2d(
        conv.in_channels + extra_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, : conv.in_channels] = conv.weight
    return wider
