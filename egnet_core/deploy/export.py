"""ONNX export of a checkpoint (EGNet, DeepLabV3 or FCN), for ONNX Runtime and TensorRT (``trtexec --onnx=...``).

The graph takes ``images`` (B×3×H×W float32 RGB in [0, 1]; ImageNet normalisation is inside) and returns
``logits`` (B×C×H×W) and ``exposure`` (B×1×H×W in [0, 1]). BatchNorm is folded into the convolutions first.
A static graph has batch 1 and one input size; a dynamic one takes any batch and any size of at least
32×32. The model config travels in the file's metadata (``egnet_model_config``), so the node, the bag tool
and ``egnet evaluate`` load an ``.onnx`` file by its path alone, as they load a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from egnet_core.config import ModelConfig
from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.extras import require
from egnet_core.model.checkpoint import load_model
from egnet_core.model.egnet import MIN_INPUT_SIZE

log = logging.getLogger(__name__)

OPSET = 18  # supported by ONNX Runtime 1.14+ and TensorRT 8.6+
# torch's exporter writes opset 18 and leaves other opsets to ONNX's version converter, which takes EGNet's graph
# up to any opset the onnx package knows and down to 15, no further (it has no adapter for Shape below 15).
MIN_OPSET = 15
CONFIG_KEY = "egnet_model_config"
PRECISION_KEY = "egnet_precision"  # "int8" in a graph from `egnet export --int8`; absent (fp32) otherwise
ONNX_PRECISIONS = ("fp32", "int8")
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "exposure")


def export_onnx(
    checkpoint: str | os.PathLike, path: str | os.PathLike, *, size: tuple[int, int] = (1024, 512),
    dynamic: bool = False, opset: int = OPSET,
) -> Path:
    """Write the checkpoint's model as ONNX to ``path``; ``size`` (width, height) is the static graph's input
    size and the example the dynamic one is traced with."""
    onnx = require_onnx()
    width, height = size
    if min(size) < MIN_INPUT_SIZE:
        raise ValueError(f"size must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got {width}x{height}")
    opsets = supported_opsets()
    if opset not in opsets:
        raise ValueError(f"opset {opset} cannot be written: use an opset from {opsets[0]} to {opsets[-1]}")
    model = fuse_conv_bn(load_model(checkpoint))
    example = torch.rand(1, 3, height, width)
    shapes = None
    if dynamic:
        shapes = ({0: torch.export.Dim("batch", min=1, max=64), 2: torch.export.Dim("height", min=MIN_INPUT_SIZE),
                   3: torch.export.Dim("width", min=MIN_INPUT_SIZE)},)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved over it once complete and checked: a failed export leaves an earlier
    # file at ``path`` as it was.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        partial = Path(scratch) / path.name
        torch.onnx.export(model, (example,), str(partial), dynamo=True, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_shapes=shapes, opset_version=opset,
                          external_data=False)
        graph = onnx.load(str(partial))
        # Where the version converter fails, the exporter only warns and keeps its own opset.
        written = _default_opset(graph)
        if written != opset:
            raise ValueError(f"opset {opset} cannot be written for this model: ONNX's version converter left it at "
                             f"opset {written}; use opset {written} or another from {opsets[0]} to {opsets[-1]}")
        config = dataclasses.replace(model.config, backbone_weights=None)
        onnx.helper.set_model_props(graph, {CONFIG_KEY: json.dumps(config.to_dict())})
        onnx.save(graph, str(partial))
        os.replace(partial, path)
    log.info("exported %s to %s (opset %d, %s)", checkpoint, path, opset,
             "dynamic batch and size" if dynamic else f"batch 1, {width}x{height}")
    return path


def supported_opsets() -> range:
    """The opsets ``export_onnx`` writes: from ``MIN_OPSET`` to the newest the installed onnx package knows."""
    return range(MIN_OPSET, require_onnx().defs.onnx_opset_version() + 1)


def onnx_opset(path: str | os.PathLike) -> int:
    """The standard (``ai.onnx``) opset a written file declares."""
    return _default_opset(require_onnx().load(str(path), load_external_data=False))


def _default_opset(graph) -> int:
    return next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))


def onnx_model_config(path: str | os.PathLike, metadata: dict[str, str]) -> ModelConfig:
    """The model config an exported file carries; ValueError naming the file when it carries none."""
    if CONFIG_KEY not in metadata:
        raise ValueError(f"ONNX file {str(path)!r} carries no {CONFIG_KEY!r}: export it with `egnet export`")
    try:
        return ModelConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"ONNX file {str(path)!r} carries an invalid model config: {error}") from error


def onnx_precision(path: str | os.PathLike, metadata: dict[str, str]) -> str:
    """``fp32`` or ``int8``: what the exported file says it computes in."""
    precision = metadata.get(PRECISION_KEY, "fp32")
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"ONNX file {str(path)!r} has {PRECISION_KEY}={precision!r}, "
                         f"expected one of {ONNX_PRECISIONS}")
    return precision


def require_onnx():
    # torch's ONNX exporter needs onnxscript beside onnx.
    return require("onnx", "onnxscript", extra="onnx", purpose="ONNX export")
