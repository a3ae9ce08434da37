"""``egnet bag play``: publish a bag's messages with their recorded timing, where ``ros2 bag play`` is missing.

Messages are published as the bytes the bag holds (no decoding), at their log times scaled by ``rate``; with
``clock``, ``/clock`` follows the bag's time (every message, and 25 times a second between them) so that nodes
with ``use_sim_time`` run on the recording's clock. The player returns once its reliable subscribers have
acknowledged every message (at most ``ACK_TIMEOUT_S``): a writer destroyed before that loses what it still holds,
which was the bag's last frame for a node busy with the one before (seen in 2 of 4 runs of a replay test).
"""

from __future__ import annotations

import importlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from .bags import BagError, image_connections, open_bag, read_records
from .dds import use_fastdds_profile

log = logging.getLogger(__name__)

CLOCK_PERIOD_S = 0.04
ACK_TIMEOUT_S = 10.0  # after the last message, how long the player waits for its subscribers' acknowledgements
# Reliable publishers serve best-effort and reliable subscribers alike.
PLAY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


def message_class(msgtype: str) -> type:
    """``sensor_msgs/msg/Image`` -> the rclpy message class; BagError when its package is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as error:
        raise BagError(f"cannot publish {msgtype}: its Python message package is not installed ({error})") from None


@dataclass(frozen=True)
class Played:
    sent: int  # messages published
    last: dict[str, bytes]  # topic -> its last message as published (serialized), for what waits on its outputs


def play_bag(
    node: Node,
    path: str | Path,
    *,
    rate: float = 1.0,
    loop: bool = False,
    topics: Sequence[str] | None = None,
    clock: bool = False,
    delay: float = 5.0,
) -> Played:
    """Publish the bag's image topics (or ``topics``, of any installed type) from ``node``, once every topic
    has a subscriber or after ``delay`` seconds; what was sent."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    with open_bag(path) as reader:
        connections = _connections(reader, topics, path)
        publishers = {c.topic: node.create_publisher(message_class(c.msgtype), c.topic, PLAY_QOS) for c in connections}
        clock_publisher = node.create_publisher(Clock, "/clock", PLAY_QOS) if clock else None
        # DDS sends nothing to peers it has not discovered yet: frames published before discovery would be lost.
        everyone = [*publishers.values(), *([clock_publisher] if clock_publisher else [])]
        wait_until(lambda: all(p.get_subscription_count() for p in everyone), delay)
        sent, last = 0, {}
        while True:
            sent_now = _play_once(reader, connections, path, publishers, clock_publisher, rate, last)
            sent += sent_now
            if not loop or sent_now == 0:  # an empty selection would otherwise loop at full speed
                _wait_for_acknowledgements(everyone)
                return Played(sent=sent, last=last)


def _wait_for_acknowledgements(publishers, timeout_s: float = ACK_TIMEOUT_S) -> None:
    """Until every reliable subscriber has acknowledged every message of ``publishers`` (bounded; logged when not)."""
    deadline = time.monotonic() + timeout_s
    for publisher in publishers:
        left = max(deadline - time.monotonic(), 0.0)
        if not publisher.wait_for_all_acked(Duration(nanoseconds=round(left * 1e9))):
            log.warning("%s: not every subscriber acknowledged the last messages within %.0f s", publisher.topic_name,
                        timeout_s)


def wait_until(condition, timeout: float, poll_s: float = 0.05) -> None:
    """Until ``condition()`` holds, at most ``timeout`` seconds (discovery has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(poll_s)


def _connections(reader, topics: Sequence[str] | None, path: str | Path) -> list:
    if topics is None:
        return image_connections(reader, None, path)
    missing = sorted(set(topics) - {c.topic for c in reader.connections})
    if missing:
        raise BagError(f"bag {str(path)!r} has no topic {', '.join(map(repr, missing))}; its topics: "
                       f"{sorted({c.topic for c in reader.connections})}")
    return [c for c in reader.connections if c.topic in topics]


def header_stamp(data: bytes, msgtype: str) -> int:
    """Nanoseconds of the header stamp of a serialized message of ``msgtype`` (one with a ``header``)."""
    stamp = deserialize_message(data, message_class(msgtype)).header.stamp
    return stamp.sec * 10**9 + stamp.nanosec


def _play_once(reader, connections, path, publishers, clock_publisher, rate: float, last: dict[str, bytes]) -> int:
    start_wall = start_bag = None
    sent = 0
    for record in read_records(reader, connections, path):
        if start_wall is None:
            start_wall, start_bag = time.monotonic(), record.log_time
        due = start_wall + (record.log_time - start_bag) / 1e9 / rate
        while (wait := due - time.monotonic()) > 0:
            if clock_publisher is not None:
                bag_now = start_bag + round((time.monotonic() - start_wall) * rate * 1e9)
                _publish_clock(clock_publisher, min(bag_now, record.log_time))
            time.sleep(min(wait, CLOCK_PERIOD_S))
        if clock_publisher is not None:
            _publish_clock(clock_publisher, record.log_time)
        publishers[record.topic].publish(record.data)
        last[record.topic] = record.data
        sent += 1
    return sent


def _publish_clock(publisher, nanoseconds: int) -> None:
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(nanoseconds, 10**9)
    publisher.publish(msg)


def main(path: Path, *, rate: float, loop: bool, topics: Sequence[str] | None, clock: bool, delay: float) -> int:
    """The CLI's ``egnet bag play``: its own rclpy context and node; Ctrl-C ends it cleanly."""
    use_fastdds_profile()
    # Nothing spins here, so rclpy's own handler is not wanted: it shuts the context down from the signal,
    # and a publish already under way then fails. Ctrl-C and SIGTERM raise KeyboardInterrupt instead, also
    # where the player inherited SIGINT ignored (a job started in the background by a script).
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.default_int_handler)
    node = rclpy.create_node("egnet_bag_player")
    try:
        played = play_bag(node, path, rate=rate, loop=loop, topics=topics, clock=clock, delay=delay)
        print(f"played {played.sent} messages from {path}")
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
