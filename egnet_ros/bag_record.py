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
        self._subscriptions = [
            node.create_subscription(message_class(msgtype), topic, self._writer_for(topic, msgtype), RECORD_QOS,
                                     raw=True)
            for topic, msgtype in topics.items()
        ]

    def _writer_for(self, topic: str, msgtype: str):
        def write(data: bytes) -> None:
            self._writer.write(topic, msgtype, self._node.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1

        return write

    def close(self) -> None:
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._writer.__exit__(None, None, None)
