"""Model configuration: a small dataclass, validated in one place, that travels inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
OUTPUT_STRIDES = (8, 16, 32)


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
    """Everything needed to rebuild an EGNet; ``backbone_weights`` only matters when training starts."""

    num_classes: int = 19
    backbone: str = "resnet101"
    output_stride: int = 8
    variant: str = "egnet"
    w1: float = 1.0  # Eq. (1)
    w2: float = 0.3  # Eq. (1)
    backbone_weights: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
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
        for name in ("w1", "w2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"model.{name} must be a number, got {value!r}")

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
