"""Pictures of predictions for people: colour labels, exposure maps, overlays and labelled strips."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from egnet_core.data.labels import colorize


def exposure_picture(exposure: np.ndarray) -> np.ndarray:
    """H×W exposure in [0, 1] -> H×W×3 RGB, dark (under-exposed) to bright yellow (over-exposed)."""
    levels = np.clip(exposure * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, colours: np.ndarray | None = None) -> np.ndarray:
    """The label palette blended over an RGB image; ignored pixels keep the image. ``colours``: the labels
    already in the palette (the Segmenter's ``color``), to save the lookup."""
    colours = colorize(labels) if colours is None else colours
    blended = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    return np.where((labels == 255)[..., None], image, blended)


def strip(panels: Sequence[tuple[str, np.ndarray]], *, height: int = 256) -> np.ndarray:
    """RGB panels side by side, each scaled to ``height`` and titled in its top-left corner."""
    row = []
    for title, panel in panels:
        if panel.ndim == 2:
            panel = cv2.cvtColor(panel, cv2.COLOR_GRAY2RGB)
        width = round(panel.shape[1] * height / panel.shape[0])
        panel = cv2.resize(panel, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.putText(panel, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(panel, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        row.append(panel)
    return np.concatenate(row, axis=1)
