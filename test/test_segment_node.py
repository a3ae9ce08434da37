"""The segmentation node as a user runs it: the console script in its own process, real DDS, real messages.

Each test has its own ROS domain, so tests never hear each other; the test process publishes camera frames and
records what the node publishes.
"""

from __future__ import annotations

import json
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from helpers import constant_model, night_frames, tiny_model, tiny_torchvision_model
from helpers_ros import Peer, image_pixels, make_header, make_image_msg, next_domain_id
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from egnet_core.data.exposure import ExposureHealth, exposure_map
from egnet_core.data.labels import CLASS_NAMES, PALETTE
from egnet_core.deploy.export import export_onnx
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import available_cpus
from egnet_core.model.checkpoint import save_checkpoint
from egnet_ros.diagnostics import ProblemThrottle
from egnet_ros.mailbox import LatestFrames
from egnet_ros.node_process import READY_LINE, NodeProcess
from egnet_ros.segment_node import PARAMETERS
from egnet_ros.segment_parameters import ParameterError, resolve_streams

ROOT = Path(__file__).resolve().parent.parent
CAR = CLASS_NAMES.index("car")
CAMERA = "/camera/image_raw"
NODE = "/egnet_segment"
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def write_params(path: Path, **values) -> Path:
    """The shipped config/segment.yaml with ``values`` put over it (``model.backbone`` for nested keys)."""
    document = yaml.safe_load((ROOT / "config/segment.yaml").read_text())
    parameters = document["/**"]["ros__parameters"]
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        (parameters[section] if section else parameters)[name] = value
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def graph(request, tmp_path):
    """Start node processes and one test peer on a fresh domain; everything is stopped at the end."""

    class Graph:
        domain_id = next_domain_id()
        processes: list[NodeProcess] = []

        def start(self, checkpoint: Path, *extra: str, wait: bool = True, env: dict | None = None,
                  **params) -> NodeProcess:
            # fp32 unless a test says otherwise: precision auto's trials would add seconds to every start-up.
            params.setdefault("precision", "fp32")
            params_file = write_params(
                tmp_path / f"params{len(self.processes)}.yaml", checkpoint=str(checkpoint), **params
            )
            node = NodeProcess.script(
                "egnet-segment", ["--ros-args", "--params-file", str(params_file), "-r", f"image:={CAMERA}", *extra],
                domain_id=self.domain_id, log=tmp_path / f"node{len(self.processes)}.log", env=env,
            )
            self.processes.append(node)
            if wait:
                node.wait_until_ready(self.domain_id)
            return node

    graph = Graph()
    graph.peer = Peer(graph.domain_id)
    yield graph
    graph.peer.close()
    for node in graph.processes:
        node.kill()


def stop_cleanly(node: NodeProcess, sig: int = signal.SIGINT) -> str:
    """Stop the node with ``sig``; it must exit 0 without a traceback and log its summary."""
    code = node.stop(sig)
    output = node.output
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "summary: received" in output, output
    return output


def stamped(msg, sec: int, nanosec: int = 5):
    msg.header = make_header(frame_id="camera_front_optical", sec=sec, nanosec=nanosec)
    return msg


def by_stamp(messages) -> dict[tuple[int, int], object]:
    return {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in messages}


