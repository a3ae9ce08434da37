"""The one predictor that the CLI, the evaluator, the bag tool and the ROS node share.

Test-time protocols are options of ``Segmenter``, all served by one path (``Segmenter._logits``):

* the paper's (Section 6): resize the input to 900×900 (``input_size=PAPER_INPUT_SIZE``), predict, and scale the
  prediction back to the label resolution (``output_size`` of ``predict_batch``);
* ``flip``: average with the horizontally flipped image, flipped back;
* ``scales``: multi-scale, each factor applied to the network input size;
* ``sliding_window``: overlapping windows over the (resized) input, averaged where they overlap.

Every view's logits are resized bilinearly to the output size and averaged there; the argmax comes last, so
label ids are never interpolated. On the plain protocol, the compiled CPU paths and int8 files take the network's
logits at its last stage's resolution and resize them and take the labels in one compiled pass (``labels.py``),
as the network and the eager path would have resized them. Logits rather than softmax probabilities are averaged
so that the plain protocol is exactly the model's own output; the confidence threshold applies to the softmax of
the average.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egnet_core.config import ModelConfig
from egnet_core.data.labels import IGNORE_INDEX, PALETTE_LUT
from egnet_core.deploy.bf16_stages import with_bf16_stages
from egnet_core.deploy.compiled import CompiledNetwork
from egnet_core.deploy.cuda_graphs import CudaGraphNetwork
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.fusion import fuse_conv_bn
from egnet_core.deploy.host_memory import keep_freed_memory
from egnet_core.deploy.int8_pt2e import PT2_SUFFIX, Int8Network
from egnet_core.deploy.labels import LabelMaps, resize
from egnet_core.deploy.onnx_runtime import OnnxNetwork
from egnet_core.deploy.options import (
    AUTO_PRECISION,
    PRECISIONS,
    InferenceOptions,
    SlidingWindow,
    available_cpus,
    resolve_threads,
)
from egnet_core.deploy.precision_choice import PrecisionChoice, choose_precision
from egnet_core.model.checkpoint import check_same_architecture, load_model
from egnet_core.model.egnet import MIN_INPUT_SIZE, EGNet, EGNetOutput
from egnet_core.model.networks import Network

log = logging.getLogger(__name__)

PAPER_INPUT_SIZE = (900, 900)  # (width, height) the paper resizes every test image to
WARM_UP_SIZE = (1024, 512)  # (width, height) of a warm-up frame at native size: NightCity's resolution
_FILE_NETWORKS = (OnnxNetwork, Int8Network)  # networks built from an exported file, which run as they were built


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # H×W uint8 train ids, IGNORE_INDEX where the model is below the confidence threshold
    # H×W float32 exposure in [0, 1]: predicted by the exposure stream, or, for a network without one (DeepLabV3,
    # FCN, EGNet's single-stream variants), the frame's measured exposure (V of HSV), the map the stream predicts
    exposure: np.ndarray
    color: np.ndarray | None = None  # H×W×3 uint8 labels in the Cityscapes palette, when asked for
    confidence: np.ndarray | None = None  # H×W float32 top softmax probability in [0, 1], when asked for


@dataclass(frozen=True)
class AttentionMaps:
    """W_r of EGNet's two Exposure Guidance Layers (Eq. 1; the paper's Figure 9), each H×W float32 in [0, 1]."""

    stage2: np.ndarray  # the EGL after stage 2
    stage3: np.ndarray  # the EGL after stage 3


class Segmenter:
    """Runs an EGNet (or DeepLabV3, FCN) on RGB uint8 frames and returns labels and exposure maps at each frame's
    own size.

    ``input_size`` (width, height) is the size the network sees (the paper tests at 900×900); ``None`` runs
    at the frame's own size. ``flip``, ``scales`` and ``sliding_window`` select the test-time protocol (see
    the module docstring); the defaults are a single whole-image pass.

    Speed: ``optimize`` (default) folds every BatchNorm into its convolution and keeps feature maps channels-last,
    the same function computed faster; ``precision`` ``bf16`` (CPU with AVX-512 BF16 or AMX, or CUDA) runs the
    ResNet stages (their residual sums included) in bf16 and keeps the stem, the EGLs and the heads in fp32
    (``bf16_stages.py``), ``fp16`` (CUDA) runs the whole model in fp16. Logits and exposure come back to fp32
    before they are averaged, resized and turned into labels. ``precision`` ``auto`` times the precisions the device
    offers at start-up (``warm_up``, else the first batch) and keeps the fastest whose labels and exposure agree
    with fp32's (``precision_choice`` says what was measured; ``precision`` becomes the one kept). ``compile`` runs
    the network through ``torch.compile`` with freezing (the first call compiles: a minute or more for a ResNet-101
    on a CPU); ``cuda_graphs`` (CUDA) replays a captured CUDA graph per input shape, and with ``compile`` too,
    torch.compile's own CUDA graphs are used. On CUDA, frames go up as uint8 through a pinned buffer and only
    labels, exposure (and colours) come back. The caller's ``model`` is never changed.

    ``attention_maps`` returns an EGNet's EGL attention maps W_r (the paper's Figure 9) for frames.
    """

    def __init__(self, model: Network | OnnxNetwork | Int8Network, options: InferenceOptions | None = None,
                 **keywords) -> None:
        """``options``, or its fields as keywords (``Segmenter(model, input_size=(900, 900))``), or both: the
        keywords then replace those fields. The options were validated when they were made."""
        options = _options(options, keywords)
        self.options = options
        self.device = options.device
        self.threads = _apply_threads(options)
        if self.device.type == "cpu":  # process-wide, as the threads: frames reuse the heap (host_memory.py)
            keep_freed_memory()
        self.precision = options.precision
        self.dtype = PRECISIONS.get(options.precision, torch.float32)  # auto: fp32 until it has chosen
        self.precision_choice: PrecisionChoice | None = None
        self._fp32: Network | None = None  # precision auto builds each path it tries from this, until it has chosen
        self._trial_eager: dict[torch.dtype, Network] = {}  # each tried path's network before compile/CUDA graphs
        # The plain protocol on a compiled CPU path or an int8 file: the network's logits stay at its last stage's
        # resolution and one compiled pass resizes them and takes the labels (labels.py).
        plain = not options.resizes and not options.flip
        compiled_cpu = options.device.type == "cpu" and (options.compile or isinstance(model, Int8Network))
        self._labels = LabelMaps(compiled=plain and compiled_cpu)
        if isinstance(model, _FILE_NETWORKS):
            if options.precision not in ("fp32", AUTO_PRECISION) or options.compile or options.cuda_graphs:
                raise ValueError(f"{str(model.path)!r} runs as it was built: precision must be fp32 (or auto) and "
                                 f"compile and cuda_graphs off, got {options.precision!r}, compile={options.compile}, "
                                 f"cuda_graphs={options.cuda_graphs}")
            model.check_input_size(options.input_size, resizes=options.resizes)
            self.precision = model.precision  # fp32, or int8 from `egnet export --int8`
            self.memory_format = torch.contiguous_format
            self.model = self._eager = model
        else:
            self.memory_format = torch.channels_last if options.optimize else torch.contiguous_format
            model = fuse_conv_bn(model) if options.optimize else copy.deepcopy(model)
            model = _placed(model, self.device, self.dtype, self.memory_format)
            if isinstance(model, EGNet):  # the Segmenter's own copy
                model.logits_at_input_size = not self._labels.compiled
            self._eager = model  # for attention maps, whose hooks compiled code and CUDA graphs would not run
            if options.precision == AUTO_PRECISION:
                self._fp32 = self.model = model
            else:
                self.model = _accelerated(model, compile=options.compile, cuda_graphs=options.cuda_graphs)
        # Pinned host buffers by batch shape (CUDA), one set per calling thread: threads may predict at once.
        self._staging = threading.local()
        self._palette = torch.from_numpy(PALETTE_LUT).to(self.device)
        self.input_size = options.input_size
        self.confidence_threshold = options.confidence_threshold
        self.flip = options.flip
        self.scales = tuple(options.scales)
        self.sliding_window = options.sliding_window

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, options: InferenceOptions | None = None, *, expect: ModelConfig | None = None,
        **keywords,
    ) -> Segmenter:
        """A checkpoint (``.pt``) run by torch, an exported ``.onnx`` run by ONNX Runtime, or an int8 ``.pt2``
        (``egnet export --int8``) compiled by Inductor on its first frame. ``expect`` (or the options'
        ``architecture``): the architecture the caller requires; another is refused with CheckpointMismatch,
        which lists the fields that differ."""
        options = _options(options, keywords)
        suffix = Path(path).suffix
        if suffix == ".onnx":
            threads = min(options.threads, available_cpus()) or None  # the Segmenter warns about the cap
            network = OnnxNetwork(path, device=options.device, threads=threads)
        elif suffix == PT2_SUFFIX:
            network = Int8Network(path, device=options.device)
        else:
            network = load_model(path)
        if expect is not None:
            check_same_architecture(network.config, expect, path)
        if options.architecture:
            check_same_architecture(network.config, dataclasses.replace(network.config, **options.architecture), path)
        if not network.config.predicts_exposure:
            log.info("%s is a %s network without an exposure stream: its exposure maps are each frame's measured "
                     "exposure (V of HSV), not a prediction", path, network.config.name)
        return cls(network, options)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def has_attention(self) -> bool:
        """Whether ``attention_maps`` can run: an EGNet with EGLs, run by torch (an ONNX graph returns none)."""
        return self.config.has_egl and not isinstance(self.model, _FILE_NETWORKS)

    def require_attention(self) -> None:
        """ValueError saying why, unless ``attention_maps`` can run."""
        config = self.config
        if not config.has_egl:
            network = f"EGNet variant {config.variant!r}" if config.arch == "egnet" else config.arch
            raise ValueError(f"the model is {network} ({config.backbone}), which has no Exposure Guidance Layer and "
                             "so no attention maps (Eq. 1): only EGNet's variant 'egnet' learns them")
        if isinstance(self.model, _FILE_NETWORKS):
            raise ValueError(f"the exported model {str(self.model.path)!r} returns no attention maps; use the .pt "
                             "checkpoint it was exported from")

    @torch.inference_mode()
    def attention_maps(
        self, images: Sequence[np.ndarray], *, output_size: tuple[int, int] | None = None
    ) -> list[AttentionMaps]:
        """The EGLs' attention maps W_r for frames of one size (H×W×3 uint8 RGB), resized bilinearly from their
        stage's resolution to ``output_size`` (width, height; by default the frames' own size). They come from
        one whole-image pass at the input size, whatever flips, scales or windows the labels are made with."""
        self.require_attention()
        batch = _stack_frames(images)
        height, width = batch.shape[1:3]
        output_hw = (height, width) if output_size is None else _check_output_size(output_size)[::-1]
        x = to_network_input(self._upload(batch))  # B×3×H×W
        base_w, base_h = self.input_size or (width, height)
        x = resize(x, (base_h, base_w)).to(_network_input_dtype(self.dtype), memory_format=self.memory_format)
        stage2, stage3 = (resize(w_r.float(), output_hw).clamp_(0, 1)[:, 0].cpu().numpy()  # B×h×w
                          for w_r in self._eager.attention_maps(x))
        return [AttentionMaps(stage2=a, stage3=b) for a, b in zip(stage2, stage3)]

    def check_frame(self, image: np.ndarray) -> None:
        """Raise ValueError, naming the size, where the network cannot run on this H×W×3 frame as configured."""
        if self.input_size is None and min(image.shape[:2]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"image of width={image.shape[1]} × height={image.shape[0]} is below the network's "
                f"{MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} minimum; set an input size to run the network at a fixed size"
            )

    def predict(
        self, image: np.ndarray, *, output_size: tuple[int, int] | None = None, color: bool = False,
        confidence: bool = False,
    ) -> Segmentation:
        return self.predict_batch([image], output_size=output_size, color=color, confidence=confidence)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray], *, output_size: tuple[int, int] | None = None, color: bool = False,
        confidence: bool = False,
    ) -> list[Segmentation]:
        """Frames of one size, each H×W×3 uint8 RGB; results at ``output_size`` (width, height), by default
        the frames' own size (NightCity+ labels are twice the size of its images). ``color`` adds the labels
        in the Cityscapes palette, looked up on the device; ``confidence`` the top softmax probability of each
        pixel (of the averaged logits, the score the confidence threshold compares)."""
        batch = _stack_frames(images)  # B×H×W×3 uint8
        height, width = batch.shape[1:3]
        output_hw = (height, width) if output_size is None else _check_output_size(output_size)[::-1]
        if self._fp32 is not None:  # precision auto, not warmed up: it chooses at this batch's size
            self._choose_precision((width, height), len(batch))
        return self._predict_guarded(batch, output_hw, color, confidence)

    def warm_up(self, size: tuple[int, int] | None = None, batch: int = 1, *,
                candidates: Sequence[str] | None = None) -> float:
        """Seconds of one prediction on black frames of ``size`` (width, height; by default the input size,
        else NightCity's), so that the first real frame is not slowed by allocator and kernel set-up (on
        CUDA, seconds). Run it on the thread that will predict: its thread pools are the ones set up.

        With precision auto, the path is chosen first, on ``batch`` generated night frames of that size (see
        ``precision_choice``); ``candidates``: the precisions it tries beside fp32 (default: what the device
        offers)."""
        width, height = size or self.input_size or WARM_UP_SIZE
        if self._fp32 is not None:
            self._choose_precision((width, height), batch, candidates)
        elif candidates is not None:
            raise ValueError(f"candidates are for precision auto before it has chosen; precision is "
                             f"{self.precision!r}")
        start = time.perf_counter()
        self.predict_batch([np.zeros((height, width, 3), dtype=np.uint8)] * batch)
        return time.perf_counter() - start

    def _choose_precision(self, size: tuple[int, int], batch: int, candidates: Sequence[str] | None = None) -> None:
        choice, (network, dtype) = choose_precision(self._trial_path, self._run_trial, device=self.device, size=size,
                                                    batch=batch, candidates=candidates)
        self.model, self.dtype, self.precision, self.precision_choice = network, dtype, choice.chosen, choice
        self._eager = self._trial_eager[dtype]
        self._fp32, self._trial_eager = None, {}  # only the chosen path's copy of the model is kept

    def _trial_path(self, precision: str) -> tuple[Network | CudaGraphNetwork, torch.dtype]:
        """The network of one precision's path, built from the fp32 one, and its dtype."""
        dtype = PRECISIONS[precision]
        network = self._fp32
        if dtype != torch.float32:
            network = _placed(copy.deepcopy(network), self.device, dtype, self.memory_format)
        self._trial_eager[dtype] = network
        return _accelerated(network, compile=self.options.compile, cuda_graphs=self.options.cuda_graphs), dtype

    def _run_trial(self, path: tuple[Network | CudaGraphNetwork, torch.dtype],
                   frames: list[np.ndarray]) -> list[Segmentation]:
        self.model, self.dtype = path
        return self._predict_guarded(np.stack(frames), frames[0].shape[:2], color=False, confidence=False)

    @torch.inference_mode()
    def _predict_guarded(self, batch: np.ndarray, output_hw: tuple[int, int], color: bool,
                         confidence: bool) -> list[Segmentation]:
        try:
            return self._predict(batch, output_hw, color, confidence)
        except InferenceError:
            raise
        except RuntimeError as error:  # torch's device errors, torch.cuda.OutOfMemoryError among them
            # The failed batch's blocks go back to the device, so that the next, maybe smaller, frame can run.
            _release_cuda_memory(self.device)
            raise InferenceError(f"inference on {self.device} failed on a {tuple(batch.shape)} batch: "
                                 f"{error}") from error

    def _predict(self, batch: np.ndarray, output_hw: tuple[int, int], color: bool,
                 confidence: bool) -> list[Segmentation]:
        x = to_network_input(self._upload(batch))  # B×3×H×W
        scores = None
        if self._labels.compiled and not confidence and self.confidence_threshold is None:  # no full-size logits
            input_hw = self._input_hw(x)
            output = self._forward(resize(x, input_hw), logits_at_input_size=False)
            labels = self._labels(output.logits, input_hw, output_hw)  # B×h×w
            output = EGNetOutput(logits=output.logits, exposure=resize(output.exposure, output_hw))
        else:
            output = self._logits(x, output_hw)
            labels = self._labels(output.logits, output_hw, output_hw)  # B×h×w
        if self.confidence_threshold is not None or confidence:
            scores = output.logits.softmax(dim=1).amax(dim=1)  # B×h×w
        if self.confidence_threshold is not None:
            labels[scores < self.confidence_threshold] = IGNORE_INDEX
        none = [None] * len(labels)
        colors = self._palette[labels.long()].cpu().numpy() if color else none  # B×h×w×3
        scores_np = scores.float().cpu().numpy() if confidence else none  # B×h×w
        labels_np = labels.cpu().numpy()
        exposure_np = output.exposure.clamp_(0, 1)[:, 0].float().cpu().numpy()  # B×h×w
        return [Segmentation(labels=label_map, exposure=exposure, color=colour, confidence=score)
                for label_map, exposure, colour, score in zip(labels_np, exposure_np, colors, scores_np)]

    def _upload(self, batch: np.ndarray) -> torch.Tensor:
        """B×H×W×3 uint8 on the device; on CUDA through a pinned buffer, without blocking the host."""
        frames = torch.from_numpy(batch)
        if self.device.type != "cuda":
            return frames
        buffers = self._staging.__dict__.setdefault("by_shape", {})
        if batch.shape not in buffers:
            buffers[batch.shape] = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
        # Safe to reuse: this thread's previous call's results were copied back, which waited for its upload.
        staging = buffers[batch.shape].copy_(frames)
        return staging.to(self.device, non_blocking=True)

    def _logits(self, x: torch.Tensor, output_hw: tuple[int, int]) -> EGNetOutput:
        """B×3×H×W RGB in [0, 1] -> logits and exposure at ``output_hw``, averaged over every scale and flip."""
        base_h, base_w = self._input_hw(x)
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
        if views == 1:  # the plain protocol: the model's own outputs, not a copy divided by one
            return EGNetOutput(logits=logits, exposure=exposure)
        return EGNetOutput(logits=logits.div_(views), exposure=exposure.div_(views))

    def _input_hw(self, x: torch.Tensor) -> tuple[int, int]:
        """(height, width) the network sees for B×3×H×W ``x`` before any scale."""
        return (self.input_size[1], self.input_size[0]) if self.input_size else (x.shape[-2], x.shape[-1])

    def _forward(self, x: torch.Tensor, *, logits_at_input_size: bool = True) -> EGNetOutput:
        x = x.to(_network_input_dtype(self.dtype), memory_format=self.memory_format)
        if self.sliding_window is None:
            output = self.model(x)
        else:
            output = _forward_windows(self.model, x, self.sliding_window)
        logits = output.logits.float()  # at x's size, or at the network's last stage's (see __init__)
        if logits_at_input_size:
            logits = resize(logits, tuple(x.shape[-2:]))
        return EGNetOutput(logits=logits, exposure=output.exposure.float())


