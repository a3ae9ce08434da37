"""Dark Zurich (Sakaridis et al., ICCV 2019), the night benchmark that later papers report on; val only.

Layout followed: ``Dark_Zurich_val_anon.zip`` unpacked into the root (as mmsegmentation's Dark Zurich config
reads it, ``img_dir=rgb_anon/val/night/GOPR0356``, ``ann_dir=gt/val/night/GOPR0356``)::

    root/rgb_anon/val/night/<sequence>/<sequence>_frame_<NNNNNN>_rgb_anon.png     (50 images, GOPR0356)
    root/gt/val/night/<sequence>/<sequence>_frame_<NNNNNN>_gt_labelTrainIds.png

Labels are Cityscapes train ids, read as they are (``_gt_labelIds.png`` when no train-id files are there). The
``val_ref`` day images, the ``_gt_labelColor``/``_gt_invGray``/``_gt_invIds`` files and ``gps/`` are not read.
``Dark_Zurich_train_anon.zip`` adds ``rgb_anon/train/{day,twilight,night}/<sequence>/`` without labels, and the
test labels are withheld: Dark Zurich is scored on (``egnet evaluate --dataset dark-zurich``), never trained on.
Its train night images still give ``egnet stats`` an exposure histogram.
"""

from __future__ import annotations

import os
from pathlib import Path

from egnet_core.data.nightcity import LabelledImageFolder, Transform, check_split, require_folders

CONDITION = "night"
RELEASE = {"val": 50}  # the only labelled split
LABELLED_SPLITS = tuple(RELEASE)


def dark_zurich_folders(root: Path, split: str) -> tuple[Path, Path]:
    """The image and label folders of a split; the train split's label folder never exists."""
    return root / "rgb_anon" / split / CONDITION, root / "gt" / split / CONDITION


class DarkZurich(LabelledImageFolder):
    """Dark Zurich's labelled night images: ``split="val"``. The train split has images only, so opening it
    names the missing label folder (FileNotFoundError), as for any data set whose labels are not there."""

    def __init__(self, root: str | os.PathLike, split: str = "val", *, transform: Transform | None = None) -> None:
        root = Path(root)
        check_split(split)
        image_dir, label_dir = dark_zurich_folders(root, split)
        layout = f"{root}/rgb_anon/val/{CONDITION}/<sequence> with {root}/gt/val/{CONDITION}/<sequence>"
        if split not in LABELLED_SPLITS:
            layout += f"; Dark Zurich publishes labels for {', '.join(LABELLED_SPLITS)} only"
        require_folders(image_dir, label_dir, layout)
        super().__init__(
            image_dir,
            label_dir,
            dataset="dark-zurich",
            split=split,
            image_suffix="_rgb_anon.png",
            label_suffixes=("_gt_labelTrainIds.png", "_gt_labelIds.png"),
            recursive=True,
            release=RELEASE.get(split),
            transform=transform,
        )
