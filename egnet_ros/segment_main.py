"""The console scripts ``egnet-segment`` and ``segment_node``: stop signals are handled first, then the node's
imports (torch and rclpy, seconds of them) and the node itself (``egnet_ros.segment_node.main``)."""

from __future__ import annotations

from .stop_signals import StopSignals


def main(args: list[str] | None = None) -> int:
    stop = StopSignals()
    from .segment_node import main as run_node

    return run_node(args, stop=stop)
