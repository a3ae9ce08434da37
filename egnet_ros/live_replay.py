"""A bag replayed through the live segmentation node, as a user does with ``ros2 bag play``, its outputs recorded.

The node runs from its console script in its own process with ``use_sim_time``; this process plays the bag
with ``/clock`` and records ``~/labels`` and ``~/exposure`` into a new bag, on a ROS domain of the caller's
choosing so that the replay stays off the user's own graph. The node keeps only the newest frame, so on a slow
CPU it publishes for fewer frames than were played, but never skips the last one: the replay ends once that
frame's outputs are recorded (by their stamp), not after a guessed pause.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from .bag_play import header_stamp, play_bag, wait_until
from .bag_record import BagRecorder
from .dds import use_fastdds_profile
from .node_process import start_segment_node
from .segment_node import NODE_NAME

OUTPUTS = ("labels", "exposure")
IMAGE = "sensor_msgs/msg/Image"


@dataclass(frozen=True)
class LiveReplay:
    played: int  # frames published from the bag
    recorded: dict[str, int]  # output topic -> messages recorded
    complete: bool  # every output of the last frame played was recorded before finish_timeout
    output: Path  # the bag of recorded outputs
    node_log: Path


def replay_through_node(
    bag: str | Path, checkpoint: str | Path, output: str | Path, *, domain_id: int, topic: str = "/camera/image_raw",
    device: str = "auto", start_timeout: float = 120.0, finish_timeout: float = 60.0, overwrite: bool = False,
) -> LiveReplay:
    """Start the node on ``domain_id``, play ``bag`` into it, record its outputs into ``output`` until those of
    the last frame played are in, at most ``finish_timeout`` seconds after the last frame."""
    output = Path(output)
    log_path = output.with_name(f"{output.name}_node.log")
    use_fastdds_profile()
    # Reliable input, as the player publishes: a best-effort subscription can lose the last frame in transport,
    # and the replay waits for that frame's outputs (the node still keeps only the newest frame).
    node_process = start_segment_node(
        ["-p", f"checkpoint:={checkpoint}", "-p", f"device:={device}", "-p", "use_sim_time:=true",
         "-p", "input_reliability:=reliable", "-r", f"image:={topic}"],
        domain_id=domain_id, log=log_path, timeout=start_timeout,
    )
    try:
        played, recorded, complete = _play_and_record(bag, output, topic, domain_id=domain_id,
                                                      finish_timeout=finish_timeout, overwrite=overwrite)
    finally:
        node_process.stop()
    return LiveReplay(played=played, recorded=recorded, complete=complete, output=output, node_log=log_path)


def _play_and_record(
    bag, output: Path, topic: str, *, domain_id: int, finish_timeout: float, overwrite: bool
) -> tuple[int, dict[str, int], bool]:
    """Play ``bag`` with /clock and record the node's outputs, from a context of this process's own: the frames
    played, the outputs recorded and whether those of ``topic``'s last frame were among them."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        node = rclpy.create_node("egnet_replay", context=context,
                                 parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        recorder = BagRecorder(node, output, {f"/{NODE_NAME}/{name}": IMAGE for name in OUTPUTS},
                               storage="mcap", overwrite=overwrite)  # sqlite3 would tie it to this thread
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            # Until the recorder has discovered the node's publishers, so that no output is missed.
            wait_until(lambda: all(node.count_publishers(topic) for topic in recorder.counts), 30.0)
            played = play_bag(node, bag, clock=True, delay=30.0)  # starts once the node subscribes
            last = played.last.get(topic)
            stamp = None if last is None else header_stamp(last, IMAGE)

            def finished() -> bool:  # the last frame's outputs, each with that frame's stamp, are recorded
                return stamp is not None and all(
                    name in recorder.last and header_stamp(recorder.last[name], IMAGE) == stamp
                    for name in recorder.counts)

            wait_until(finished, finish_timeout)
            complete = finished()
        finally:
            executor.shutdown()
            spinner.join(timeout=10)
            recorder.close()
        return played.sent, dict(recorder.counts), complete
    finally:
        rclpy.try_shutdown(context=context)
