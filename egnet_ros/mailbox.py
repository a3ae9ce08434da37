"""Between the executor and the inference worker: per camera a one-slot mailbox holding its newest frame.

A frame that arrives while the camera's previous one still waits replaces it (that one is dropped), so each
camera's latency stays about one inference time whatever its rate. The worker takes the waiting frame of
every camera at once, so cameras that publish together are segmented in one batch, and a camera that has
stopped publishing holds nobody up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sensor_msgs.msg import CompressedImage, Image


@dataclass(frozen=True)
class Frame:
    msg: Image | CompressedImage
    received: float  # time.perf_counter() when the callback stored it


class LatestFrames:
    """One slot per camera name; ``put`` from the subscription callbacks, ``take`` from the worker."""

    def __init__(self, cameras: Iterable[str]) -> None:
        self._condition = threading.Condition()
        self._frames: dict[str, Frame | None] = dict.fromkeys(cameras)
        if not self._frames:
            raise ValueError("a mailbox needs at least one camera")
        self._closed = False

    def put(self, camera: str, frame: Frame) -> bool:
        """Store ``camera``'s newest ``frame``; True when it replaced one of that camera's the worker never took."""
        with self._condition:
            if camera not in self._frames:
                raise KeyError(f"no camera {camera!r} in this mailbox; its cameras: {list(self._frames)}")
            replaced = self._frames[camera] is not None
            self._frames[camera] = frame
            self._condition.notify()
        return replaced

    def take(self) -> dict[str, Frame] | None:
        """The newest waiting frame of every camera that has one (at least one, waiting for it), in the cameras'
        order; None once the mailbox is closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._closed or any(f is not None for f in self._frames.values()))
            if self._closed:
                return None
            taken = {camera: frame for camera, frame in self._frames.items() if frame is not None}
            self._frames = dict.fromkeys(self._frames)
            return taken

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
