"""Post-training int8 quantization of an exported EGNet, for ONNX Runtime on CPUs with VNNI (AVX-512 VNNI or
AVX-VNNI), whose int8 dot products do four times the multiply-adds of an fp32 FMA per instruction.

Static and per channel: each convolution's weights become int8 per output channel, its input activations
uint8 with ranges measured on calibration frames: the deployment's own camera frames or NightCity's training
images, never the frames the model is then judged on. The two 1×1 heads stay in float (they cost under 0.1%
of the FLOPs and decide the labels). The quantized file keeps the exported file's metadata, so the node, the
bag tool and ``egnet evaluate`` load it by its path like any exported model. Quantization changes some labels:
``egnet export`` and ``egnet bench`` measure the agreement with the float model. The file says it is int8
in its metadata (``egnet_precision``), and ONNX Runtime warns when it runs where int8 is slow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from egnet_core.data.folders import IMAGE_SUFFIXES, image_files
from egnet_core.data.imageio import read_rgb
from egnet_core.deploy.export import INPUT_NAME, PRECISION_KEY, require_onnx
from egnet_core.deploy.inference import calibration_input
from egnet_core.deploy.onnx_runtime import OnnxNetwork, require_onnxruntime

log = logging.getLogger(__name__)

FLOAT_WEIGHTS = ("segmentation_head.weight", "exposure_head.weight")  # convolutions left in float
CALIBRATION_FRAMES = 32  # `egnet export --int8`'s default


def quantize_onnx(
    source: str | os.PathLike, path: str | os.PathLike, frames: Sequence[np.ndarray], *, size: tuple[int, int]
) -> Path:
    """Write ``source`` (a float ``egnet export`` graph) quantized to int8 at ``path``, its activation ranges
    calibrated on ``frames`` (H×W×3 uint8 RGB) resized to ``size`` (width, height), the size it will run at."""
    quantization = _require_quantization()
    source, path = Path(source), Path(path)
    if path.resolve() == source.resolve():
        raise ValueError(f"the quantized model must go to another file than its source {str(source)!r}")
    _check_frames(frames)
    OnnxNetwork(source, device=torch.device("cpu")).check_input_size(size, resizes=False)  # loads, fits `size`
    inputs = [calibration_input(frame, size).numpy() for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    # ONNX Runtime advises its pre-processing (shape inference, fusions) on the root logger; an exported EGNet
    # is folded and shape-inferred already, and pre-processing measured neither faster nor closer here.
    advice = _Unless("pre-processing")
    logging.getLogger().addFilter(advice)
    try:
        quantization.quantize_static(
            str(source), str(path), _Frames(inputs), quant_format=quantization.QuantFormat.QDQ,
            # With Relu listed, ONNX Runtime folds each ReLU into its convolution's quantized output, so that
            # output is rounded once, with the range after the ReLU: faster and closer than Conv alone.
            op_types_to_quantize=["Conv", "Relu"], nodes_to_exclude=_float_convolutions(source), per_channel=True,
            activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
        )
    finally:
        logging.getLogger().removeFilter(advice)
    _mark_int8(path)
    log.info("quantized %s to int8 at %s, calibrated on %d frames", source, path, len(frames))
    return path


def calibration_images(folder: str | os.PathLike, count: int) -> list[np.ndarray]:
    """Up to ``count`` images (PNG or JPEG, searched recursively, links to folders followed) from ``folder``, evenly
    spaced in name order, as H×W×3 uint8 RGB."""
    folder = Path(folder)
    if count < 1:
        raise ValueError(f"the number of calibration frames must be at least 1, got {count}")
    if not folder.exists():
        raise FileNotFoundError(f"calibration folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ValueError(f"calibration folder {str(folder)!r} is a file, not a folder of images")
    files = image_files(folder)
    if not files:
        raise ValueError(f"calibration folder {str(folder)!r} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    picked = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    return [read_rgb(files[index]) for index in picked]


class _Unless(logging.Filter):
    """Drops log records that mention ``phrase``."""

    def __init__(self, phrase: str) -> None:
        super().__init__()
        self.phrase = phrase

    def filter(self, record: logging.LogRecord) -> bool:
        return self.phrase not in record.getMessage()


class _Frames:
    """ONNX Runtime's calibration reader: the network inputs one at a time, then None."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self._inputs = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._inputs, None)
        return None if image is None else {INPUT_NAME: image}


def _float_convolutions(source: Path) -> list[str]:
    """Names of the convolution nodes whose weights are in ``FLOAT_WEIGHTS``; ValueError when the
    segmentation head is not among them (a graph that `egnet export` did not write)."""
    onnx = require_onnx()
    graph = onnx.load(str(source), load_external_data=False).graph
    heads = {node.input[1]: node.name for node in graph.node
             if node.op_type == "Conv" and node.input[1] in FLOAT_WEIGHTS}
    if FLOAT_WEIGHTS[0] not in heads:
        raise ValueError(f"ONNX model {str(source)!r} has no convolution with weights {FLOAT_WEIGHTS[0]!r} "
                         "to keep in float; quantize a graph written by `egnet export`")
    return list(heads.values())


def _mark_int8(path: Path) -> None:
    """Record the precision in the file's metadata, beside the model config the quantizer kept."""
    onnx = require_onnx()
    graph = onnx.load(str(path))
    props = {prop.key: prop.value for prop in graph.metadata_props} | {PRECISION_KEY: "int8"}
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(path))


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    if len(frames) == 0:
        raise ValueError("quantization needs at least one calibration frame")
    for index, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"calibration frame {index} must be H×W×3 uint8 RGB, got {frame.dtype} {frame.shape}")


def _require_quantization():
    require_onnxruntime()
    from onnxruntime import quantization

    return quantization
