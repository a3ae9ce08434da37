"""ONNX Runtime as the Segmenter's network: an exported EGNet (``egnet export``) run by ONNX Runtime instead of
torch, for CPU-only vehicles and edge boxes. It is called like the EGNet module it replaces."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from egnet_core.config import ModelConfig
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.export import CONFIG_KEY, INPUT_NAME, OUTPUT_NAMES, onnx_model_config, onnx_precision
from egnet_core.deploy.options import cpu_flags
from egnet_core.extras import require
from egnet_core.model.egnet import EGNetOutput

log = logging.getLogger(__name__)


class OnnxNetwork:
    """An exported EGNet in an ONNX Runtime session on ``device`` (the CPU, or CUDA with onnxruntime-gpu)."""

    def __init__(self, path: str | os.PathLike, *, device: torch.device, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist")
        provider = "CPUExecutionProvider" if device.type == "cpu" else "CUDAExecutionProvider"
        if provider not in ort.get_available_providers():
            raise ValueError(f"ONNX Runtime here has no {provider} for device {str(device)!r} (it has "
                             f"{ort.get_available_providers()}); install onnxruntime-gpu or use device cpu")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        provider_options = [{"device_id": device.index or 0}] if device.type == "cuda" else [{}]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=[provider],
                                                provider_options=provider_options)
        except Exception as error:  # ONNX Runtime raises its own exception types for a bad file
            raise ValueError(f"ONNX model {str(path)!r} cannot be loaded by ONNX Runtime: {error}") from error
        # ONNX Runtime falls back to the CPU when the CUDA provider cannot start: refuse that rather than run
        # somewhere else than the device asked for.
        if self.session.get_providers()[0] != provider:
            raise ValueError(f"ONNX Runtime could not start {provider} for {str(device)!r} (it runs on "
                             f"{self.session.get_providers()}); check the CUDA and cuDNN libraries or use device cpu")
        self.session.disable_fallback()
        self.path = path
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.config = onnx_model_config(path, metadata)
        _check_outputs(path, self.session, self.config)
        self.precision = onnx_precision(path, metadata)
        if self.precision == "int8":
            _warn_about_int8(path, device)
        batch, _, height, width = self.session.get_inputs()[0].shape
        # Dynamic axes come back as names (str), fixed ones as ints.
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.fixed_size = (width, height) if isinstance(width, int) and isinstance(height, int) else None

    def check_input_size(self, input_size: tuple[int, int] | None, *, resizes: bool) -> None:
        """A static graph runs at its own size only: the Segmenter must resize every frame to it, and no
        protocol (other scales, sliding windows) may give it another."""
        if self.fixed_size is None:
            return
        width, height = self.fixed_size
        if tuple(input_size or ()) != self.fixed_size:
            raise ValueError(
                f"ONNX model {str(self.path)!r} has a static input of {width}x{height}; set the input size to "
                f"{width}x{height} (got {input_size!r}) or export it with --dynamic"
            )
        if resizes:
            raise ValueError(f"ONNX model {str(self.path)!r} has a static input of {width}x{height}: multi-scale "
                             "and sliding-window protocols need a graph exported with --dynamic")

    def __call__(self, images: torch.Tensor) -> EGNetOutput:
        """B×3×H×W float32 RGB in [0, 1] -> logits and exposure, on the images' device."""
        batch = images.detach().float().cpu().numpy()
        chunks = [batch[i : i + 1] for i in range(len(batch))] if self.fixed_batch == 1 else [batch]
        try:
            outputs = [self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(chunk)})
                       for chunk in chunks]
        except Exception as error:  # ONNX Runtime's own exception types derive from Exception only
            # Typed as torch's device errors become: the node counts the frame as failed and goes on.
            raise InferenceError(f"ONNX Runtime failed on a {tuple(images.shape)} batch: {error}") from error
        logits, exposure = (np.concatenate(parts) for parts in zip(*outputs))
        return EGNetOutput(logits=torch.from_numpy(logits).to(images.device),
                           exposure=torch.from_numpy(exposure).to(images.device))


def _check_outputs(path: Path, session, config: ModelConfig) -> None:
    """The graph's outputs against the metadata's config: the evaluator and sliding windows size their buffers by
    the config, so a file whose metadata lies would fail there, far from the cause."""
    shapes = {output.name: output.shape for output in session.get_outputs()}
    missing = [name for name in OUTPUT_NAMES if name not in shapes]
    if missing:
        raise ValueError(f"ONNX model {str(path)!r} has no output(s) {missing} (it has {list(shapes)}): "
                         "export it with `egnet export`")
    # Dynamic axes come back as names (str) or None, fixed ones as ints; egnet export fixes the channel axes.
    classes, exposure = (shapes[name][1] if len(shapes[name]) == 4 else None for name in OUTPUT_NAMES)
    for name, found, what in (("logits", classes, "classes"), ("exposure", exposure, "channels")):
        if not isinstance(found, int):
            raise ValueError(f"ONNX model {str(path)!r}: its {name!r} output has no fixed number of {what} "
                             f"({found!r}); export it with `egnet export`")
    if classes != config.num_classes:
        raise ValueError(f"ONNX model {str(path)!r} says {config.num_classes} classes in its metadata "
                         f"({CONFIG_KEY!r}), but its graph's 'logits' output has {classes}: export it again with "
                         "`egnet export`")
    if exposure != 1:
        raise ValueError(f"ONNX model {str(path)!r}: its 'exposure' output has {exposure} channels, not 1; "
                         "export it with `egnet export`")


def _warn_about_int8(path: Path, device: torch.device) -> None:
    if device.type == "cuda":
        log.warning("%s is an int8 graph for CPUs: on CUDA it runs slower than fp32; build a TensorRT engine "
                    "from the fp32 export for GPUs", path)
    elif not cpu_has_vnni():
        log.warning("%s is an int8 graph, but this CPU has no VNNI (AVX-512 VNNI or AVX-VNNI): it may run "
                    "slower than the fp32 export and lose accuracy to saturated sums", path)


def cpu_has_vnni() -> bool:
    """Whether the CPU has int8 dot-product instructions (read from /proc/cpuinfo; False where it is missing)."""
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


def require_onnxruntime():
    return require("onnxruntime", extra="onnx", purpose="running an .onnx model",
                   hint=" (or onnxruntime-gpu for CUDA)")
