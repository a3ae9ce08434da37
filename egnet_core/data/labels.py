"""The 19 Cityscapes training classes that NightCity is annotated with.

The table comes from the official ``cityscapesscripts`` package rather than being retyped here.
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

IGNORE_INDEX = 255

_TRAIN_LABELS = sorted(
    (label for label in _CITYSCAPES_LABELS if 0 <= label.trainId < IGNORE_INDEX), key=lambda label: label.trainId
)

NUM_CLASSES = len(_TRAIN_LABELS)
CLASS_NAMES: tuple[str, ...] = tuple(label.name for label in _TRAIN_LABELS)
# NUM_CLASSES×3 uint8, RGB, row i is the colour of train id i.
PALETTE = np.array([label.color for label in _TRAIN_LABELS], dtype=np.uint8)

# 256-entry lookup table: Cityscapes label id -> train id, IGNORE_INDEX for every id that is not trained on.
_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label in _CITYSCAPES_LABELS:
    if 0 <= _label.id < 256 and 0 <= _label.trainId < IGNORE_INDEX:
        _ID_TO_TRAIN_ID[_label.id] = _label.trainId

# Cityscapes label ids by class name, for code that writes label-id images (the synthetic data set).
LABEL_IDS: dict[str, int] = {label.name: label.id for label in _CITYSCAPES_LABELS if label.id >= 0}


def label_id_to_train_id(label_ids: np.ndarray) -> np.ndarray:
    """Map raw Cityscapes label ids (0-33) to train ids 0..18, with IGNORE_INDEX for everything else."""
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8:
        if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
            raise ValueError(
                f"label ids must lie in 0..255, got values from {label_ids.min()} to {label_ids.max()}"
            )
        label_ids = label_ids.astype(np.uint8)
    return _ID_TO_TRAIN_ID[label_ids]


# 256-entry lookup table: train id -> RGB, black for IGNORE_INDEX and every other id that is not a class.
PALETTE_LUT = np.zeros((256, 3), dtype=np.uint8)
PALETTE_LUT[:NUM_CLASSES] = PALETTE


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """H×W train ids -> H×W×3 RGB uint8 in the Cityscapes palette; ignored pixels are black."""
    return PALETTE_LUT[np.asarray(train_ids, dtype=np.uint8)]
