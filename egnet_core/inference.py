"""The one predictor that the CLI, the evaluator, the bag tool and the ROS node share."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_model
from .config import ModelConfig
from .labels import IGNORE_INDEX
from .model import EGNet


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # H×W uint8 train ids, IGNORE_INDEX where the model is below the confidence threshold
    exposure: np.ndarray  # H×W float32 predicted exposure in [0, 1]


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


class Segmenter:
    """Runs an EGNet on RGB uint8 frames and returns labels and exposure maps at each frame's own size.

    ``input_size`` (width, height) is the size the network sees (the paper tests at 900×900); ``None`` runs
    at the frame's own size. Logits are resized back bilinearly before the argmax, so label ids are never
    interpolated.
    """

    def __init__(
        self,
        model: EGNet,
        *,
        device: torch.device | str = "cpu",
        input_size: tuple[int, int] | None = None,
        confidence_threshold: float | None = None,
    ) -> None:
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 32):
            raise ValueError(f"input_size must be (width, height), each at least 32, got {input_size!r}")
        if confidence_threshold is not None and not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {confidence_threshold!r}")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.input_size = tuple(input_size) if input_size is not None else None
        self.confidence_threshold = confidence_threshold

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, *, expect: ModelConfig | None = None, **options
    ) -> Segmenter:
        return cls(load_model(path, expect=expect), **options)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def predict(self, image: np.ndarray) -> Segmentation:
        return self.predict_batch([image])[0]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Segmentation]:
        """Frames of one size, each H×W×3 uint8 RGB."""
        batch = _stack_frames(images)  # B×H×W×3 uint8
        height, width = batch.shape[1:3]
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255)  # B×3×H×W
        if self.input_size is not None and self.input_size != (width, height):
            x = F.interpolate(x, size=self.input_size[::-1], mode="bilinear", align_corners=False)
        output = self.model(x)
        logits = _resize(output.logits, (height, width))
        exposure = _resize(output.exposure, (height, width)).clamp_(0, 1)[:, 0]  # B×H×W
        probabilities = logits.softmax(dim=1) if self.confidence_threshold is not None else None
        labels = logits.argmax(dim=1).to(torch.uint8)  # B×H×W
        if probabilities is not None:
            labels[probabilities.amax(dim=1) < self.confidence_threshold] = IGNORE_INDEX
        labels_np = labels.cpu().numpy()
        exposure_np = exposure.float().cpu().numpy()
        return [Segmentation(labels=l, exposure=e) for l, e in zip(labels_np, exposure_np)]


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


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
