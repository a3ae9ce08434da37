"""The segmentation node: camera images in; train-id labels, exposure maps, and on demand confidence maps and
pictures out, for one camera or several (the ``cameras`` parameter, see ``cameras``) through one model.

Each subscription callback only stores its camera's newest message in a one-slot mailbox and wakes the workers.
A worker (one per inference stream, see ``inference_streams``) takes the waiting frames of its share of the
cameras, converts them, runs the frames of one size as one batch through the shared Segmenter, and publishes
each result with its own frame's header; a camera is in one worker's hands at a time. A frame that arrives
while its camera's previous one still waits replaces it (counted as dropped), so the latency stays about one
inference time whatever the camera rates, and the memory stays flat.

Every output carries the input's header unchanged and has the input's resolution; the network itself may
run at ``input_width`` × ``input_height`` (the Segmenter scales the results back). The latched ``~/class_info``
is published once the model has warmed up: its arrival says the node is ready.

The process around it (signals, rclpy, the start-up steps, the exit status) is ``segment_main``.
"""

from __future__ import annotations

import json
import math
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX, PALETTE
from egnet_core.deploy.batching import group_by_size
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.inference import WARM_UP_SIZE

from .cameras import Camera
from .diagnostics import ProblemThrottle, camera_status, inference_status
from .frame_stats import FrameStats
from .image_conversion import compressed_to_rgb, image_to_rgb
from .mailbox import Frame, LatestFrames
from .segment_parameters import PARAMETERS, declare_parameters, load_segmenter, read_parameters

__all__ = ["PARAMETERS", "SegmentNode"]

NODE_NAME = "egnet_segment"
DIAGNOSTICS_PERIOD_S = 1.0
PROBLEM_LOG_PERIOD_S = 5.0  # each kind of bad frame is logged at most once in this period
EXIT_FAILED = 1  # could not start, or the worker failed
EXIT_INFERENCE_FAILING = 3  # max_consecutive_failures frames in a row failed at inference

# Late subscribers (a planner started after the node) still get the class table.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# camera_info: best effort takes both what drivers publish best effort and what they publish reliably.
CAMERA_INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


class WarmUpError(RuntimeError):
    """The model failed on its first, warm-up frame (out of device memory at this input size, for one)."""


@dataclass(frozen=True)
class _Ready:
    """A frame converted and checked, waiting for its batch."""

    camera: Camera
    frame: Frame
    rgb: np.ndarray


