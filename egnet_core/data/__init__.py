"""Data sets: the NightCity loader and the synthetic night scenes that stand in for it in demos and tests."""

from egnet_core.data.cityscapes import Cityscapes
from egnet_core.data.nightcity import NightCity, duplicates_between_splits
from egnet_core.data.sample import RawSample, Sample
from egnet_core.data.transforms import EvalTransform, TrainTransform

__all__ = [
    "Cityscapes",
    "EvalTransform",
    "NightCity",
    "RawSample",
    "Sample",
    "TrainTransform",
    "duplicates_between_splits",
]
