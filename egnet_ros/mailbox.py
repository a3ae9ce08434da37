"""Between the executor and the inference worker: per camera a one-slot mailbox holding its newest frame.

A frame that arrives while the camera's previous one still waits replaces it (that one is dropped), so each
camera's latency stays about one inference time whatever its rate. A worker takes the waiting frames of
several cameras at once, so cameras that publish together are segmented in one batch, and a camera that has
stopped publishing holds nobody up. With several workers (inference streams), a camera whose frame is in a
worker's hands is not given to another until that worker is ``done`` with it: each camera's outputs stay in
the order of its frames.
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
        self._in_flight: set[str] = set()  # cameras whose frame a worker holds
        self._since: dict[str, int] = {}  # per waiting camera, when its slot filled (a count of puts)
        self._puts = 0
        self._closed = False

    def put(self, camera: str, frame: Frame) -> bool:
        """Store ``camera``'s newest ``frame``; True when it replaced one of that camera's the worker never took."""
        with self._condition:
            if camera not in self._frames:
                raise KeyError(f"no camera {camera!r} in this mailbox; its cameras: {list(self._frames)}")
            replaced = self._frames[camera] is not None
            if not replaced:
                self._since[camera] = self._puts
            self._puts += 1
            self._frames[camera] = frame
            self._condition.notify_all()  # the worker that can take it may not be the one notify would wake
        return replaced

    def take(self, limit: int | None = None) -> dict[str, Frame] | None:
        """The newest waiting frame of up to ``limit`` cameras (all by default) that no other worker holds,
        those waiting longest first (at least one, waiting for it), in the cameras' order; they are held until
        ``done``. None once the mailbox is closed."""
        if limit is not None and limit < 1:
            raise ValueError(f"a worker must take at least one camera's frame, got limit {limit}")
        with self._condition:
            self._condition.wait_for(lambda: self._closed or bool(self._free_waiting()))
            if self._closed:
                return None
            waiting = self._free_waiting()
            picked = set(sorted(waiting, key=self._since.__getitem__)[:limit])
            taken = {camera: self._frames[camera] for camera in waiting if camera in picked}
            for camera in taken:
                self._frames[camera] = None
            self._in_flight |= picked
            return taken

    def done(self, cameras: Iterable[str]) -> None:
        """The worker has published (or given up on) these cameras' frames: their next frames may be taken."""
        with self._condition:
            self._in_flight -= set(cameras)
            self._condition.notify_all()

    def _free_waiting(self) -> list[str]:
        return [camera for camera, frame in self._frames.items() if frame is not None and camera not in self._in_flight]

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
