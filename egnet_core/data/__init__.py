"""Data sets: the NightCity loader and the synthetic night scenes that stand in for it in demos and tests."""

from .cityscapes import Cityscapes
from .nightcity import NightCity, duplicates_between_splits
from .sample import RawSample, Sample
from .transforms import EvalTransform, TrainTransform
