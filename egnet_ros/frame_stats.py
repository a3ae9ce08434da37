"""What happened to the frames a node received: counters and latency percentiles, safe across threads.

The subscription callback counts frames in and the worker thread counts them out; the diagnostics timer
and the shutdown summary read a consistent ``FrameCounts`` snapshot.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 100  # processed frames the percentiles are taken over: a few seconds at camera rates


@dataclass(frozen=True)
class Percentiles:
    p50: float  # seconds
    p90: float
    p99: float


@dataclass(frozen=True)
class FrameCounts:
    received: int
    processed: int  # predicted and published
    dropped: int  # superseded by a newer frame before the worker took it
    invalid: int  # refused by the conversion: bad encoding, size, step or data
    failed: int  # the prediction raised (CUDA out of memory, a device error)
    latency: Percentiles | None  # receipt -> outputs published, over the window; None before the first frame
    inference: Percentiles | None  # the prediction alone, over the same window
    window: int  # frames the percentiles cover

    def summary(self) -> str:
        text = (
            f"received {self.received}, processed {self.processed}, dropped {self.dropped} (superseded), "
            f"invalid {self.invalid}, failed {self.failed}"
        )
        if self.latency is None:
            return text
        return (
            f"{text}; latency p50 {self.latency.p50 * 1e3:.1f} ms, p90 {self.latency.p90 * 1e3:.1f} ms, "
            f"p99 {self.latency.p99 * 1e3:.1f} ms; inference p50 {self.inference.p50 * 1e3:.1f} ms "
            f"(last {self.window} frames)"
        )


class FrameStats:
    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"the latency window must hold at least 1 frame, got {window!r}")
        self._lock = threading.Lock()
        self._received = self._processed = self._dropped = self._invalid = self._failed = 0
        self._latency: deque[float] = deque(maxlen=window)
        self._inference: deque[float] = deque(maxlen=window)

    def count_received(self) -> None:
        with self._lock:
            self._received += 1

    def count_dropped(self) -> None:
        with self._lock:
            self._dropped += 1

    def count_invalid(self) -> None:
        with self._lock:
            self._invalid += 1

    def count_failed(self) -> None:
        with self._lock:
            self._failed += 1

    def count_processed(self, *, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self._processed += 1
            self._latency.append(latency_s)
            self._inference.append(inference_s)

    def snapshot(self) -> FrameCounts:
        with self._lock:
            latency, inference = list(self._latency), list(self._inference)
            counts = (self._received, self._processed, self._dropped, self._invalid, self._failed)
        received, processed, dropped, invalid, failed = counts
        return FrameCounts(
            received=received,
            processed=processed,
            dropped=dropped,
            invalid=invalid,
            failed=failed,
            latency=_percentiles(latency),
            inference=_percentiles(inference),
            window=len(latency),
        )


def _percentiles(seconds: list[float]) -> Percentiles | None:
    if not seconds:
        return None
    p50, p90, p99 = np.percentile(seconds, [50, 90, 99])
    return Percentiles(p50=float(p50), p90=float(p90), p99=float(p99))
