"""What a data set hands out: a ``RawSample`` as read from disk, and the ``Sample`` tensors a model trains on."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from egnet_core.data.exposure import exposure_map


class RawSample(NamedTuple):
    """One image with its label map, as read from disk (labels already converted to train ids)."""

    image: np.ndarray  # H×W×3 uint8 RGB
    label: np.ndarray  # H×W uint8 train ids 0..18, IGNORE_INDEX elsewhere (NightCity+ val: 2H×2W)
    name: str  # file name without suffixes, e.g. 'Chicago_0000'


class Sample(NamedTuple):
    """Network input and targets; a NamedTuple so that torch's ``default_collate`` batches it field by field."""

    image: torch.Tensor  # 3×H×W float32 RGB in [0, 1], not normalised: the model normalises internally
    label: torch.Tensor  # H×W int64 train ids, IGNORE_INDEX for unlabelled pixels
    exposure: torch.Tensor  # 1×H×W float32, the V channel of ``image`` (the exposure-guidance target)


def to_sample(image: np.ndarray, label: np.ndarray) -> Sample:
    """H×W×3 uint8 RGB image and its train-id label map -> ``Sample``; the exposure is taken from these pixels."""
    exposure = torch.from_numpy(exposure_map(image))[None]  # 1×H×W
    # Flips leave negative strides, which torch.from_numpy refuses.
    pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # 3×H×W uint8
    return Sample(
        image=pixels.to(torch.float32).div_(255),
        label=torch.from_numpy(np.ascontiguousarray(label)).to(torch.int64),
        exposure=exposure,
    )
