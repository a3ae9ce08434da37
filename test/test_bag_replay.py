"""A recorded night drive replayed into the live node: ``egnet bag play --clock`` and ``egnet-segment`` with
``use_sim_time``, each in its own process, the node's outputs recorded into a bag."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from helpers import night_frames
from helpers_ros import TYPESTORE, Peer, next_domain_id, read_bag
from rclpy.parameter import Parameter
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String

from egnet_ros.bag_play import header_stamp
from egnet_ros.bag_record import BagRecorder
from egnet_ros.bags import BagError, BagWriter, write_camera_bag
from egnet_ros.live_replay import replay_through_node
from egnet_ros.node_process import NodeProcess

FRAMES = 8
GATE = "/egnet_test/gate"
OUTPUTS = {"/egnet_segment/labels": "mono8", "/egnet_segment/exposure": "32FC1"}
IMAGE = "sensor_msgs/msg/Image"


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


@pytest.mark.integration
def test_a_replayed_drive_is_segmented_once_per_frame_on_the_bag_clock(tmp_path, tiny_checkpoint):
    frames = night_frames(FRAMES, width=160, height=96, seed=11)
    write_camera_bag(tmp_path / "camera", frames, storage="mcap", rate_hz=5.0)
    with Reader(tmp_path / "camera") as reader, BagWriter(tmp_path / "drive", "mcap") as drive:
        records = [(c.topic, c.msgtype, log_time, data) for c, log_time, data in reader.messages()]
        for record in records:
            drive.write(*record)
        # A gate: the player waits for a subscriber on every topic it plays, and only the recorder takes this one.
        gate = TYPESTORE.types["std_msgs/msg/String"](data="drive starts")
        drive.write(GATE, "std_msgs/msg/String", records[0][2], bytes(TYPESTORE.serialize_cdr(gate, gate.__msgtype__)))
        input_stamps = {stamp_ns(TYPESTORE.deserialize_cdr(data, msgtype)) for _, msgtype, _, data in records}
        bag_start, bag_end = reader.start_time, reader.end_time

    domain_id = next_domain_id()
    # Reliable input, as replay_through_node starts it: best effort could lose the last frame in transport.
    node = NodeProcess.script("egnet-segment", ["--ros-args", "-p", f"checkpoint:={tiny_checkpoint}",
                                                "-p", "use_sim_time:=true", "-p", "input_reliability:=reliable",
                                                "-r", "image:=/camera/image_raw"],
                              domain_id=domain_id, log=tmp_path / "node.log")
    peer = Peer(domain_id)
    peer.node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])  # record at bag time
    try:
        node.wait_until_ready(domain_id)
        recorder = BagRecorder(peer.node, tmp_path / "outputs", {**dict.fromkeys(OUTPUTS, "sensor_msgs/msg/Image"),
                                                                 "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"})
        peer.spin_until(lambda: all(peer.node.count_publishers(topic) for topic in OUTPUTS), 20,
                        "the recorder to see the node's publishers")
        # Made after the recorder's /clock subscription: DDS announces a participant's endpoints in order, so once
        # the player has matched the gate it has matched the recorder's /clock too, and no second of bag time can
        # pass the recorder by (the node's /clock alone would let the player start).
        peer.record(String, GATE)
        player = NodeProcess.script("egnet", ["bag", "play", str(tmp_path / "drive"), "--clock", "--delay", "60",
                                              "--topics", "/camera/image_raw", GATE],
                                    domain_id=domain_id, log=tmp_path / "play.log")
        peer.spin_until(lambda: player.process.poll() is not None, 90, "the player to finish")
        assert player.wait() == 0, player.output
        assert f"played {FRAMES + 1} messages" in player.output
        # The node keeps the newest frame only, so it may skip frames on a busy machine, but never the last one.
        last = max(input_stamps)
        peer.spin_until(lambda: all(topic in recorder.last and header_stamp(recorder.last[topic], IMAGE) == last
                                    for topic in OUTPUTS), 30, "the last frame's outputs")
        recorder.close()
        assert node.stop() == 0
    finally:
        peer.close()
        node.kill()

    outputs = read_bag(tmp_path / "outputs")
    for topic, encoding in OUTPUTS.items():
        stamps = [stamp_ns(msg) for _, msg in outputs[topic]]
        assert 1 <= len(stamps) <= FRAMES and stamps[-1] == max(input_stamps), (topic, stamps)
        assert set(stamps) <= input_stamps, f"{topic}: every output carries an input frame's stamp"
        assert len(set(stamps)) == len(stamps), f"{topic}: nothing published twice for a frame"
        for _, msg in outputs[topic]:
            assert (msg.width, msg.height, msg.encoding) == (160, 96, encoding)
            assert msg.header.frame_id == "camera_optical"
    # use_sim_time: the node's clock, and so its diagnostics' stamps, followed /clock through the bag's time.
    diagnostics_stamps = [stamp_ns(msg) for _, msg in outputs["/diagnostics"]]
    assert any(bag_start <= stamp <= bag_end for stamp in diagnostics_stamps), (diagnostics_stamps, bag_start, bag_end)
    # The recorder ran on the bag's clock too: outputs are logged at bag time, after their frame's stamp.
    for log_time, msg in outputs["/egnet_segment/labels"]:
        assert stamp_ns(msg) <= log_time <= bag_end + 10**9


@pytest.mark.integration
def test_the_recorder_logs_messages_that_beat_the_first_clock_at_the_bag_time_not_at_zero(tmp_path):
    domain_id = next_domain_id()
    recording, source = Peer(domain_id, "egnet_test_recorder"), Peer(domain_id, "egnet_test_source")
    recording.node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
    try:
        recorder = BagRecorder(recording.node, tmp_path / "outputs", {"/labels": "std_msgs/msg/String"},
                               storage="mcap")
        seen = recording.record(String, "/labels")
        labels, clock = source.publisher(String, "/labels"), source.publisher(Clock, "/clock")
        source.spin_until(lambda: labels.get_subscription_count() == 2 and clock.get_subscription_count() == 1, 20,
                          "the recorder's subscriptions")
        labels.publish(String(data="before the clock"))
        recording.spin_until(lambda: len(seen) == 1, 10, "the first message")
        recording.spin_for(0.5)  # the recorder's own subscription has it too by now
        assert recorder.counts["/labels"] == 0  # held back: the clock still reads 0
        clock.publish(Clock(clock=Time(sec=1_700_000_000)))
        recording.spin_until(lambda: recording.node.get_clock().now().nanoseconds > 0, 10, "the first /clock")
        labels.publish(String(data="after the clock"))
        recording.spin_until(lambda: recorder.counts["/labels"] == 2, 10, "both messages written")
        recorder.close()
    finally:
        recording.close()
        source.close()
    log_times = [log_time for log_time, _ in read_bag(tmp_path / "outputs")["/labels"]]
    assert log_times == [1_700_000_000 * 10**9] * 2


@pytest.mark.integration
@pytest.mark.parametrize("sig, background", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["ctrl-c", "sigterm", "sigint-to-a-background-job"])
def test_play_loops_over_the_chosen_topics_until_stopped(tmp_path, sig, background):
    write_camera_bag(tmp_path / "drive", night_frames(3, width=64, height=48, seed=5), rate_hz=20.0)
    domain_id = next_domain_id()
    peer = Peer(domain_id)
    frames = peer.record(Image, "/camera/image_raw", 10)
    player = NodeProcess.script("egnet", ["bag", "play", str(tmp_path / "drive"), "--loop", "--rate", "2",
                                          "--topics", "/camera/image_raw", "--delay", "1"],
                                domain_id=domain_id, log=tmp_path / "play.log", background=background)
    try:
        peer.spin_until(lambda: len(frames) >= 9, 30, "three rounds of the three-frame bag")
        assert player.stop(sig) == 0, player.output
    finally:
        peer.close()
        player.kill()
    assert "Traceback" not in player.output
    assert {stamp_ns(msg) for msg in frames} == {1_700_000_000_000_000_000 + i * 50_000_000 for i in range(3)}


@pytest.mark.integration
def test_play_names_a_topic_the_bag_does_not_have(tmp_path):
    write_camera_bag(tmp_path / "drive", [np.zeros((48, 64, 3), np.uint8)])
    player = NodeProcess.script("egnet", ["bag", "play", str(tmp_path / "drive"), "--topics", "/lidar/points"],
                                domain_id=next_domain_id(), log=tmp_path / "play.log")
    assert player.wait() == 2
    assert "has no topic '/lidar/points'; its topics: ['/camera/image_raw']" in player.output


@pytest.mark.integration
def test_a_failed_replay_leaves_no_node_running(tmp_path, tiny_checkpoint):
    write_camera_bag(tmp_path / "drive", [np.zeros((48, 64, 3), np.uint8)])
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs/notes.txt").write_text("not a bag")
    with pytest.raises(BagError, match="is not a bag egnet wrote"):
        replay_through_node(tmp_path / "drive", tiny_checkpoint, tmp_path / "outputs", domain_id=next_domain_id(),
                            device="cpu", overwrite=True)
    log = (tmp_path / "outputs_node.log").read_text()
    assert "ready:" in log and "summary: received 0" in log, "the node was started, then stopped with SIGINT"
