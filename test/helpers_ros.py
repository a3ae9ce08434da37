"""Builders and readers of real sensor_msgs messages and bags, written independently of egnet_ros, and a ROS graph of
each test's own."""

from __future__ import annotations

import array
import fcntl
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image
from std_msgs.msg import Header

# Padding bytes are set to a value no test image uses in bulk, so a conversion that reads them shows up.
PADDING_BYTE = 0xA5

# Another distro's message definitions than egnet_ros.bags writes with (Jazzy): bags read with them prove they agree.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)


def make_header(frame_id: str = "camera_optical", sec: int = 1_700_000_000, nanosec: int = 123_456_789) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec = sec
    header.stamp.nanosec = nanosec
    return header


def make_image_msg(pixels: np.ndarray, encoding: str, *, step: int | None = None, bigendian: bool = False) -> Image:
    """An Image whose rows are ``pixels`` already in the encoding's layout (H×W or H×W×bytes), padded to ``step``.

    Multi-byte samples are written in the byte order ``bigendian`` asks for.
    """
    pixels = np.asarray(pixels)
    height, width = pixels.shape[:2]
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    step = rows.shape[1] if step is None else step
    padded = np.full((height, step), PADDING_BYTE, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image(
        header=make_header(), height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=step
    )
    msg.data = array.array("B", padded.tobytes())
    return msg


def image_pixels(msg, dtype: str, channels: int = 1) -> np.ndarray:
    """The pixels of an unpadded Image, rclpy's or a bag's, as H×W (one channel) or H×W×channels of ``dtype``."""
    pixels = np.frombuffer(bytes(msg.data), dtype=dtype).reshape(msg.height, msg.width, channels)
    return pixels[..., 0] if channels == 1 else pixels


def read_bag(path) -> dict[str, list]:
    """topic -> [(log time, decoded message)], read with rosbags directly."""
    messages: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, log_time, data in reader.messages():
            messages.setdefault(connection.topic, []).append(
                (log_time, TYPESTORE.deserialize_cdr(data, connection.msgtype)))
    return messages


# ----------------------------------------------------------------------------------------------------------
# A ROS graph of the test's own: one context on a domain no other test uses, discovery kept on this host.
# Each pytest process holds an flock on one block of domain ids for its lifetime, so that test runs side by side on
# one machine (two checkouts, CI jobs) never share a domain; within its block a process takes the ids in turn (the
# test that had an id 20 tests ago has stopped its processes).
DOMAIN_BLOCK = 20
DOMAIN_BLOCKS = 11  # ids 1..220: Fast DDS's ports allow domain ids up to 232
_LOCKS = Path(tempfile.gettempdir()) / "egnet-test-domains"
_held: dict[str, object] = {}


def _domain_ids() -> Iterator[int]:
    _LOCKS.mkdir(exist_ok=True)
    for block in range(DOMAIN_BLOCKS):
        lock = (_LOCKS / f"block{block}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another pytest process holds it
            lock.close()
            continue
        _held["lock"] = lock  # released when this process exits
        return (1 + block * DOMAIN_BLOCK + index % DOMAIN_BLOCK for index in itertools.count())
    raise RuntimeError(f"all {DOMAIN_BLOCKS} blocks of ROS domain ids under {_LOCKS} are held by other test runs")


_DOMAIN_IDS: Iterator[int] | None = None


def next_domain_id() -> int:
    global _DOMAIN_IDS
    if _DOMAIN_IDS is None:
        _DOMAIN_IDS = _domain_ids()
    return next(_DOMAIN_IDS)


class Peer:
    """The test's side of the graph: publishers and recording subscriptions on one node, spun on demand."""

    def __init__(self, domain_id: int, name: str = "egnet_test_peer") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def publisher(self, msg_type, topic: str, qos: QoSProfile | int = 10):
        return self.node.create_publisher(msg_type, topic, qos)

    def record(self, msg_type, topic: str, qos: QoSProfile | int = 10) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for_subscriber(self, publisher, timeout: float = 20.0) -> None:
        self.spin_until(
            lambda: publisher.get_subscription_count() > 0, timeout, f"a subscriber on {publisher.topic_name}"
        )

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