@pytest.mark.integration
def test_node_segments_1024x512_best_effort_frames_from_another_process(graph, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "car.pt", constant_model(CAR))
    node = graph.start(checkpoint, precision="auto")  # the default
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, qos_profile_sensor_data)  # what camera drivers use
    outputs = {
        name: peer.record(Image, f"{NODE}/{name}", RELIABLE) for name in ("labels", "exposure", "color", "overlay")
    }
    class_info = peer.record(String, f"{NODE}/class_info", LATCHED)  # subscribed after the node published it
    peer.wait_for_subscriber(camera)
    for name in ("color", "overlay"):  # the pictures are made only for subscribers: let the node see them
        peer.spin_until(lambda: peer.node.count_publishers(f"{NODE}/{name}") > 0, 20, f"{name} publisher")
    peer.spin_for(1.0)

    frames = dict(zip((101, 102, 103), night_frames(3, width=1024, height=512)))
    for sec, rgb in frames.items():
        camera.publish(stamped(make_image_msg(rgb[..., ::-1], "bgr8"), sec))
        peer.spin_until(lambda: len(outputs["overlay"]) >= sec - 100, 30, f"the outputs of frame {sec}")
    output = stop_cleanly(node)

    # precision auto (the default) timed each path this CPU offers at warm-up and logged the table and its choice.
    chosen = re.search(r"precision auto chose (fp32|bf16):\n.*precision +ms/batch +labels=fp32", output, re.DOTALL)
    assert chosen, output
    assert f"on cpu ({chosen.group(1)})" in output  # the ready line: the path it runs

    # The exposure this process computes on the same path (bf16 rounds differently from fp32: within its guard).
    reference = Segmenter(constant_model(CAR), precision=chosen.group(1))
    expected_exposure = {sec: reference.predict(rgb).exposure for sec, rgb in frames.items()}
    tolerance = 1e-4 if chosen.group(1) == "fp32" else 1e-2
    for name, encoding in (("labels", "mono8"), ("exposure", "32FC1"), ("color", "rgb8"), ("overlay", "rgb8")):
        received = by_stamp(outputs[name])
        assert sorted(received) == [(sec, 5) for sec in frames], f"~/{name}: one message per frame, 3 of 3"
        for (sec, _), msg in received.items():
            assert msg.header.frame_id == "camera_front_optical"
            assert (msg.width, msg.height, msg.encoding, msg.is_bigendian) == (1024, 512, encoding, 0)
    for (sec, _), msg in by_stamp(outputs["labels"]).items():
        assert msg.step == 1024
        np.testing.assert_array_equal(image_pixels(msg, "u1"), np.full((512, 1024), CAR, np.uint8))
    for (sec, _), msg in by_stamp(outputs["exposure"]).items():
        exposure = image_pixels(msg, "<f4")
        assert 0.0 <= exposure.min() and exposure.max() <= 1.0
        np.testing.assert_allclose(exposure, expected_exposure[sec], atol=tolerance)
    for msg in outputs["color"]:
        np.testing.assert_array_equal(image_pixels(msg, "u1", 3), np.broadcast_to(PALETTE[CAR], (512, 1024, 3)))
    for (sec, _), msg in by_stamp(outputs["overlay"]).items():
        blend = 0.5 * frames[sec].astype(float) + 0.5 * PALETTE[CAR].astype(float)  # overlay_alpha 0.5
        assert np.abs(image_pixels(msg, "u1", 3).astype(float) - blend).max() <= 1.0
    table = json.loads(class_info[0].data)
    assert table["names"] == list(CLASS_NAMES) and table["palette"] == PALETTE.tolist() and table["ignore"] == 255


def camera_info(frame_id: str, width: int, height: int) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.1, -0.2, 0.0, 0.0, 0.0])
    info.header.frame_id = frame_id
    info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
    return info