class SegmentNode(Node):
    """Built with its parameters, model and publishers; ``warm_up`` then ``listen`` start it, and ``close`` stops
    its worker. ``main`` runs the steps one by one, so that a stop signal between them ends it at once."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        declare_parameters(self)
        options, self._settings = read_parameters(self)
        self.get_logger().info(f"loading {self._settings.checkpoint!r} on {options.device}")
        self._segmenter = load_segmenter(self._settings.checkpoint, options)
        self._stats = FrameStats()  # every camera's frames together
        self._reported = self._stats.snapshot()
        self._batch_sizes: Counter[int] = Counter()  # batches run, by size: the worker counts, diagnostics read
        self._batch_lock = threading.Lock()
        self._throttle = ProblemThrottle(PROBLEM_LOG_PERIOD_S)
        self._failures = 0  # frames in a row that failed at inference
        self.exit_code = 0

        qos = self._settings.output_qos
        self._cameras = {topics.name: Camera(self, topics, qos) for topics in self._settings.cameras}
        self._mailbox = LatestFrames(self._cameras)
        self._class_info_pub = self.create_publisher(String, "~/class_info", LATCHED)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # Each stream's batches hold at most its share of the cameras, the warm-up batch too.
        self._per_stream = math.ceil(len(self._cameras) / self._settings.streams)
        self._warm_up_s: float | None = None  # set by the first worker once it has warmed up
        self._worker_ready = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(index,), name=f"{NODE_NAME}_worker{index}",
                                          daemon=True) for index in range(self._settings.streams)]

    def warm_up(self) -> None:
        """Start the workers and wait for the warm-up (a batch of one frame per camera of a stream); WarmUpError
        when the model cannot run."""
        streams = len(self._workers)
        self.get_logger().info(f"warming up on {self._segmenter.device} at {self._input_text(warm_up=True)}, "
                               f"batch {self._per_stream}" + (f", {streams} inference streams" if streams > 1 else ""))
        for worker in self._workers:
            worker.start()
        self._worker_ready.wait()
        if self._warm_up_s is None:
            raise WarmUpError(f"the model could not run once on {self._segmenter.device} (warm-up); see the log above")
        choice = getattr(self._segmenter, "precision_choice", None)
        if choice is not None:
            self.get_logger().info(f"precision auto chose {choice.chosen}:\n{choice.table()}")

    def listen(self) -> None:
        """Subscribe to the cameras and publish the class table: from here frames are segmented, and the table's
        arrival tells everyone so."""
        settings = self._settings
        image_type = CompressedImage if settings.compressed else Image
        self._image_subscriptions = {
            name: self.create_subscription(image_type, camera.topics.image, self._on_image_of(name),
                                           settings.input_qos)
            for name, camera in self._cameras.items()
        }
        for camera in self._cameras.values():
            self.create_subscription(CameraInfo, camera.topics.camera_info, camera.on_camera_info, CAMERA_INFO_QOS)
        # Diagnostics run on the steady clock: with use_sim_time and a paused bag they keep coming.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics, clock=steady)
        self._class_info_pub.publish(class_info())
        config = self._segmenter.config
        self.get_logger().info(
            f"ready: {config.name} {config.backbone} OS{config.output_stride} from {settings.checkpoint!r} on "
            f"{self._segmenter.device} ({self._segmenter.precision}), network input {self._input_text()}, "
            f"warm-up {self._warm_up_s:.2f} s; listening on {self._topics_text()} "
            f"({'compressed' if settings.compressed else 'raw'}, {settings.input_qos.reliability.name.lower()})"
        )
        if not config.predicts_exposure:
            self.get_logger().info(f"{config.name} has no exposure stream: exposure outputs are each frame's measured "
                                   "exposure (V of HSV), not a prediction")

    def close(self) -> str:
        """Stop the workers (after the batches in flight, or the warm-up); the final counts as text. Call before
        destroy_node: the interpreter must not exit while a worker is inside torch."""
        self._mailbox.close()
        for worker in self._workers:
            if worker.is_alive():
                worker.join()
        text = self._stats.snapshot().summary()
        if len(self._cameras) > 1:
            text += "".join(f"\n  camera {name}: {camera.stats.snapshot().summary()}"
                            for name, camera in self._cameras.items())
        return text

    def _on_image_of(self, camera: str):
        def on_image(msg: Image | CompressedImage) -> None:
            self._cameras[camera].stats.count_received()
            self._stats.count_received()
            if self._mailbox.put(camera, Frame(msg=msg, received=time.perf_counter())):
                self._cameras[camera].stats.count_dropped()
                self._stats.count_dropped()

        return on_image

    def _run(self, index: int) -> None:
        # The warm-up runs on the first worker's thread, so that the allocator arenas and thread pools that its
        # frames will use are the ones it sets up; the others wait for it.
        if index == 0:
            try:
                self._warm_up_s = self._segmenter.warm_up(batch=self._per_stream)
            except InferenceError as error:
                self.get_logger().fatal(f"warm-up failed: {error}")
                return
            finally:
                self._worker_ready.set()
        self._worker_ready.wait()
        if self._warm_up_s is None:
            return
        while (frames := self._mailbox.take(self._per_stream)) is not None and not self.exit_code:
            try:
                self._process(frames)
            except Exception:
                if not self.context.ok():
                    return  # SIGINT/SIGTERM shut the context down while this frame was being published
                # A bug, not a bad frame: end the process (with the traceback) rather than spin on without a worker.
                self._stop(EXIT_FAILED, f"the inference worker stopped:\n{traceback.format_exc()}")
            finally:
                self._mailbox.done(frames)

    def _process(self, frames: dict[str, Frame]) -> None:
        """Every camera's waiting frame: the ones of one size as one batch (sizes in the order first seen)."""
        ready: list[_Ready] = []
        for name, frame in frames.items():
            camera = self._cameras[name]
            try:
                rgb = self._to_rgb(frame.msg)
            except ValueError as error:  # ImageConversionError, or a frame the network cannot take
                camera.stats.count_invalid()
                self._stats.count_invalid()
                self._log_problem(f"invalid frame on {self._image_subscriptions[name].topic_name} dropped: {error}")
                continue
            ready.append(_Ready(camera, frame, rgb))
        for group in group_by_size(ready, lambda item: item.rgb.shape):
            self._run_batch(group)
            if self.exit_code:
                return

    def _run_batch(self, group: list[_Ready]) -> None:
        # Confidence and pictures cost a softmax, a palette lookup and a blend: made only while someone looks.
        confidence = any(item.camera.wants("confidence") for item in group)
        pictures = any(item.camera.wants("color") or item.camera.wants("overlay") for item in group)
        start = time.perf_counter()
        try:
            results = self._segmenter.predict_batch([item.rgb for item in group], color=pictures,
                                                    confidence=confidence)
        except InferenceError as error:
            for item in group:
                item.camera.stats.count_failed()
                self._stats.count_failed()
            with self._batch_lock:
                self._failures += len(group)
                failures = self._failures
            limit = self._settings.max_consecutive_failures
            if limit and failures >= limit:
                self._stop(EXIT_INFERENCE_FAILING, f"{failures} frames in a row failed at inference on "
                           f"{self._segmenter.device} (parameter 'max_consecutive_failures' is {limit}); stopping "
                           f"with exit status {EXIT_INFERENCE_FAILING}. The last error: {error}")
            else:
                self._log_problem(f"inference on {self._segmenter.device} failed, frame(s) skipped: {error}")
            return
        with self._batch_lock:
            self._failures = 0
            self._batch_sizes[len(group)] += 1
        inference_s = time.perf_counter() - start
        for item, result in zip(group, results):
            item.camera.publish(item.frame.msg.header, item.rgb, result, batch_size=len(group),
                                overlay_alpha=self._settings.overlay_alpha)
            latency_s = time.perf_counter() - item.frame.received
            item.camera.stats.count_processed(latency_s=latency_s, inference_s=inference_s)
            self._stats.count_processed(latency_s=latency_s, inference_s=inference_s)

    def _stop(self, exit_code: int, reason: str) -> None:
        """End the process: log ``reason``, shut the context down (which ends spin) with ``exit_code`` to come."""
        self.get_logger().fatal(reason)
        self.exit_code = exit_code
        rclpy.try_shutdown(context=self.context)

    def _to_rgb(self, msg: Image | CompressedImage) -> np.ndarray:
        to_rgb = compressed_to_rgb if self._settings.compressed else image_to_rgb
        rgb = to_rgb(msg, max_frame_pixels=self._settings.max_frame_pixels)
        self._segmenter.check_frame(rgb)
        return rgb

    def _log_problem(self, text: str) -> None:
        if self._throttle.allow(text, time.monotonic()):
            self.get_logger().error(text)

    def _publish_diagnostics(self) -> None:
        counts, previous = self._stats.snapshot(), self._reported
        self._reported = counts
        with self._batch_lock:
            batch_sizes = dict(sorted(self._batch_sizes.items()))
        statuses = [inference_status(self.get_name(), counts, previous, period_s=DIAGNOSTICS_PERIOD_S,
                                     topic=self._topics_text(), device=str(self._segmenter.device),
                                     network_input=self._input_text(), precision=self._segmenter.precision,
                                     batch_sizes=batch_sizes, streams=len(self._workers))]
        for name, camera in self._cameras.items():
            camera_counts, camera_previous = camera.stats.snapshot(), camera.reported
            camera.reported = camera_counts
            statuses.append(camera_status(
                self.get_name(), name, camera_counts, camera_previous, period_s=DIAGNOSTICS_PERIOD_S,
                topic=self._image_subscriptions[name].topic_name, batch_sizes=camera.batch_sizes(),
                health=camera.exposure_health(), limits=self._settings.exposure_limits,
            ))
        diagnostics = DiagnosticArray(status=statuses)
        diagnostics.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(diagnostics)

    def _topics_text(self) -> str:
        return ", ".join(subscription.topic_name for subscription in self._image_subscriptions.values())

    def _input_text(self, *, warm_up: bool = False) -> str:
        size = self._segmenter.input_size or (WARM_UP_SIZE if warm_up else None)
        return "native" if size is None else f"{size[0]}×{size[1]}"


def class_info() -> String:
    """The class table as JSON: names and palette rows indexed by train id, and the id of ignored pixels.

    A std_msgs/String keeps consumers free of a custom message package; vision_msgs' LabelInfo would name
    the classes but carries no palette.
    """
    table = {"names": list(CLASS_NAMES), "palette": PALETTE.tolist(), "ignore": IGNORE_INDEX}
    return String(data=json.dumps(table))
