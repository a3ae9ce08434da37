"""Cityscapes (Cordts et al., CVPR 2016) fine annotations, the day-time half of the paper's "C + N" training set.

Layout, as unpacked from ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``::

    root/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (or _gtFine_trainIds.png)

The other gtFine files (``_color``, ``_instanceIds``, ``_polygons.json``) are skipped. "C + N" is
``torch.utils.data.ConcatDataset([Cityscapes(...), NightCity(...)])``: both hand out the same samples.
"""

from __future__ import annotations

import os
from pathlib import Path

from egnet_core.data.nightcity import LABEL_IDS, TRAIN_IDS, LabelledImageFolder, Transform, check_split, require_folders


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
            label_suffixes=(f"_gtFine_{LABEL_IDS}.png", f"_gtFine_{TRAIN_IDS}.png"),
            recursive=True,
            transform=transform,
        )