@pytest.mark.integration
def test_three_cameras_share_one_model_and_each_gets_its_own_headers_sizes_and_diagnostics(graph, tmp_path):
    """front: two sizes, remapped, with camera_info; left: silent; right: black frames and bad ones."""
    checkpoint = save_checkpoint(tmp_path / "car.pt", constant_model(CAR))
    node = graph.start(checkpoint, "-r", "front/image:=/sensing/front/image_raw",
                       "-r", "front/camera_info:=/sensing/front/camera_info",
                       cameras=["front", "left", "right"], precision="fp32", input_reliability="reliable",
                       input_qos_depth=10, inference_streams=2)  # 2 cameras a batch, 2 batches at once
    peer = graph.peer
    front = peer.publisher(Image, "/sensing/front/image_raw", RELIABLE)
    front_info = peer.publisher(CameraInfo, "/sensing/front/camera_info", RELIABLE)
    right = peer.publisher(Image, "/right/image", RELIABLE)
    outputs = {(cam, name): peer.record(CameraInfo if name == "camera_info" else Image, f"{NODE}/{cam}/{name}",
                                        RELIABLE)
               for cam in ("front", "left", "right") for name in ("labels", "exposure", "confidence", "camera_info")}
    diagnostics = peer.record(DiagnosticArray, "/diagnostics", 10)
    for publisher in (front, front_info, right):
        peer.wait_for_subscriber(publisher)
    peer.spin_until(lambda: peer.node.count_publishers(f"{NODE}/front/confidence") > 0, 20, "confidence publisher")

    sizes = [(160, 96), (128, 64)]
    front_frames = {100 + r: night_frames(1, width=sizes[r % 2][0], height=sizes[r % 2][1], seed=r)[0]
                    for r in range(6)}
    bad, _ = bad_frames()
    black = np.zeros((48, 64, 3), np.uint8)
    for sec, rgb in front_frames.items():
        info = camera_info("front_optical", rgb.shape[1], rgb.shape[0])
        info.header.stamp.sec = sec
        front_info.publish(info)
        peer.spin_for(0.05)
        right_msg = make_image_msg(black, "bgr8") if sec % 2 else bad[sec % len(bad)][1]
        right_msg.header = make_header(frame_id="right_optical", sec=sec, nanosec=5)
        front.publish(stamped(make_image_msg(rgb[..., ::-1], "bgr8"), sec))  # frame_id camera_front_optical
        right.publish(right_msg)
        peer.spin_until(lambda: sec in {m.header.stamp.sec for m in outputs["front", "exposure"]}, 30,
                        f"front frame {sec}")
        peer.spin_until(lambda: sec % 2 == 0 or sec in {m.header.stamp.sec for m in outputs["right", "labels"]}, 30,
                        f"right frame {sec}")

    def settled():  # the diagnostics that account for every frame sent: nothing waiting, nothing in flight
        if not diagnostics:
            return False
        state = statuses(diagnostics[-1])
        return (state["egnet_segment: camera front"][2]["processed"] == "6"
                and state["egnet_segment: camera right"][2]["processed"] == "3"
                and state["egnet_segment: camera right"][2]["invalid"] == "3")

    peer.spin_until(settled, 15, "diagnostics accounting for every frame")
    state = statuses(diagnostics[-1])
    stop_cleanly(node)

    # Each camera's outputs carry its own frames' headers and sizes, one message per processed frame.
    for name, encoding in (("labels", "mono8"), ("exposure", "32FC1")):
        received = by_stamp(outputs["front", name])
        assert sorted(received) == [(sec, 5) for sec in front_frames]
        for (sec, _), msg in received.items():
            assert msg.header.frame_id == "camera_front_optical" and msg.encoding == encoding
            assert (msg.width, msg.height) == sizes[(sec - 100) % 2]
        right_received = by_stamp(outputs["right", name])
        assert sorted(right_received) == [(sec, 5) for sec in front_frames if sec % 2]
        assert all(m.header.frame_id == "right_optical" and (m.width, m.height) == (64, 48)
                   for m in right_received.values())
    assert not any(outputs["left", name] for name in ("labels", "exposure", "confidence", "camera_info"))
    # Confidence: 32FC1 in [0, 1] beside the labels, the same header; the constant model is sure of its class.
    confidence = outputs["front", "confidence"]
    assert confidence, "front's confidence was subscribed"
    labels_headers = {(m.header.stamp.sec, m.header.frame_id, m.width, m.height) for m in outputs["front", "labels"]}
    for msg in confidence:
        assert msg.encoding == "32FC1"
        assert (msg.header.stamp.sec, msg.header.frame_id, msg.width, msg.height) in labels_headers
        assert image_pixels(msg, "<f4").min() > 0.99
    # camera_info: republished with the exact header of the labels it goes with, its calibration unchanged;
    # none for right, which publishes none.
    infos = outputs["front", "camera_info"]
    assert infos and not outputs["right", "camera_info"]
    front_labels = by_stamp(outputs["front", "labels"])
    for info in infos:
        assert info.header == front_labels[(info.header.stamp.sec, info.header.stamp.nanosec)].header
        assert list(info.k) == list(camera_info("", info.width, info.height).k) and info.distortion_model == "plumb_bob"
    # Diagnostics: the node's own status and one per camera.
    level, message, front_values = state["egnet_segment: camera front"]
    assert front_values["topic"] == "/sensing/front/image_raw"
    assert front_values["received"] == "6" and front_values["dropped (superseded)"] == "0"
    batches = dict(item.split(": ") for item in front_values["batch sizes"].split(", "))
    assert sum(int(count) for count in batches.values()) == 6 and set(batches) <= {"1", "2"}
    last = front_frames[105]
    assert front_values["dark share (V < 0.1)"] == f"{ExposureHealth.of(exposure_map(last)).dark_share:.3f}"
    left_level, left_message, _ = state["egnet_segment: camera left"]
    assert (left_level, left_message) == (DiagnosticStatus.STALE, "waiting for images on /left/image")
    right_level, right_message, right_values = state["egnet_segment: camera right"]
    assert right_level == DiagnosticStatus.WARN
    assert "mostly black: 100% of the last frame below V 0.1" in right_message, right_message
    assert right_values["dark share (V < 0.1)"] == "1.000"
    node_values = state["egnet_segment: inference"][2]
    assert node_values["processed"] == "9" and node_values["invalid"] == "3"
    assert node_values["precision"] == "fp32"
    assert node_values["inference streams"] == "2"


def encoded_frames() -> list[tuple[str, Image]]:
    """One 64×48 frame per supported encoding, its bytes built here (any bytes are valid pixels)."""
    rng = np.random.default_rng(7)
    bytes_per_pixel = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "yuv422": 2, "uyvy": 2,
                       "yuv422_yuy2": 2, "yuyv": 2, "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1,
                       "bayer_grbg8": 1}
    frames = [(name, make_image_msg(rng.integers(0, 256, (48, 64, size), dtype=np.uint8), name))
              for name, size in bytes_per_pixel.items()]
    mono16 = rng.integers(0, 65536, (48, 64), dtype=np.uint16)
    frames += [("mono16 big-endian", make_image_msg(mono16, "mono16", bigendian=True)),
               ("mono16 little-endian", make_image_msg(mono16, "mono16")),
               ("bgr8 with padded rows", make_image_msg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "bgr8",
                                                        step=64 * 3 + 13))]
    return frames


