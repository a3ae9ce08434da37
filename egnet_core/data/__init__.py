"""Data sets: the NightCity loader, Cityscapes and the night benchmarks ACDC and Dark Zurich, and the synthetic
night scenes that stand in for them in demos and tests."""

from egnet_core.data.acdc import ACDC
from egnet_core.data.cityscapes import Cityscapes
from egnet_core.data.dark_zurich import DarkZurich
from egnet_core.data.nightcity import NightCity, duplicates_between_splits
from egnet_core.data.sample import RawSample, Sample
from egnet_core.data.transforms import EvalTransform, TrainTransform

__all__ = [
    "ACDC",
    "Cityscapes",
    "DarkZurich",
    "EvalTransform",
    "NightCity",
    "RawSample",
    "Sample",
    "TrainTransform",
    "duplicates_between_splits",
]
