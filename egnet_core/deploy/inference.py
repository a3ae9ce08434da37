"""The one predictor that the CLI, the evaluator, the bag tool and the ROS node share.

Test-time protocols are options of ``Segmenter``, all served by one path (``Segmenter._logits``):

* the paper's (Section 6): resize the input to 900×900 (``input_size=PAPER_INPUT_SIZE``), predict, and scale the
  prediction back to the label resolution (``output_size`` of ``predict_batch``);
* ``flip``: average with the horizontally flipped image, flipped back;
* ``scales``: multi-scale, each factor applied to the network input size;
* ``sliding_window``: overlapping windows over the (resized) input, averaged where they overlap.

Every view's logits are resized bilinearly to the output size and averaged there; the argmax comes last, so
label ids are never interpolated. Logits rather than softmax probabilities are averaged so that the plain
protocol is exactly the model's own output; the confidence threshold applies to the softmax of the average.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from egnet_core.config import ModelConfig
from egnet_core.data.labels import IGNORE_INDEX, PALETTE_LUT
from egnet_core.deploy.cuda_graphs import CudaGraphNetwork
from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.deploy.onnx_runtime import OnnxNetwork
from egnet_core.model.checkpoint import check_same_architecture, load_model
from egnet_core.model.egnet import MIN_INPUT_SIZE, EGNet, EGNetOutput

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PAPER_INPUT_SIZE = (900, 900)  # (width, height) the paper resizes every test image to


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # H×W uint8 train ids, IGNORE_INDEX where the model is below the confidence threshold
    exposure: np.ndarray  # H×W float32 predicted exposure in [0, 1]
    color: np.ndarray | None = None  # H×W×3 uint8 labels in the Cityscapes palette, when asked for


@dataclass(frozen=True)
class SlidingWindow:
    """Windows of ``size`` (width, height) placed every ``stride`` (width, height) pixels; the last window of a
    row or column is moved back to end at the image border, so every pixel is covered."""

    size: tuple[int, int]
    stride: tuple[int, int]

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < MIN_INPUT_SIZE:
            raise ValueError(
                f"sliding window size must be (width, height), each at least {MIN_INPUT_SIZE}, got {self.size!r}"
            )
        if len(self.stride) != 2 or min(self.stride) < 1:
            raise ValueError(f"sliding window stride must be (width, height), each at least 1, got {self.stride!r}")
        if self.stride[0] > self.size[0] or self.stride[1] > self.size[1]:
            raise ValueError(
                f"a sliding window stride larger than the window leaves gaps: stride {self.stride!r}, size {self.size!r}"
            )


def _as_device(device: torch.device | str) -> torch.device:
    return resolve_device(device) if isinstance(device, str) else device


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (``taskset``, a container's cpuset) where the OS
    has one, else every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_threads(threads: int, *, name: str) -> int:
    """CPU threads for inference, at least 1 and at most the available CPUs: more only contend with each other
    (9999 made a prediction 12 times slower), so they are capped with a warning. ``name``: the option, for the
    messages (``--threads``, ``parameter 'threads'``)."""
    if threads < 1:
        raise ValueError(f"{name} must be at least 1, got {threads}")
    cpus = available_cpus()
    if threads > cpus:
        log.warning("%s is %d, more than the %d CPU(s) this process may use: using %d", name, threads, cpus, cpus)
        return cpus
    return threads


class Segmenter:
    """Runs an EGNet on RGB uint8 frames and returns labels and exposure maps at each frame's own size.

    ``input_size`` (width, height) is the size the network sees (the paper tests at 900×900); ``None`` runs
    at the frame's own size. ``flip``, ``scales`` and ``sliding_window`` select the test-time protocol (see
    the module docstring); the defaults are a single whole-image pass.

    Speed: ``optimize`` (default) folds every BatchNorm into its convolution and keeps feature maps
    channels-last, the same function computed faster; ``precision`` ``bf16`` (CPU with AVX-512 BF16 or AMX,
    or CUDA) or ``fp16`` (CUDA) runs the model in half-width floats. Logits and exposure come back to fp32
    before they are averaged, resized and turned into labels. ``compile`` runs the network through
    ``torch.compile``; ``cuda_graphs`` (CUDA) replays a captured CUDA graph per input shape, and with
    ``compile`` too, torch.compile's own CUDA graphs are used. On CUDA, frames go up as uint8 through a pinned
    buffer and only labels, exposure (and colours) come back. The caller's ``model`` is never changed.
    """

    def __init__(
        self,
        model: EGNet | OnnxNetwork,
        *,
        device: torch.device | str = "cpu",
        input_size: tuple[int, int] | None = None,
        confidence_threshold: float | None = None,
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        sliding_window: SlidingWindow | None = None,
        precision: str = "fp32",
        optimize: bool = True,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        if input_size is not None and (len(input_size) != 2 or min(input_size) < MIN_INPUT_SIZE):
            raise ValueError(f"input_size must be (width, height), each at least {MIN_INPUT_SIZE}, got {input_size!r}")
        if confidence_threshold is not None and not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {confidence_threshold!r}")
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be True or False, got {flip!r}")
        _check_scales(scales, input_size)
        if sliding_window is not None and not isinstance(sliding_window, SlidingWindow):
            raise ValueError(f"sliding_window must be a SlidingWindow or None, got {sliding_window!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        for name, flag in (("optimize", optimize), ("compile", compile), ("cuda_graphs", cuda_graphs)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.device = _as_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"fp16 precision needs a CUDA device, got {str(self.device)!r}; use bf16 on the CPU")
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, got {str(self.device)!r}")
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        if isinstance(model, OnnxNetwork):
            if precision != "fp32" or compile or cuda_graphs:
                raise ValueError("an ONNX model runs as ONNX Runtime built it: precision must be fp32 and compile and "
                                 f"cuda_graphs off, got {precision!r}, compile={compile}, cuda_graphs={cuda_graphs}")
            model.check_input_size(input_size, resizes=tuple(scales) != (1.0,) or sliding_window is not None)
            self.precision = model.precision  # fp32, or int8 from `egnet export --int8`
            self.memory_format = torch.contiguous_format
            self.model = model
        else:
            self.memory_format = torch.channels_last if optimize else torch.contiguous_format
            model = fuse_conv_bn(model) if optimize else copy.deepcopy(model)
            model = model.to(self.device, self.dtype, memory_format=self.memory_format).eval()
            self.model = _accelerated(model, compile=compile, cuda_graphs=cuda_graphs)
        self._staging: dict[tuple[int, ...], torch.Tensor] = {}  # pinned host buffers by batch shape (CUDA)
        self._palette = torch.from_numpy(PALETTE_LUT).to(self.device)
        self.input_size = tuple(input_size) if input_size is not None else None
        self.confidence_threshold = confidence_threshold
        self.flip = flip
        self.scales = tuple(float(scale) for scale in scales)
        self.sliding_window = sliding_window

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, expect: ModelConfig | None = None, **options) -> Segmenter:
        """A checkpoint (``.pt``) run by torch, or an exported ``.onnx`` run by ONNX Runtime. ``expect``: the
        architecture the caller requires; another is refused with the fields that differ."""
        if Path(path).suffix == ".onnx":
            options["device"] = device = _as_device(options.get("device", "cpu"))
            network = OnnxNetwork(path, device=device)
        else:
            network = load_model(path)
        if expect is not None:
            check_same_architecture(network.config, expect, path)
        return cls(network, **options)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def check_frame(self, image: np.ndarray) -> None:
        """Raise ValueError, naming the size, where the network cannot run on this H×W×3 frame as configured."""
        if self.input_size is None and min(image.shape[:2]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"image of width={image.shape[1]} × height={image.shape[0]} is below the network's "
                f"{MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} minimum; set an input size to run the network at a fixed size"
            )

    def predict(
        self, image: np.ndarray, *, output_size: tuple[int, int] | None = None, color: bool = False
    ) -> Segmentation:
        return self.predict_batch([image], output_size=output_size, color=color)[0]

    @torch.inference_mode()
    def predict_batch(
        self, images: Sequence[np.ndarray], *, output_size: tuple[int, int] | None = None, color: bool = False
    ) -> list[Segmentation]:
        """Frames of one size, each H×W×3 uint8 RGB; results at ``output_size`` (width, height), by default
        the frames' own size (NightCity+ labels are twice the size of its images). ``color`` adds the labels
        in the Cityscapes palette, looked up on the device."""
        batch = _stack_frames(images)  # B×H×W×3 uint8
        height, width = batch.shape[1:3]
        output_hw = (height, width) if output_size is None else _check_output_size(output_size)[::-1]
        x = to_network_input(self._upload(batch))  # B×3×H×W
        output = self._logits(x, output_hw)
        labels = output.logits.argmax(dim=1).to(torch.uint8)  # B×h×w
        if self.confidence_threshold is not None:
            labels[output.logits.softmax(dim=1).amax(dim=1) < self.confidence_threshold] = IGNORE_INDEX
        colors = self._palette[labels.long()].cpu().numpy() if color else [None] * len(labels)  # B×h×w×3
        labels_np = labels.cpu().numpy()
        exposure_np = output.exposure.clamp_(0, 1)[:, 0].float().cpu().numpy()  # B×h×w
        return [Segmentation(labels=l, exposure=e, color=c) for l, e, c in zip(labels_np, exposure_np, colors)]

    def _upload(self, batch: np.ndarray) -> torch.Tensor:
        """B×H×W×3 uint8 on the device; on CUDA through a pinned buffer, without blocking the host."""
        frames = torch.from_numpy(batch)
        if self.device.type != "cuda":
            return frames
        if batch.shape not in self._staging:
            self._staging[batch.shape] = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
        # Safe to reuse: the previous call's results were copied back, which waited for its upload.
        staging = self._staging[batch.shape].copy_(frames)
        return staging.to(self.device, non_blocking=True)

    def _logits(self, x: torch.Tensor, output_hw: tuple[int, int]) -> EGNetOutput:
        """B×3×H×W RGB in [0, 1] -> logits and exposure at ``output_hw``, averaged over every scale and flip."""
        base_w, base_h = self.input_size or (x.shape[-1], x.shape[-2])
        logits = exposure = None
        for scale in self.scales:
            scaled = resize(x, (round(base_h * scale), round(base_w * scale)))  # B×3×h_s×w_s
            for flipped in (False, True) if self.flip else (False,):
                view = self._forward(scaled.flip(-1) if flipped else scaled)
                if flipped:
                    view = EGNetOutput(view.logits.flip(-1), view.exposure.flip(-1))
                view_logits, view_exposure = resize(view.logits, output_hw), resize(view.exposure, output_hw)
                logits = view_logits if logits is None else logits.add_(view_logits)
                exposure = view_exposure if exposure is None else exposure.add_(view_exposure)
        views = len(self.scales) * (2 if self.flip else 1)
        return EGNetOutput(logits=logits / views, exposure=exposure / views)

    def _forward(self, x: torch.Tensor) -> EGNetOutput:
        x = x.to(self.dtype, memory_format=self.memory_format)
        if self.sliding_window is None:
            output = self.model(x)
        else:
            output = _forward_windows(self.model, x, self.sliding_window)
        return EGNetOutput(logits=output.logits.float(), exposure=output.exposure.float())


def _accelerated(model: EGNet, *, compile: bool, cuda_graphs: bool):
    if compile:
        return torch.compile(model, mode="reduce-overhead" if cuda_graphs else None, dynamic=False)
    return CudaGraphNetwork(model) if cuda_graphs else model


def _forward_windows(model: EGNet, x: torch.Tensor, window: SlidingWindow) -> EGNetOutput:
    """The model over overlapping windows of B×3×H×W ``x``; outputs summed per pixel, divided by the count."""
    batch, _, height, width = x.shape
    logits = x.new_zeros((batch, model.config.num_classes, height, width))
    exposure = x.new_zeros((batch, 1, height, width))
    count = x.new_zeros((1, 1, height, width))
    (window_w, window_h), (stride_w, stride_h) = window.size, window.stride
    for top in _window_starts(height, window_h, stride_h):
        for left in _window_starts(width, window_w, stride_w):
            rows, columns = slice(top, top + window_h), slice(left, left + window_w)
            output = model(x[:, :, rows, columns])
            logits[:, :, rows, columns] += output.logits
            exposure[:, :, rows, columns] += output.exposure
            count[:, :, rows, columns] += 1
    return EGNetOutput(logits=logits / count, exposure=exposure / count)


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows covering 0..length; a window longer than the image is clipped to it."""
    if length <= window:
        return [0]
    return list(range(0, length - window, stride)) + [length - window]