@pytest.mark.integration
def test_every_input_encoding_is_segmented_at_the_input_size(graph, tiny_checkpoint):
    node = graph.start(tiny_checkpoint)
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, qos_profile_sensor_data)
    labels = peer.record(Image, f"{NODE}/labels", RELIABLE)
    exposure = peer.record(Image, f"{NODE}/exposure", RELIABLE)
    peer.wait_for_subscriber(camera)
    peer.spin_for(1.0)

    frames = encoded_frames()
    for sec, (name, msg) in enumerate(frames, start=1):
        camera.publish(stamped(msg, sec))
        peer.spin_until(lambda: len(exposure) >= sec, 20, f"the outputs of the {name} frame")
    stop_cleanly(node)

    assert sorted(by_stamp(labels)) == sorted(by_stamp(exposure)) == [(sec, 5) for sec in range(1, len(frames) + 1)]
    for msg in labels + exposure:
        assert (msg.width, msg.height) == (64, 48)
    assert max(image_pixels(msg, "u1").max() for msg in labels) < 19


def bad_frames() -> list[tuple[str, Image]]:
    good = make_image_msg(np.zeros((48, 64, 3), np.uint8), "bgr8")
    short_step = make_image_msg(np.zeros((48, 64, 3), np.uint8), "bgr8")
    short_step.step = 64 * 3 - 1
    short_data = make_image_msg(np.zeros((48, 64, 3), np.uint8), "bgr8")
    short_data.data = short_data.data[: 47 * 64 * 3]
    zero = Image(height=0, width=0, encoding="bgr8", step=0)
    unknown = make_image_msg(np.zeros((48, 64), np.float32), "32FC1")
    # A header claiming 10000×10000 (3e8 bytes); the node must refuse it from the header, before any pixel.
    huge = Image(height=10000, width=10000, encoding="bgr8", step=30000, data=bytes(64))
    # Valid but one row over the test's max_frame_pixels=64*48 (its log line is throttled as the same kind as huge's).
    over_limit = make_image_msg(np.zeros((49, 64, 3), np.uint8), "bgr8")
    return [("step", short_step), ("data", short_data), ("zero size", zero), ("encoding", unknown),
            ("10000×10000", huge), ("over max_frame_pixels", over_limit)], good


def statuses(array: DiagnosticArray) -> dict[str, tuple[bytes, str, dict[str, str]]]:
    """Each status of ``array`` by name: its level, message and values."""
    return {s.name: (s.level, s.message, {kv.key: kv.value for kv in s.values}) for s in array.status}


def diagnostics_value(array: DiagnosticArray, key: str, status: str = "egnet_segment: inference") -> str:
    return statuses(array)[status][2][key]


@pytest.mark.integration
def test_bad_frames_are_dropped_with_a_clear_error_and_the_next_good_frame_is_processed(graph, tiny_checkpoint):
    node = graph.start(tiny_checkpoint, input_reliability="reliable", input_qos_depth=10, max_frame_pixels=64 * 48)
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, RELIABLE)
    labels = peer.record(Image, f"{NODE}/labels", RELIABLE)
    diagnostics = peer.record(DiagnosticArray, "/diagnostics", 10)
    peer.wait_for_subscriber(camera)

    bad, good = bad_frames()
    for sec, (_, msg) in enumerate(bad, start=1):
        camera.publish(stamped(msg, sec))
        peer.spin_for(0.2)
    camera.publish(stamped(good, 99))
    peer.spin_until(lambda: labels, 30, "the good frame's labels")
    peer.spin_until(lambda: diagnostics
                    and [diagnostics_value(diagnostics[-1], key) for key in ("invalid", "processed")]
                    == [str(len(bad)), "1"], 10, "diagnostics counting the bad frames and the good one")
    output = stop_cleanly(node)

    assert [m.header.stamp.sec for m in labels] == [99]
    for text in ("step=191 is smaller than width*bytes_per_pixel", "data has 9024 bytes, fewer than height*step",
                 "image has zero size: width=0, height=0", "unsupported image encoding '32FC1'",
                 "width=10000 × height=10000 = 100000000 pixels exceeds max_frame_pixels=3072"):
        assert text in output
    assert "invalid 6" in output


@pytest.mark.integration
def test_compressed_jpeg_and_png_frames_are_segmented_and_a_corrupt_one_is_refused(graph, tiny_checkpoint):
    node = graph.start(tiny_checkpoint, input_type="compressed", input_reliability="reliable")
    peer = graph.peer
    camera = peer.publisher(CompressedImage, CAMERA, RELIABLE)
    labels = peer.record(Image, f"{NODE}/labels", RELIABLE)
    peer.wait_for_subscriber(camera)

    (rgb,) = night_frames(1, width=128, height=96)
    messages = []
    for sec, (fmt, extension) in enumerate((("jpeg", ".jpg"), ("png", ".png"), ("jpeg", None)), start=1):
        data = (b"\xff\xd8 not a jpeg at all" if extension is None
                else cv2.imencode(extension, rgb[..., ::-1])[1].tobytes())
        messages.append(stamped(CompressedImage(format=fmt, data=data), sec))
    for msg in messages:
        camera.publish(msg)
        peer.spin_for(0.5)
    peer.spin_until(lambda: len(labels) >= 2, 30, "labels of the JPEG and PNG frames")
    output = stop_cleanly(node)

    assert sorted(m.header.stamp.sec for m in labels) == [1, 2]
    assert all((m.width, m.height) == (128, 96) for m in labels)
    assert "is neither a JPEG nor a PNG stream" in output


