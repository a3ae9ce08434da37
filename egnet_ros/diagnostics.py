"""What the node reports besides its outputs: a DiagnosticStatus per period built from its FrameCounts, and a
throttle that keeps a camera's repeated bad frames from flooding the log."""

from __future__ import annotations

import re

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from .frame_stats import FrameCounts


class ProblemThrottle:
    """Lets one message of each kind through per period; the kind is the text with its values masked, so a
    camera that keeps sending the same bad frame logs once per period while a new fault is logged at once."""

    _VALUES = re.compile(r"'[^']*'|\d+")

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._last: dict[str, float] = {}

    def allow(self, text: str, now: float) -> bool:
        kind = self._VALUES.sub("#", text)
        if now - self._last.get(kind, -self._period_s) < self._period_s:
            return False
        self._last[kind] = now
        return True


def inference_status(
    name: str, counts: FrameCounts, previous: FrameCounts, *, period_s: float, topic: str, device: str,
    network_input: str,
) -> DiagnosticStatus:
    """The node's health over the last ``period_s``: WARN where frames were invalid or failed in it."""
    new_problems = (counts.invalid - previous.invalid) + (counts.failed - previous.failed)
    if new_problems:
        message = f"{new_problems} invalid or failed frame(s) in the last {period_s:g} s"
    elif counts.received == 0:
        message = f"waiting for images on {topic}"
    else:
        message = f"{(counts.processed - previous.processed) / period_s:.1f} frames/s processed"
    return DiagnosticStatus(
        level=DiagnosticStatus.WARN if new_problems else DiagnosticStatus.OK, name=f"{name}: inference",
        message=message, hardware_id=device,
        values=[KeyValue(key=key, value=value) for key, value in _values(counts) + [("network input", network_input)]],
    )


def _values(counts: FrameCounts) -> list[tuple[str, str]]:
    values = [
        ("received", str(counts.received)),
        ("processed", str(counts.processed)),
        ("dropped (superseded)", str(counts.dropped)),
        ("invalid", str(counts.invalid)),
        ("failed", str(counts.failed)),
    ]
    if counts.latency is not None:
        values += [
            ("latency p50 (ms)", f"{counts.latency.p50 * 1e3:.1f}"),
            ("latency p90 (ms)", f"{counts.latency.p90 * 1e3:.1f}"),
            ("latency p99 (ms)", f"{counts.latency.p99 * 1e3:.1f}"),
            ("inference p50 (ms)", f"{counts.inference.p50 * 1e3:.1f}"),
            ("window (frames)", str(counts.window)),
        ]
    return values
