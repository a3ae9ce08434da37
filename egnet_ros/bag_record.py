"""Recording topics into a new bag, as ``ros2 bag record`` would, for machines where it is missing.

Subscriptions are raw: each message is written as the bytes DDS delivered, with the node clock's time of
receipt as its log time (the bag's time under ``use_sim_time``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from .bag_play import message_class
from .bags import BagWriter

RECORD_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)


class BagRecorder:
    """Records ``topics`` (topic -> message type, e.g. ``sensor_msgs/msg/Image``) from ``node`` into a bag at
    ``path`` while the node is spun; ``close`` finishes the bag. A sqlite3 bag must be written from the thread
    that made it: spin elsewhere only with ``storage="mcap"``."""

    def __init__(self, node: Node, path: str | Path, topics: Mapping[str, str], *, storage: str = "sqlite3",
                 overwrite: bool = False) -> None:
        self._node = node
        self._writer = BagWriter(path, storage, overwrite=overwrite).__enter__()
        self.counts = dict.fromkeys(topics, 0)
        self.last: dict[str, bytes] = {}  # topic -> its last message received (serialized), written or pending
        self._pending: list[tuple[str, str, bytes]] = []  # received before the clock started (use_sim_time)
        self._subscriptions = [
            node.create_subscription(message_class(msgtype), topic, self._writer_for(topic, msgtype), RECORD_QOS,
                                     raw=True)
            for topic, msgtype in topics.items()
        ]

    def _writer_for(self, topic: str, msgtype: str):
        def write(data: bytes) -> None:
            self.last[topic] = data
            self._pending.append((topic, msgtype, data))
            self._flush()

        return write

    def _flush(self, *, closing: bool = False) -> None:
        """Write what has come in, at the node clock's time. Under use_sim_time the clock reads 0 until the
        first /clock arrives, and that can come after a message: such messages wait for the bag's time to
        start rather than be logged at 0, before the recording (at 0 only if it never starts)."""
        now = self._node.get_clock().now().nanoseconds
        if now == 0 and not closing:
            return
        for topic, msgtype, data in self._pending:
            self._writer.write(topic, msgtype, now, data)
            self.counts[topic] += 1
        self._pending.clear()

    def close(self) -> None:
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._flush(closing=True)
        self._writer.__exit__(None, None, None)