@pytest.mark.integration
def test_frames_faster_than_the_model_are_dropped_not_queued(graph, tmp_path):
    # A real model made slow by its input size: 512×256 frames run at 1024×512, several times a frame period.
    checkpoint = save_checkpoint(tmp_path / "slow.pt", tiny_model(output_stride=8))
    # glibc gives each thread that allocates its own arena, up to 8 per core, and they grow as the executor, the
    # worker and DDS's threads first touch them: tens of MiB unrelated to frames. Two arenas keep the memory test
    # about what the node holds, not about when the allocator spreads out.
    node = graph.start(checkpoint, input_width=1024, input_height=512, env={"MALLOC_ARENA_MAX": "2"})
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, qos_profile_sensor_data)
    labels = peer.record(Image, f"{NODE}/labels", RELIABLE)
    diagnostics = peer.record(DiagnosticArray, "/diagnostics", 10)
    peer.wait_for_subscriber(camera)
    peer.spin_for(1.0)

    frame = make_image_msg(night_frames(1, width=512, height=256)[0], "bgr8")
    published, rss = 0, []
    period, start = 1 / 30, peer.node.get_clock().now().nanoseconds / 1e9
    steady_at = None  # frames are published at 30 Hz until four were processed, then for 3 s more
    while steady_at is None or published < steady_at + 90:
        camera.publish(stamped(frame, 1000 + published))
        published += 1
        peer.spin_for(max(0.0, start + published * period - peer.node.get_clock().now().nanoseconds / 1e9))
        # Four frames in (the allocator's arenas and the DDS buffers of both threads in use): the steady state.
        if len(labels) >= 4 and steady_at is None:
            rss.append(node.resident_mib())
            steady_at = published
        assert published < 30 * 120, "four frames were not processed in two minutes"
    peer.spin_until(lambda: labels and labels[-1].header.stamp.sec >= 1000 + published - 3, 30,
                    "the newest frame's labels")

    # Counts are read only from a state that no thread is still changing: the camera has stopped, and a
    # diagnostics message accounts for every frame it received (none waiting, none in flight) and for every
    # labels message that arrived here. A node whose counts do not add up never sends one: the wait fails.
    def settled():
        if not diagnostics:
            return None
        counts = {key: int(diagnostics_value(diagnostics[-1], key)) for key in
                  ("received", "processed", "dropped (superseded)")}
        accounted = counts["received"] == counts["processed"] + counts["dropped (superseded)"]
        return diagnostics[-1] if accounted and counts["processed"] == len(labels) else None

    peer.spin_until(settled, 30, "diagnostics that account for every frame received and every labels message")
    final = settled()
    rss.append(node.resident_mib())
    stop_cleanly(node)

    print(f"node memory: {rss[0]:.0f} MiB after four frames, {rss[1]:.0f} MiB at the end")
    assert rss[1] - rss[0] < 50, f"the node's memory grew from {rss[0]:.0f} to {rss[1]:.0f} MiB"

    stamps = [m.header.stamp.sec for m in labels]
    assert stamps == sorted(set(stamps)), "each frame at most once, in order"
    status = {key: diagnostics_value(final, key) for key in
              ("received", "processed", "dropped (superseded)", "latency p50 (ms)", "inference p50 (ms)")}
    received, processed = int(status["received"]), int(status["processed"])
    assert 2 <= processed < published / 2, status  # most frames were superseded while the model ran
    assert received >= 0.5 * published, status  # best effort: a loaded CPU loses some in DDS, as a camera would
    # Latency stays about one inference time: a frame waits at most for the one in flight, never for a queue.
    assert float(status["latency p50 (ms)"]) <= 2.5 * float(status["inference p50 (ms)"]) + 50, status


@pytest.mark.integration
def test_sigterm_stops_the_node_cleanly_with_a_summary(graph, tiny_checkpoint):
    # CUDA-only options on a machine without CUDA: warned about by name, and the node runs without them.
    # More threads than CPUs only contend: capped, with a warning.
    node = graph.start(tiny_checkpoint, device="cpu", half=True, cuda_graphs=True, threads=9999)
    output = stop_cleanly(node, signal.SIGTERM)
    assert "received 0, processed 0" in output
    assert f"parameter 'threads' is 9999, more than the {available_cpus()} CPU(s) this process may use" in output
    for name in ("half", "cuda_graphs"):
        assert f"parameter '{name}' is true but device is cpu: it needs CUDA, ignored" in output
    assert "on cpu (fp32)" in output


