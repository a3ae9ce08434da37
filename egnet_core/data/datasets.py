"""Data sets by name, as configs and the command line give them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from egnet_core.config import DATASETS
from egnet_core.data.acdc import ACDC, acdc_folders
from egnet_core.data.cityscapes import Cityscapes
from egnet_core.data.dark_zurich import DarkZurich, dark_zurich_folders
from egnet_core.data.folders import ImageFolder
from egnet_core.data.nightcity import NightCity, nightcity_folders


def open_dataset(
    name: str,
    root: str | os.PathLike,
    split: str,
    *,
    transform=None,
    cityscapes_root: str | os.PathLike | None = None,
) -> Dataset:
    """``cityscapes+nightcity`` (the paper's "C + N") trains on both and is evaluated on NightCity."""
    _check_name(name)
    if name == "cityscapes":
        return Cityscapes(root, split, transform=transform)
    if name == "acdc-night":
        return ACDC(root, split, transform=transform)
    if name == "dark-zurich":
        return DarkZurich(root, split, transform=transform)
    nightcity = NightCity(root, split, version=name.removeprefix("cityscapes+"), transform=transform)
    if name == "cityscapes+nightcity" and split == "train":
        if cityscapes_root is None:
            raise ValueError("the cityscapes+nightcity data set needs a Cityscapes root as well")
        return ConcatDataset([Cityscapes(cityscapes_root, split, transform=transform), nightcity])
    return nightcity


@dataclass(frozen=True)
class Images:
    """What the images of a split are read from: the labelled data set, or its images alone."""

    dataset: Dataset  # RawSamples when labelled, else H×W×3 uint8 RGB images (``folders.ImageFolder``)
    labelled: bool
    unlabelled_reason: str  # why the labels are not read; empty when they are


def open_images(name: str, root: str | os.PathLike, split: str) -> Images:
    """The split as ``open_dataset`` opens it when its labels are there; otherwise its images alone, from the
    split's image folder in ``name``'s layout if that exists, else every image below ``root`` (a folder of night
    photos). For what needs only images, such as the exposure histogram (the paper's Figure 4)."""
    _check_name(name)
    try:
        return Images(open_dataset(name, root, split), labelled=True, unlabelled_reason="")
    except FileNotFoundError as missing:  # a folder of the layout is not there
        folder = image_folder(name, Path(root), split)
        folder = folder if folder.is_dir() else Path(root)
        try:
            images = ImageFolder(folder)
        except (FileNotFoundError, ValueError) as none:
            raise ValueError(f"{missing}; nor are there images to read without labels: {none}") from None
        return Images(images, labelled=False, unlabelled_reason=str(missing))


def image_folder(name: str, root: Path, split: str) -> Path:
    """Where ``name``'s layout keeps the images of ``split`` below ``root``."""
    if name == "cityscapes":
        return root / "leftImg8bit" / split
    if name == "acdc-night":
        return acdc_folders(root, split)[0]
    if name == "dark-zurich":
        return dark_zurich_folders(root, split)[0]
    return nightcity_folders(root, split, name.removeprefix("cityscapes+"))[0]


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
