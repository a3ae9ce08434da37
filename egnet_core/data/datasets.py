"""Data sets by name, as configs and the command line give them."""

from __future__ import annotations

import os

from torch.utils.data import ConcatDataset, Dataset

from egnet_core.config import DATASETS
from egnet_core.data.cityscapes import Cityscapes
from egnet_core.data.nightcity import NightCity


def open_dataset(
    name: str,
    root: str | os.PathLike,
    split: str,
    *,
    transform=None,
    cityscapes_root: str | os.PathLike | None = None,
) -> Dataset:
    """``cityscapes+nightcity`` (the paper's "C + N") trains on both and is evaluated on NightCity."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if name == "cityscapes":
        return Cityscapes(root, split, transform=transform)
    nightcity = NightCity(root, split, version=name.removeprefix("cityscapes+"), transform=transform)
    if name == "cityscapes+nightcity" and split == "train":
        if cityscapes_root is None:
            raise ValueError("the cityscapes+nightcity data set needs a Cityscapes root as well")
        return ConcatDataset([Cityscapes(cityscapes_root, split, transform=transform), nightcity])
    return nightcity