@pytest.mark.integration
@pytest.mark.parametrize(
    "problem, params, expected",
    [
        ("missing", {"checkpoint": "/nonexistent/best.pt"},
         "parameter 'checkpoint': checkpoint '/nonexistent/best.pt' does not exist"),
        ("not a checkpoint", {}, "is not a readable egnet checkpoint"),
        ("other architecture", {"model.backbone": "resnet50"}, "backbone='resnet18' (expected 'resnet50')"),
        ("bad value", {"input_type": "h264"}, "parameter 'input_type' must be raw or compressed, got 'h264'"),
        ("camera twice", {"cameras": ["front", "rear", "front"]},
         "parameter 'cameras': camera name(s) ['front'] given more than once in ['front', 'rear', 'front']"),
        ("camera name", {"cameras": ["front", "rear left"]},
         "parameter 'cameras': camera name 'rear left' cannot be part of a topic name"),
        ("cameras not a list", {"cameras": "front"},
         "parameter 'cameras' to 'front' of type 'STRING', expecting type 'STRING_ARRAY'"),
        ("precision", {"precision": "int4"}, "parameter 'precision' must be one of"),
        ("streams", {"cameras": ["front", "rear"], "inference_streams": 3},
         "parameter 'inference_streams' is 3: expected 0 (auto) or 1 to the number of cameras (2)"),
        ("precision and bf16", {"precision": "fp32", "bf16": True},
         "parameter 'precision' is 'fp32' and the deprecated parameter 'bf16' is true: set precision only"),
    ],
)
def test_the_node_refuses_to_start_naming_the_parameter(graph, tmp_path, tiny_checkpoint, problem, params, expected):
    checkpoint = params.pop("checkpoint", tiny_checkpoint)
    if problem == "not a checkpoint":
        checkpoint = tmp_path / "notes.pt"
        checkpoint.write_text("not a checkpoint")
    node = graph.start(checkpoint, wait=False, **params)
    assert node.wait() == 1
    assert "cannot start:" in node.output and expected in node.output, node.output
    assert "Traceback" not in node.output


@pytest.mark.integration
def test_an_empty_checkpoint_on_the_command_line_is_one_line_naming_the_parameter(tmp_path):
    node = NodeProcess.script("egnet-segment", ["--ros-args", "-p", "checkpoint:="], domain_id=next_domain_id(),
                              log=tmp_path / "node.log")
    assert node.wait() == 1
    (line,) = node.output.strip().splitlines()  # rcl's own parse error would come first, then a traceback
    assert "cannot start: parameter 'checkpoint' is empty on the command line (-p checkpoint:=)" in line


# Where a stop signal lands in start-up: as soon as the process handles SIGTERM (the seconds of importing torch
# and rclpy follow), fixed times after that, and at the moments that the node's log marks; each with both signals.
STOP_POINTS = [(point, sig) for point in (0.0, "loading", "warming up", READY_LINE)
               for sig in (signal.SIGINT, signal.SIGTERM)] + [(1.5, signal.SIGINT), (3.0, signal.SIGTERM)]


@pytest.mark.integration
def test_a_stop_signal_at_any_moment_of_start_up_ends_the_node_with_0_and_no_traceback(tmp_path, tiny_checkpoint):
    params = write_params(tmp_path / "params.yaml", checkpoint=str(tiny_checkpoint), device="cpu", precision="fp32")
    domain_id = next_domain_id()
    # Started together, each signalled at its own point: the test takes about one start-up's time per CPU core.
    nodes = [NodeProcess.script("egnet-segment", ["--ros-args", "--params-file", str(params)], domain_id=domain_id,
                                log=tmp_path / f"node{index}.log") for index in range(len(STOP_POINTS))]
    try:
        handling: dict[int, float] = {}  # node index: when it was first seen handling SIGTERM
        pending = dict(enumerate(STOP_POINTS))
        deadline = time.monotonic() + 180
        while pending:
            assert time.monotonic() < deadline, f"timed out before the stop points {pending}"
            for index, (point, sig) in list(pending.items()):
                node = nodes[index]
                assert node.process.poll() is None, f"node {index} exited before {point!r}:\n{node.output}"
                if index not in handling and node.handles(signal.SIGTERM):
                    handling[index] = time.monotonic()
                if isinstance(point, float):
                    due = index in handling and time.monotonic() >= handling[index] + point
                else:
                    due = point in node.output
                if due:
                    node.process.send_signal(sig)
                    del pending[index]
            time.sleep(0.01)
        for index, ((point, sig), node) in enumerate(zip(STOP_POINTS, nodes)):
            code, output = node.wait(60), node.output
            where = f"node {index}, {signal.Signals(sig).name} at {point!r}"
            assert code == 0, f"{where}: exit status {code}\n{output}"
            assert "Traceback" not in output and "terminate called" not in output, f"{where}:\n{output}"
            if isinstance(point, str):  # the node existed: it says what it did
                assert "summary: received 0" in output, f"{where}:\n{output}"
            if point in ("loading", "warming up"):  # stopped before it was ready: it never says it is
                assert READY_LINE not in output, f"{where}:\n{output}"
    finally:
        for node in nodes:
            node.kill()


