"""What the node reports besides its outputs: DiagnosticStatus per period built from its FrameCounts (the node's
own, and one per camera with its batch sizes and exposure health), and a throttle that keeps a camera's repeated
bad frames from flooding the log."""

from __future__ import annotations

import re
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from egnet_core.data.exposure import ExposureHealth

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
    network_input: str, precision: str, batch_sizes: dict[int, int], streams: int = 1,
) -> DiagnosticStatus:
    """The node's health over the last ``period_s`` (every camera's frames together): WARN where frames were
    invalid or failed in it."""
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
        values=[KeyValue(key=key, value=value) for key, value in _values(counts) + [
            ("network input", network_input), ("precision", precision), ("inference streams", str(streams)),
            ("batch sizes", _batch_text(batch_sizes))]],
    )


@dataclass(frozen=True)
class ExposureLimits:
    """A camera is reported (WARN) when at least this share of its last frame is in the darkest bin (mostly
    black: a covered lens, a dead sensor) or in the brightest (mostly saturated: glare)."""

    dark_share: float
    bright_share: float


def camera_status(
    name: str, camera: str, counts: FrameCounts, previous: FrameCounts, *, period_s: float, topic: str,
    batch_sizes: dict[int, int], health: ExposureHealth | None, limits: ExposureLimits,
) -> DiagnosticStatus:
    """One camera over the last ``period_s``: WARN for invalid or failed frames in it and for a mostly black or
    mostly saturated last frame; STALE while the camera sends nothing."""
    problems = []
    new_problems = (counts.invalid - previous.invalid) + (counts.failed - previous.failed)
    if new_problems:
        problems.append(f"{new_problems} invalid or failed frame(s) in the last {period_s:g} s")
    if health is not None and health.dark_share >= limits.dark_share:
        problems.append(f"mostly black: {health.dark_share:.0%} of the last frame below V 0.1")
    if health is not None and health.bright_share >= limits.bright_share:
        problems.append(f"mostly saturated: {health.bright_share:.0%} of the last frame at V 0.9 or above")
    silent = counts.received == previous.received
    if problems:
        level, message = DiagnosticStatus.WARN, "; ".join(problems)
    elif silent:
        level = DiagnosticStatus.STALE
        message = f"waiting for images on {topic}" if counts.received == 0 else \
            f"no images on {topic} in the last {period_s:g} s"
    else:
        level, message = DiagnosticStatus.OK, f"{(counts.processed - previous.processed) / period_s:.1f} frames/s"
    values = _values(counts) + [("topic", topic), ("batch sizes", _batch_text(batch_sizes))]
    if health is not None:
        values += [("dark share (V < 0.1)", f"{health.dark_share:.3f}"),
                   ("bright share (V >= 0.9)", f"{health.bright_share:.3f}"),
                   ("mean exposure", f"{health.mean:.3f}")]
    return DiagnosticStatus(level=level, name=f"{name}: camera {camera}", message=message, hardware_id=camera,
                            values=[KeyValue(key=key, value=value) for key, value in values])


def _batch_text(batch_sizes: dict[int, int]) -> str:
    """``{1: 12, 3: 40}`` -> ``"1: 12, 3: 40"`` (batch size: batches run); ``"none"`` before any."""
    return ", ".join(f"{size}: {count}" for size, count in batch_sizes.items()) or "none"


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
