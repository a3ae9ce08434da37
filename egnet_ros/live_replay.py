"""A bag replayed through the live segmentation node, as a user does with ``ros2 bag play``, its outputs recorded.

The node runs from its console script in its own process with ``use_sim_time``; this process plays the bag
with ``/clock`` and records ``~/labels`` and ``~/exposure`` into a new bag, on a ROS domain of the caller's
choosing so that the replay stays off the user's own graph.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from .bag_play import play_bag, wait_until
from .bag_record import BagRecorder
from .dds import use_fastdds_profile
from .node_process import start_segment_node
from .segment_node import NODE_NAME

OUTPUTS = ("labels", "exposure")


@dataclass(frozen=True)
class LiveReplay:
    played: int  # frames published from the bag
    recorded: dict[str, int]  # output topic -> messages recorded
    output: Path  # the bag of recorded outputs
    node_log: Path


def replay_through_node(
    bag: str | Path, checkpoint: str | Path, output: str | Path, *, domain_id: int, topic: str = "/camera/image_raw",
    device: str = "auto", start_timeout: float = 120.0, settle: float = 3.0, overwrite: bool = False,
) -> LiveReplay:
    """Start the node on ``domain_id``, play ``bag`` into it, record its outputs into ``output``."""
    output = Path(output)
    log_path = output.with_name(f"{output.name}_node.log")
    use_fastdds_profile()
    node_process = start_segment_node(
        ["-p", f"checkpoint:={checkpoint}", "-p", f"device:={device}", "-p", "use_sim_time:=true",
         "-r", f"image:={topic}"],
        domain_id=domain_id, log=log_path, timeout=start_timeout,
    )
    try:
        played, recorded = _play_and_record(bag, output, domain_id=domain_id, settle=settle, overwrite=overwrite)
    finally:
        node_process.stop()
    return LiveReplay(played=played, recorded=recorded, output=output, node_log=log_path)


def _play_and_record(
    bag, output: Path, *, domain_id: int, settle: float, overwrite: bool
) -> tuple[int, dict[str, int]]:
    """Play ``bag`` with /clock and record the node's outputs, from a context of this process's own."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        node = rclpy.create_node("egnet_replay", context=context,
                                 parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        recorder = BagRecorder(node, output, {f"/{NODE_NAME}/{name}": "sensor_msgs/msg/Image" for name in OUTPUTS},
                               storage="mcap", overwrite=overwrite)  # sqlite3 would tie it to this thread
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            # Until the recorder has discovered the node's publishers, so that no output is missed.
            wait_until(lambda: all(node.count_publishers(topic) for topic in recorder.counts), 30.0)
            played = play_bag(node, bag, clock=True, delay=30.0)  # starts once the node subscribes
            time.sleep(settle)  # the last frame's outputs are still on their way
        finally:
            executor.shutdown()
            spinner.join(timeout=10)
            recorder.close()
        return played, dict(recorder.counts)
    finally:
        rclpy.try_shutdown(context=context)
