"""Model configuration: a small dataclass, validated in one place, that travels inside every checkpoint."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ARCHITECTURES = ("egnet", "deeplabv3", "fcn")  # EGNet, and the networks of Table 1 that torchvision implements
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
OUTPUT_STRIDES = (8, 16, 32)
DATASETS = (
    "nightcity", "nightcity+", "nightcity-fine", "cityscapes", "cityscapes+nightcity", "acdc-night", "dark-zurich",
)
# Data sets whose train split has no labels: scored on, never trained on.
EVALUATION_ONLY = ("dark-zurich",)
# Where validation during training runs: a held-out part of the training split, or the data set's val split.
# NightCity's val is the paper's test set, so the default never reads it while training.
VALIDATION_SPLITS = ("holdout", "val")
# How a training sample is cut from an image (Section 5: "300 × 300 for training and 900 × 900 for testing"):
# crop: random scale of the image as it is, then a crop_size crop; resize: the whole image to crop_size;
# resize_crop: the image resized to eval_size (the test geometry), then random scale and a crop_size crop.
TRAIN_GEOMETRIES = ("crop", "resize", "resize_crop")


@dataclass(frozen=True)
class VariantSpec:
    """How one ablation differs from the full EGNet."""

    exposure_stream: bool  # a second copy of stages 2-4 that predicts the exposure map
    guidance: str  # how stage 2 and 3 features are fused: attention | none | concat | sum | exposure_map
    extra_input: bool  # the V channel is concatenated to the RGB input


VARIANTS: dict[str, VariantSpec] = {
    "egnet": VariantSpec(exposure_stream=True, guidance="attention", extra_input=False),  # Fig. 5, Eq. (1)
    "no_egl": VariantSpec(exposure_stream=True, guidance="none", extra_input=False),  # Table 4 "w/o EGL"
    "no_exposure_stream": VariantSpec(exposure_stream=False, guidance="none", extra_input=False),  # "w/o ES"
    "concat": VariantSpec(exposure_stream=True, guidance="concat", extra_input=False),  # Table 4 "Concat"
    "sum": VariantSpec(exposure_stream=True, guidance="sum", extra_input=False),  # Table 4 "Sum"
    "extra_input": VariantSpec(exposure_stream=False, guidance="none", extra_input=True),  # Table 5
    "exposure_attention": VariantSpec(exposure_stream=False, guidance="exposure_map", extra_input=False),  # Table 5
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; ``backbone_weights`` only matters when training starts.

    ``arch``: ``egnet`` (Fig. 5), or torchvision's ``deeplabv3`` or ``fcn``, two of Table 1's comparisons,
    trained and deployed the same way. ``variant``, ``w1`` and ``w2`` are EGNet's own and keep their defaults
    for the others, whose output stride is torchvision's 8.
    """

    arch: str = "egnet"
    num_classes: int = 19
    backbone: str = "resnet101"
    output_stride: int = 8
    variant: str = "egnet"
    w1: float = 1.0  # Eq. (1)
    w2: float = 0.3  # Eq. (1)
    backbone_weights: str | None = None

    def __post_init__(self) -> None:
        _check_fields(self, "model")
        if self.num_classes < 1:
            raise ValueError(f"model.num_classes must be a positive integer, got {self.num_classes!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"model.output_stride must be one of {', '.join(map(str, OUTPUT_STRIDES))}, "
                f"got {self.output_stride!r}"
            )
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.arch != "egnet":
            self._check_torchvision_fields()

    def _check_torchvision_fields(self) -> None:
        if self.output_stride != 8:
            raise ValueError(f"model.output_stride must be 8 for model.arch {self.arch} (torchvision's builders "
                             f"dilate layer3 and layer4), got {self.output_stride!r}")
        egnet_only = {name: getattr(self, name) for name in ("variant", "w1", "w2")
                      if getattr(self, name) != getattr(ModelConfig, name)}
        if egnet_only:
            listed = ", ".join(f"model.{name}={value!r}" for name, value in egnet_only.items())
            raise ValueError(f"{listed}: EGNet's own, not {self.arch}'s; leave it out (or at its default) for "
                             f"model.arch {self.arch}")

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    @property
    def name(self) -> str:
        """What the network is, in a word: the EGNet variant, or the torchvision architecture."""
        return self.variant if self.arch == "egnet" else self.arch

    @property
    def predicts_exposure(self) -> bool:
        """Whether an exposure stream predicts the exposure map; without one, the network's ``exposure`` output
        is the input's measured exposure (its V channel), and training has no L1 term."""
        return self.arch == "egnet" and self.spec.exposure_stream

    @property
    def has_egl(self) -> bool:
        """Whether Exposure Guidance Layers (Eq. 1) learn attention maps W_r (the paper's Figure 9)."""
        return self.arch == "egnet" and self.spec.guidance == "attention"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "nightcity"
    root: str = "data/NightCity"
    cityscapes_root: str | None = None  # only for cityscapes+nightcity ("C + N")
    validate_on: str = "holdout"  # one of VALIDATION_SPLITS
    holdout: float | str = 0.1  # validate_on: holdout: this share of train (seeded by run.seed), or a name list
    train_geometry: str = "crop"  # one of TRAIN_GEOMETRIES
    crop_size: int = 300  # Section 5: 300×300 training crops
    scale_min: float = 0.5
    scale_max: float = 2.0
    workers: int = 4
    eval_size: tuple[int, int] | None = (900, 900)  # Section 5: tested at 900×900; None = native size
    eval_limit: int | None = None  # validate on the first N val images only (None: all)

    def __post_init__(self) -> None:
        _check_fields(self, "data")
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.dataset in EVALUATION_ONLY:
            raise ValueError(
                f"data.dataset {self.dataset!r} has labels for its val split only, so it cannot be trained on; "
                "train on nightcity or acdc-night and score the checkpoint with `egnet evaluate --dataset dark-zurich`"
            )
        if self.dataset == "cityscapes+nightcity" and not self.cityscapes_root:
            raise ValueError("data.cityscapes_root is required when data.dataset is 'cityscapes+nightcity'")
        _require(self.validate_on in VALIDATION_SPLITS, "data.validate_on", self.validate_on,
                 f"one of {', '.join(VALIDATION_SPLITS)}")
        if isinstance(self.holdout, str):
            _require(bool(self.holdout.strip()), "data.holdout", self.holdout,
                     "a fraction of the training split in (0, 1), or the path of a file of sample names")
        else:
            _require(0 < self.holdout < 1, "data.holdout", self.holdout,
                     "a fraction of the training split in (0, 1), or the path of a file of sample names")
        _require(self.train_geometry in TRAIN_GEOMETRIES, "data.train_geometry", self.train_geometry,
                 f"one of {', '.join(TRAIN_GEOMETRIES)}")
        _require(self.crop_size >= 32, "data.crop_size", self.crop_size, "at least 32")
        _require(0 < self.scale_min <= self.scale_max, "data.scale_min/scale_max", (self.scale_min, self.scale_max),
                 "0 < scale_min <= scale_max")
        _require(self.workers >= 0, "data.workers", self.workers, "0 or more")
        if self.eval_size is not None:
            size = tuple(self.eval_size)
            _require(len(size) == 2 and all(_is_int(side) and side >= 32 for side in size), "data.eval_size",
                     self.eval_size, "[width, height], each an integer of at least 32, or null")
            object.__setattr__(self, "eval_size", size)
        elif self.train_geometry == "resize_crop":
            raise ValueError("data.train_geometry 'resize_crop' resizes training images to data.eval_size, which is "
                             "null; give data.eval_size (the paper's [900, 900]) or choose crop or resize")
        if self.eval_limit is not None:
            _require(self.eval_limit >= 1, "data.eval_limit", self.eval_limit, "at least 1, or null")