def _options(options: InferenceOptions | None, keywords: dict) -> InferenceOptions:
    if options is None:
        return InferenceOptions(**keywords)
    return dataclasses.replace(options, **keywords) if keywords else options


def _apply_threads(options: InferenceOptions) -> int:
    """The CPU threads torch uses from now on (process-wide), capped at the available CPUs with a warning."""
    if options.threads:
        torch.set_num_threads(resolve_threads(options.threads, name=options.name("threads")))
    return torch.get_num_threads()


def _release_cuda_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _placed(model: Network, device: torch.device, dtype: torch.dtype, memory_format: torch.memory_format) -> Network:
    """``model`` on ``device`` in ``dtype``; bf16 as ``bf16_stages`` makes it: the ResNet stages in bf16, the
    rest of the network in fp32."""
    try:
        placed = model.to(device, _network_input_dtype(dtype), memory_format=memory_format).eval()
        return with_bf16_stages(placed, dtype) if dtype == torch.bfloat16 else placed
    except RuntimeError as error:  # CUDA out of memory, a driver error
        _release_cuda_memory(device)
        raise InferenceError(f"the model cannot be placed on {device}: {error}") from error


def _network_input_dtype(dtype: torch.dtype) -> torch.dtype:
    """What a network placed in ``dtype`` takes: fp32 for bf16 (whose stem and stream are fp32), else ``dtype``."""
    return torch.float32 if dtype == torch.bfloat16 else dtype


def _accelerated(model: Network, *, compile: bool, cuda_graphs: bool):
    if compile and cuda_graphs:
        return torch.compile(model, mode="reduce-overhead", dynamic=False)
    if compile:
        return CompiledNetwork(model)
    return CudaGraphNetwork(model) if cuda_graphs else model


def _forward_windows(model: Network, x: torch.Tensor, window: SlidingWindow) -> EGNetOutput:
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


def calibration_input(frame: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """One H×W×3 uint8 RGB frame -> 1×3×H×W float32 in [0, 1] at ``size`` (width, height), resized as the
    Segmenter resizes: what int8 calibration observes."""
    return resize(to_network_input(torch.from_numpy(frame)[None]), (size[1], size[0]))
