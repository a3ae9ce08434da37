"""How a model runs: ``InferenceOptions``, built by the CLI, the ROS node and training alike and validated once.

Each caller names the options its own way (``--threads``, ``parameter 'threads'``); ``names`` carries those
names, so that an ``OptionError`` or a warning says what the user typed, while ``.field`` stays the field's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from egnet_core.config import ModelConfig
from egnet_core.model.egnet import MIN_INPUT_SIZE

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# "auto": the Segmenter times the precisions its device offers at start-up and keeps the fastest that agrees
# with fp32 (see precision_choice.py).
AUTO_PRECISION = "auto"


class OptionError(ValueError):
    """An option no model can run with; ``field`` is the InferenceOptions field, ``value`` the value refused."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


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
                "a sliding window stride larger than the window leaves gaps: "
                f"stride {self.stride!r}, size {self.size!r}"
            )


@dataclass(frozen=True)
class InferenceOptions:
    """Where and how the Segmenter runs a model; see ``Segmenter`` for what each option does.

    ``device``: auto (CUDA when there is a GPU), cpu, cuda or cuda:N, or a torch.device; kept resolved.
    ``precision``: fp32, bf16, fp16 (CUDA), or auto: the fastest of them that agrees with fp32, chosen at warm-up.
    ``threads``: CPU threads, 0 for torch's choice; more than the available CPUs are capped with a warning.
    ``input_size``: (width, height) the network runs at; None: each frame's own size.
    ``architecture``: ModelConfig fields the model must have (``{"backbone": "resnet50"}``); None: any.
    ``names``: how the caller calls each field, for messages (``{"threads": "--threads"}``).
    """

    device: torch.device | str = "cpu"
    precision: str = "fp32"
    threads: int = 0
    input_size: tuple[int, int] | None = None
    confidence_threshold: float | None = None
    compile: bool = False
    cuda_graphs: bool = False
    flip: bool = False
    scales: Sequence[float] = (1.0,)
    sliding_window: SlidingWindow | None = None
    optimize: bool = True
    architecture: Mapping[str, Any] | None = None
    names: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check("input_size", self.input_size is None or _is_size(self.input_size),
                    f"(width, height), each at least {MIN_INPUT_SIZE}")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        threshold = self.confidence_threshold
        if threshold is not None and not (_is_number(threshold) and 0.0 <= threshold <= 1.0):
            raise OptionError("confidence_threshold", threshold,
                              f"{self.name('confidence_threshold')} must lie in [0, 1], got {threshold!r}")
        for name in ("flip", "optimize", "compile", "cuda_graphs"):
            self._check(name, isinstance(getattr(self, name), bool), "True or False")
        self._check_scales()
        self._check("sliding_window", self.sliding_window is None or isinstance(self.sliding_window, SlidingWindow),
                    "a SlidingWindow or None")
        if self.precision != AUTO_PRECISION and self.precision not in PRECISIONS:
            raise OptionError("precision", self.precision, f"{self.name('precision')} must be one of "
                              f"{', '.join((AUTO_PRECISION, *PRECISIONS))}, got {self.precision!r}")
        self._check("threads", _is_int(self.threads) and self.threads >= 0, "0 (torch's choice) or positive")
        self._check_architecture()
        object.__setattr__(self, "device", self._resolved_device())
        if self.precision == "fp16" and self.device.type != "cuda":
            raise OptionError("precision", self.precision, f"fp16 precision needs a CUDA device, got "
                              f"{str(self.device)!r}; use bf16 on the CPU")
        if self.cuda_graphs and self.device.type != "cuda":
            raise OptionError("cuda_graphs", True, f"{self.name('cuda_graphs')} needs a CUDA device, got "
                              f"{str(self.device)!r}")

    def name(self, field: str) -> str:
        """The caller's name for ``field``."""
        return self.names.get(field, field)

    @property
    def resizes(self) -> bool:
        """Whether a protocol runs the network at other sizes than the input size."""
        return tuple(self.scales) != (1.0,) or self.sliding_window is not None

    def _check(self, field: str, condition: bool, expectation: str) -> None:
        if not condition:
            value = getattr(self, field)
            raise OptionError(field, value, f"{self.name(field)} must be {expectation}, got {value!r}")

    def _check_scales(self) -> None:
        scales = self.scales
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
            raise OptionError("scales", scales, f"{self.name('scales')} must be a non-empty sequence of positive "
                              f"factors, got {scales!r}")
        for scale in scales:
            if not _is_number(scale) or not math.isfinite(scale) or scale <= 0:
                raise OptionError("scales", scales, f"{self.name('scales')} must be positive finite numbers, got "
                                  f"{scale!r} in {tuple(scales)!r}")
            if self.input_size is not None and min(round(side * scale) for side in self.input_size) < MIN_INPUT_SIZE:
                raise OptionError("scales", scales, f"scale {scale!r} shrinks {self.name('input_size')} "
                                  f"{self.input_size!r} below the model's {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} minimum")
        object.__setattr__(self, "scales", tuple(float(scale) for scale in scales))

    def _check_architecture(self) -> None:
        if self.architecture is None:
            return
        known = {field.name for field in dataclasses.fields(ModelConfig)} - {"backbone_weights"}
        unknown = sorted(set(self.architecture) - known)
        if unknown:
            raise OptionError("architecture", dict(self.architecture), f"{self.name('architecture')} names no "
                              f"model field {', '.join(unknown)}; the fields are {', '.join(sorted(known))}")

    def _resolved_device(self) -> torch.device:
        if isinstance(self.device, torch.device):
            return self.device
        try:
            return resolve_device(self.device)
        except ValueError as error:
            raise OptionError("device", self.device, f"{self.name('device')}: {error}") from None


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


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU (``avx512_bf16``, ``amx_bf16``, ``avx512_vnni``, ...), from
    /proc/cpuinfo; none where there is no such file."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    lines = cpuinfo.read_text().splitlines()
    return frozenset(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_size(size: Any) -> bool:
    return (isinstance(size, Sequence) and len(size) == 2 and all(_is_int(side) for side in size)
            and min(size) >= MIN_INPUT_SIZE)