@dataclass(frozen=True)
class OptimConfig:
    """Section 5: SGD, batch 14, polynomial decay with power 0.9, 40,000 iterations, α = 1, β = 0.01."""

    iterations: int = 40_000
    batch_size: int = 14  # over all processes together
    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    alpha: float = 1.0
    beta: float = 0.01

    def __post_init__(self) -> None:
        _check_fields(self, "optim")
        _require(self.iterations >= 1, "optim.iterations", self.iterations, "at least 1")
        _require(self.batch_size >= 1, "optim.batch_size", self.batch_size, "at least 1")
        _require(self.lr > 0, "optim.lr", self.lr, "positive")
        _require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "in [0, 1)")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "0 or more")
        _require(self.poly_power >= 0, "optim.poly_power", self.poly_power, "0 or more")
        _require(self.alpha >= 0 and self.beta >= 0, "optim.alpha/beta", (self.alpha, self.beta), "0 or more")


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs/egnet"
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    channels_last: bool = True  # CUDA only
    log_every: int = 20
    val_every: int = 2000
    checkpoint_every: int = 2000
    keep_last: int = 3
    init_from: str | None = None  # a full EGNet checkpoint to fine-tune from
    stop_at: int | None = None  # checkpoint and stop after this iteration (time-limited jobs); schedule unchanged

    def __post_init__(self) -> None:
        _check_fields(self, "run")
        for name in ("log_every", "val_every", "checkpoint_every", "keep_last"):
            _require(getattr(self, name) >= 1, f"run.{name}", getattr(self, name), "at least 1")
        if self.stop_at is not None:
            _require(self.stop_at >= 1, "run.stop_at", self.stop_at, "at least 1, or null")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        # DeepLabV3's ASPP pools each image to 1×1 before a BatchNorm, which in training needs more than one value
        # per channel: torch would stop at the first iteration with a message naming neither field.
        if self.model.arch == "deeplabv3" and self.optim.batch_size < 2:
            raise ValueError(f"optim.batch_size must be at least 2 for model.arch deeplabv3 (its ASPP pools each "
                             f"image to 1×1 before a BatchNorm; under torchrun, 2 per process), got "
                             f"{self.optim.batch_size!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(_SECTIONS))
        if unknown:
            raise ValueError(f"unknown config section(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}")
        built = {}
        for name, section_cls in _SECTIONS.items():
            section = values.get(name)
            if section is not None and not isinstance(section, dict):
                raise ValueError(f"config section {name!r} must be a mapping, got {section!r}")
            built[name] = _build_section(section_cls, name, section or {})
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}