def _check_scales(scales: Sequence[float], input_size: tuple[int, int] | None) -> None:
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty sequence of positive factors, got {scales!r}")
    for scale in scales:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scales must be positive finite numbers, got {scale!r} in {tuple(scales)!r}")
        if input_size is not None and min(round(side * scale) for side in input_size) < MIN_INPUT_SIZE:
            raise ValueError(
                f"scale {scale!r} shrinks input_size {tuple(input_size)!r} below the model's "
                f"{MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} minimum"
            )


def _check_output_size(output_size: tuple[int, int]) -> tuple[int, int]:
    if (
        len(output_size) != 2
        or not all(isinstance(side, (int, np.integer)) and not isinstance(side, bool) for side in output_size)
        or min(output_size) < 1
    ):
        raise ValueError(f"output_size must be (width, height), two positive integers, got {output_size!r}")
    return int(output_size[0]), int(output_size[1])


def _stack_frames(images: Sequence[np.ndarray]) -> np.ndarray:
    if len(images) == 0:
        raise ValueError("predict_batch needs at least one image")
    shapes = {np.shape(image) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"a batch needs frames of one size, got shapes {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"frames must be H×W×3 RGB, got shape {shape}")
    if any(np.asarray(image).dtype != np.uint8 for image in images):
        raise ValueError(f"frames must be uint8, got {sorted({str(np.asarray(i).dtype) for i in images})}")
    return np.stack(images)


def to_network_input(frames: torch.Tensor) -> torch.Tensor:
    """B×H×W×3 uint8 RGB, on any device -> B×3×H×W float32 in [0, 1], what the network takes."""
    return frames.permute(0, 3, 1, 2).float().div_(255)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×C×H×W bilinearly to ``size`` (height, width), the one resize of network inputs and outputs."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