def test_the_params_file_holds_every_parameter_the_node_declares_with_its_default():
    document = yaml.safe_load((ROOT / "config/segment.yaml").read_text())

    def flatten(tree, prefix=""):
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]

    shipped = dict(flatten(document["/**"]["ros__parameters"]))
    # A list parameter is declared by its type (a list default would fix the wrong type): shown commented out.
    by_type = {name for name, (default, _) in PARAMETERS.items() if isinstance(default, Parameter.Type)}
    assert by_type == {"cameras"}
    assert "    # cameras: [front, left, right, rear]\n" in (ROOT / "config/segment.yaml").read_text()
    declared = {name: default for name, (default, _) in PARAMETERS.items() if name not in by_type}
    assert shipped == declared
    assert all(type(shipped[name]) is type(declared[name]) for name in declared), "ROS parameters are typed"


def test_the_mailbox_keeps_only_the_newest_frame_of_each_camera_and_hands_over_all_that_wait():
    mailbox = LatestFrames(["front", "left", "rear"])
    assert mailbox.put("front", "first") is False
    assert mailbox.put("front", "second") is True  # replaced a frame the worker never took: one dropped
    assert mailbox.put("rear", "third") is False  # another camera's slot
    assert mailbox.take() == {"front": "second", "rear": "third"}  # left sent nothing: nobody waits for it
    assert mailbox.put("left", "fourth") is False
    assert mailbox.take() == {"left": "fourth"}
    with pytest.raises(KeyError, match="no camera 'right' in this mailbox; its cameras: \\['front', 'left', 'rear'\\]"):
        mailbox.put("right", "fifth")
    mailbox.close()
    assert mailbox.take() is None


def test_a_camera_in_one_workers_hands_goes_to_no_other_worker_until_that_one_is_done():
    mailbox = LatestFrames(["front", "left", "rear"])
    for camera in ("rear", "front", "left"):
        mailbox.put(camera, f"{camera} 1")
    mailbox.put("rear", "rear 2")  # replaces rear 1, but rear has waited since its first frame
    assert mailbox.take(limit=2) == {"front": "front 1", "rear": "rear 2"}  # waiting longest, in camera order
    mailbox.put("front", "front 2")
    assert mailbox.take(limit=2) == {"left": "left 1"}  # front 2 waits: front 1 is in another worker's hands
    second = ThreadPoolExecutor(1).submit(mailbox.take, 2)  # blocks: front is still held
    mailbox.done(["front", "rear"])
    assert second.result(timeout=10) == {"front": "front 2"}
    with pytest.raises(ValueError, match="a worker must take at least one camera's frame, got limit 0"):
        mailbox.take(limit=0)


def test_inference_streams_auto_and_refused():
    assert [resolve_streams(0, cameras, cuda=False, cuda_graphs=False) for cameras in (1, 2, 4)] == [1, 2, 4]
    assert resolve_streams(0, 4, cuda=True, cuda_graphs=False) == 1  # on CUDA, batching is what pays
    assert resolve_streams(4, 4, cuda=False, cuda_graphs=False) == 4
    with pytest.raises(ParameterError, match="parameter 'inference_streams' is 2 with parameter 'cuda_graphs' true"):
        resolve_streams(2, 4, cuda=True, cuda_graphs=True)


def test_the_problem_log_lets_each_kind_through_once_per_period():
    throttle = ProblemThrottle(period_s=5.0)
    assert throttle.allow("image has zero size: width=0, height=0", now=0.0)
    assert not throttle.allow("image has zero size: width=0, height=0", now=1.0)
    assert throttle.allow("unsupported image encoding '32FC1'", now=1.0)  # another kind: at once
    assert not throttle.allow("unsupported image encoding 'bgr16'", now=2.0)  # same kind, other value
    assert throttle.allow("image has zero size: width=0, height=0", now=5.5)


@pytest.mark.integration
def test_the_node_runs_an_exported_onnx_model_with_onnx_runtime(graph, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "car.pt", constant_model(CAR))
    exported = export_onnx(checkpoint, tmp_path / "car.onnx", size=(64, 48), dynamic=True)
    node = graph.start(exported)
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, qos_profile_sensor_data)
    labels = peer.record(Image, f"{NODE}/labels", RELIABLE)
    peer.wait_for_subscriber(camera)
    peer.spin_for(0.5)
    camera.publish(stamped(make_image_msg(night_frames(1, width=160, height=96)[0][..., ::-1], "bgr8"), 7))
    peer.spin_until(lambda: labels, 30, "labels from the ONNX model")
    output = stop_cleanly(node)

    assert "car.onnx" in output
    np.testing.assert_array_equal(image_pixels(labels[0], "u1"), np.full((96, 160), CAR, np.uint8))


