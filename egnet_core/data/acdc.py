"""ACDC (Sakaridis et al., ICCV 2021), its night condition: a night benchmark that later papers report on.

Layout followed: the one ``rgb_anon_trainvaltest.zip`` and ``gt_trainval.zip`` unpack into side by side, as
mmsegmentation's ACDC configs read it (``data_prefix=rgb_anon/night/train``, ``gt/night/train``)::

    root/rgb_anon/night/{train,val}/<sequence>/<sequence>_frame_<NNNNNN>_rgb_anon.png
    root/gt/night/{train,val}/<sequence>/<sequence>_frame_<NNNNNN>_gt_labelTrainIds.png

``<sequence>`` is a recording such as ``GOPR0351``. Labels are the Cityscapes train ids, read as they are; a
split without ``_gt_labelTrainIds.png`` files is read from ``_gt_labelIds.png`` (converted). The other gt files
(``_gt_labelColor.png``, ``_gt_invIds.png``, ``_gt_invGray.png``) and the ``*_ref`` day images are not read.
ACDC's test labels are withheld, so only train and val are offered.
"""

from __future__ import annotations

import os
from pathlib import Path

from egnet_core.data.nightcity import LabelledImageFolder, Transform, check_split, require_folders

CONDITION = "night"
# Image/label pairs per split of the night condition (the test split's 500 are unlabelled).
RELEASE = {"train": 400, "val": 106}


def acdc_folders(root: Path, split: str) -> tuple[Path, Path]:
    """The image and label folders of a split of the night condition."""
    return root / "rgb_anon" / CONDITION / split, root / "gt" / CONDITION / split


class ACDC(LabelledImageFolder):
    """One split of ACDC's night condition."""

    def __init__(self, root: str | os.PathLike, split: str = "train", *, transform: Transform | None = None) -> None:
        root = Path(root)
        check_split(split)
        image_dir, label_dir = acdc_folders(root, split)
        layout = f"{root}/rgb_anon/{CONDITION}/{split}/<sequence> with {root}/gt/{CONDITION}/{split}/<sequence>"
        require_folders(image_dir, label_dir, layout)
        super().__init__(
            image_dir,
            label_dir,
            dataset="acdc-night",
            split=split,
            image_suffix="_rgb_anon.png",
            label_suffixes=("_gt_labelTrainIds.png", "_gt_labelIds.png"),
            recursive=True,
            release=RELEASE[split],
            transform=transform,
        )
