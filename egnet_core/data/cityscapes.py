"""Cityscapes (Cordts et al., CVPR 2016) fine annotations, the day-time half of the paper's "C + N" training set.

Layout, as unpacked from ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``::

    root/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Train-id labels are read as they are, under the name cityscapesscripts' ``createTrainIdLabelImgs`` and
mmsegmentation write, ``_gtFine_labelTrainIds.png`` (or ``_gtFine_trainIds.png``); a split holding both kinds is
read from its ``_labelIds`` files. The other gtFine files (``_color``, ``_instanceIds``, ``_polygons.json``) are
skipped. City folders may be links (to other disks, say): they are followed. "C + N" is
``torch.utils.data.ConcatDataset([Cityscapes(...), NightCity(...)])``: both hand out the same samples.
"""

from __future__ import annotations

import os
from pathlib import Path

from egnet_core.data.nightcity import LabelledImageFolder, Transform, check_split, require_folders

# Image/label pairs per split of leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip.
RELEASE = {"train": 2975, "val": 500}


class Cityscapes(LabelledImageFolder):
    """One split of Cityscapes' finely annotated images, with the same pairing rules and samples as NightCity."""

    def __init__(self, root: str | os.PathLike, split: str = "train", *, transform: Transform | None = None) -> None:
        root = Path(root)
        check_split(split)
        image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        require_folders(image_dir, label_dir, f"{root}/leftImg8bit/{split}/<city> with {root}/gtFine/{split}/<city>")
        super().__init__(
            image_dir,
            label_dir,
            dataset="cityscapes",
            split=split,
            image_suffix="_leftImg8bit.png",
            label_suffixes=("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png", "_gtFine_trainIds.png"),
            recursive=True,
            release=RELEASE[split],
            transform=transform,
        )