@pytest.mark.integration
def test_the_node_runs_a_pt2e_int8_model(graph, trained_int8):
    node = graph.start(trained_int8["int8"], input_width=128, input_height=64)
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, qos_profile_sensor_data)
    labels = peer.record(Image, f"{NODE}/labels", RELIABLE)
    peer.wait_for_subscriber(camera)
    peer.spin_for(0.5)
    frame = night_frames(1, width=160, height=96, seed=5)[0]
    camera.publish(stamped(make_image_msg(frame[..., ::-1], "bgr8"), 7))
    peer.spin_until(lambda: labels, 60, "labels from the int8 model")
    output = stop_cleanly(node)

    assert "int8.pt2" in output and "(int8)" in output
    expected = Segmenter.from_checkpoint(trained_int8["int8"], input_size=(128, 64)).predict(frame).labels
    np.testing.assert_array_equal(image_pixels(labels[0], "u1"), expected)


@pytest.mark.integration
def test_a_deeplabv3_checkpoint_publishes_labels_and_each_frames_measured_exposure(graph, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "deeplabv3.pt", tiny_torchvision_model("deeplabv3"))
    node = graph.start(checkpoint, precision="fp32")
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, qos_profile_sensor_data)
    outputs = {name: peer.record(Image, f"{NODE}/{name}", RELIABLE) for name in ("labels", "exposure")}
    peer.wait_for_subscriber(camera)
    peer.spin_for(0.5)
    (rgb,) = night_frames(1, width=160, height=96)
    camera.publish(stamped(make_image_msg(rgb[..., ::-1], "bgr8"), 7))
    peer.spin_until(lambda: outputs["labels"] and outputs["exposure"], 30, "labels and exposure from DeepLabV3")
    output = stop_cleanly(node)

    assert "ready: deeplabv3 resnet18 OS8" in output, output
    assert "deeplabv3 has no exposure stream: exposure outputs are each frame's measured exposure" in output, output
    (labels,), (exposure,) = outputs["labels"], outputs["exposure"]
    assert labels.header.stamp == exposure.header.stamp  # in step, for ExactTime synchronisers
    expected = Segmenter(tiny_torchvision_model("deeplabv3")).predict(rgb).labels
    assert (image_pixels(labels, "u1") == expected).mean() >= 0.999
    np.testing.assert_allclose(image_pixels(exposure, "<f4"), exposure_map(rgb), atol=1e-6)


def _fails_unless_pixels_divide_by_256(exported: Path, path: Path) -> Path:
    """``exported`` with a reshape of its input into rows of 256 values before the network: ONNX Runtime runs it on
    frames whose width×height divides by 256 (the 1024×512 warm-up) and fails on others, a real inference failure."""
    model = onnx.load(exported)
    graph, image = model.graph, model.graph.input[0].name
    for node in graph.node:
        node.input[:] = ["checked_image" if name == image else name for name in node.input]
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1, 3, 256], np.int64), "rows_of_256"))
    graph.node.insert(0, onnx.helper.make_node("Shape", [image], ["image_shape"]))
    graph.node.insert(1, onnx.helper.make_node("Reshape", [image, "rows_of_256"], ["rows"]))
    graph.node.insert(2, onnx.helper.make_node("Reshape", ["rows", "image_shape"], ["checked_image"]))
    onnx.save(model, path)
    return path


@pytest.mark.integration
def test_frames_failing_at_inference_in_a_row_stop_the_node_with_exit_status_3(graph, tmp_path):
    exported = export_onnx(save_checkpoint(tmp_path / "car.pt", constant_model(CAR)), tmp_path / "car.onnx",
                           size=(64, 48), dynamic=True)
    model = _fails_unless_pixels_divide_by_256(exported, tmp_path / "picky.onnx")
    node = graph.start(model, max_consecutive_failures=2, input_reliability="reliable")
    peer = graph.peer
    camera = peer.publisher(Image, CAMERA, RELIABLE)
    peer.wait_for_subscriber(camera)
    failing = make_image_msg(night_frames(1, width=100, height=33)[0][..., ::-1], "bgr8")  # 3300 pixels
    deadline = time.monotonic() + 60
    while node.process.poll() is None:  # the mailbox keeps the newest: the node takes them one after another
        assert time.monotonic() < deadline, node.output
        camera.publish(failing)
        peer.spin_for(0.2)
    output = node.output
    assert node.wait() == 3, output
    assert ("2 frames in a row failed at inference on cpu (parameter 'max_consecutive_failures' is 2); stopping "
            "with exit status 3. The last error: ONNX Runtime failed") in output, output
    assert "failed 2" in output and "Traceback" not in output, output
