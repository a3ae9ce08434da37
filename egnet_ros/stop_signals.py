"""SIGINT and SIGTERM as a request to stop, recorded from the first moment of a process's start-up.

Left to Python and rclpy, a signal during a node's start-up ends it badly: SIGINT becomes a KeyboardInterrupt
traceback wherever the main thread is (the seconds of importing torch and rclpy, for one), SIGTERM kills the
process outright until rclpy installs its handler, and rclpy's handler shuts the context down under the node
while it is still creating publishers (an RCLError traceback) or warming up on its worker thread (the
interpreter then exits under that thread: "terminate called without an active exception", SIGABRT).

The handler here raises nothing: an exception raised into an import is turned into an ImportError by the C
extension being initialised. The process checks ``requested`` between its steps and ends after the step under
way. Kept free of torch and rclpy imports, so that the console script installs it before importing them.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Records the first SIGINT or SIGTERM; rclpy's handlers, once installed, call this one after theirs.

    Both signals are handled even where SIGINT was inherited ignored (a node started in the background by a
    script): the node is stopped with either.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal's number
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self._on_signal)

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _on_signal(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