def load_train_config(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file (or the defaults) with ``section.field=value`` overrides applied."""
    values = _read_yaml(Path(path)) if path is not None else {}
    for override in overrides:
        key, separator, text = override.partition("=")
        section, dot, name = key.partition(".")
        if not separator or not dot or section not in _SECTIONS:
            raise ValueError(f"--set takes section.field=value with section one of {', '.join(_SECTIONS)}, "
                             f"got {override!r}")
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError:
            raise ValueError(f"--set {key}: {text!r} is not a YAML value (write lists as [a, b])") from None
        values[section] = {**(values.get(section) or {}), name: value}
    return TrainConfig.from_dict(values)


class _Loader(yaml.SafeLoader):
    """PyYAML's YAML 1.1, which reads ``1e-2`` as a string, taught YAML 1.2's floats without a dot or exponent sign."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's sections; ``extends: OTHER.yaml`` (relative to the file) is read first, then updated.

    ``chain`` holds the files that extend this one, to name a cycle rather than recurse until Python gives up.
    """
    resolved = [file.resolve() for file in chain]
    if path.resolve() in resolved:
        cycle = (*chain[resolved.index(path.resolve()):], path)
        raise ValueError(f"config file {str(chain[0])!r} extends itself; cycle: {' → '.join(f.name for f in cycle)}")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except OSError as error:
        raise FileNotFoundError(f"config file {str(path)!r} cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of sections, got {type(values).__name__}")
    base = values.pop("extends", None)
    for section, entries in values.items():
        if entries is not None and not isinstance(entries, dict):
            raise ValueError(f"config section {section!r} in {str(path)!r} must be a mapping, got {entries!r}")
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ValueError(f"config file {str(path)!r}: extends must be one file name, got {base!r}")
    merged = _read_yaml(path.parent / base, (*chain, path))
    for section, entries in values.items():
        merged[section] = {**(merged.get(section) or {}), **(entries or {})}
    return merged


def _build_section(section_cls: type, name: str, values: dict[str, Any]):
    known = [entry.name for entry in fields(section_cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(f'{name}.{key}' for key in unknown)}; known: {', '.join(known)}")
    return section_cls(**values)


def _check_fields(config: Any, section: str) -> None:
    """Every field of the type it is annotated with, and every float finite: YAML hands out null, strings and
    ``.inf`` wherever a user writes them, and a NaN learning rate or loss weight trains a model of NaNs."""
    for entry in fields(config):
        value, expected = getattr(config, entry.name), _FIELD_TYPES[entry.type]
        if not isinstance(value, expected) or isinstance(value, bool) and bool not in expected:
            raise ValueError(f"{section}.{entry.name} must be {entry.type}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{section}.{entry.name} must be a finite number, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# What YAML may give for each annotated field type (annotations are strings under postponed evaluation).
_FIELD_TYPES = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "str | None": (str, type(None)),
    "int | None": (int, type(None)),
    "tuple[int, int] | None": (list, tuple, type(None)),
    "float | str": (int, float, str),
}


def _require(condition: bool, field: str, value: Any, expectation: str) -> None:
    if not condition:
        raise ValueError(f"{field} must be {expectation}, got {value!r}")
