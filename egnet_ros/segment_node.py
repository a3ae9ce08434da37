"""The segmentation node: camera images in; train-id labels, exposure maps and, on demand, pictures out.

The subscription callback only stores the newest message in a one-slot mailbox and wakes a worker thread,
which converts, predicts and publishes. A frame that arrives while the worker is busy replaces the one
waiting (it is counted as dropped), so the latency stays about one inference time whatever the camera
rate, and the memory stays flat.

Every output carries the input's header unchanged and has the input's resolution; the network itself may
run at ``input_width`` × ``input_height`` (the Segmenter scales the results back).

The process around it (signals, rclpy, the start-up steps, the exit status) is ``segment_main``.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX, PALETTE
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.inference import WARM_UP_SIZE, Segmentation
from egnet_core.reports.visualize import overlay

from .diagnostics import ProblemThrottle, inference_status
from .frame_stats import FrameCounts, FrameStats
from .image_conversion import compressed_to_rgb, exposure_to_image, image_to_rgb, labels_to_image, rgb_to_image
from .segment_parameters import PARAMETERS, declare_parameters, load_segmenter, read_parameters

__all__ = ["PARAMETERS", "LatestFrame", "SegmentNode"]

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


class WarmUpError(RuntimeError):
    """The model failed on its first, warm-up frame (out of device memory at this input size, for one)."""


@dataclass(frozen=True)
class Frame:
    msg: Image | CompressedImage
    received: float  # time.perf_counter() when the callback stored it


class LatestFrame:
    """A one-slot mailbox between the executor and the worker: a new frame replaces one not yet taken."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Store ``frame``; True when it replaced a frame the worker never took."""
        with self._condition:
            replaced = self._frame is not None
            self._frame = frame
            self._condition.notify()
        return replaced

    def take(self) -> Frame | None:
        """The newest frame, waiting for one; None once the mailbox is closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._frame is not None or self._closed)
            if self._closed:
                return None
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class SegmentNode(Node):
    """Built with its parameters, model and publishers; ``warm_up`` then ``listen`` start it, and ``close`` stops
    its worker. ``main`` runs the steps one by one, so that a stop signal between them ends it at once."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        declare_parameters(self)
        options, self._settings = read_parameters(self)
        self.get_logger().info(f"loading {self._settings.checkpoint!r} on {options.device}")
        self._segmenter = load_segmenter(self._settings.checkpoint, options)
        self._stats = FrameStats()
        self._reported = self._stats.snapshot()
        self._mailbox = LatestFrame()
        self._throttle = ProblemThrottle(PROBLEM_LOG_PERIOD_S)
        self._failures = 0  # frames in a row that failed at inference
        self.exit_code = 0

        qos = self._settings.output_qos
        self._labels_pub = self.create_publisher(Image, "~/labels", qos)
        self._exposure_pub = self.create_publisher(Image, "~/exposure", qos)
        self._color_pub = self.create_publisher(Image, "~/color", qos)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", qos)
        self._class_info_pub = self.create_publisher(String, "~/class_info", LATCHED)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self._warm_up_s: float | None = None  # set by the worker once it has warmed up
        self._worker_ready = threading.Event()
        self._worker = threading.Thread(target=self._run, name=f"{NODE_NAME}_worker", daemon=True)

    def warm_up(self) -> None:
        """Start the worker and wait for its warm-up frame; WarmUpError when the model cannot run."""
        self.get_logger().info(f"warming up on {self._segmenter.device} at {self._input_text(warm_up=True)}")
        self._worker.start()
        self._worker_ready.wait()
        if self._warm_up_s is None:
            raise WarmUpError(f"the model could not run once on {self._segmenter.device} (warm-up); see the log above")

    def listen(self) -> None:
        """Publish the class table and subscribe to the camera: from here frames are segmented."""
        settings = self._settings
        self._class_info_pub.publish(class_info())
        self._subscription = self.create_subscription(
            CompressedImage if settings.compressed else Image, settings.image_topic, self._on_image,
            settings.input_qos,
        )
        # Diagnostics run on the steady clock: with use_sim_time and a paused bag they keep coming.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics, clock=steady)
        config = self._segmenter.config
        self.get_logger().info(
            f"ready: {config.variant} {config.backbone} OS{config.output_stride} from {settings.checkpoint!r} on "
            f"{self._segmenter.device} ({self._segmenter.precision}), network input {self._input_text()}, "
            f"warm-up {self._warm_up_s:.2f} s; listening on {self._subscription.topic_name} "
            f"({'compressed' if settings.compressed else 'raw'}, {settings.input_qos.reliability.name.lower()})"
        )

    def close(self) -> FrameCounts:
        """Stop the worker (after the frame in flight, or the warm-up); the final counts. Call before
        destroy_node: the interpreter must not exit while the worker is inside torch."""
        self._mailbox.close()
        if self._worker.is_alive():
            self._worker.join()
        return self._stats.snapshot()

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._stats.count_received()
        if self._mailbox.put(Frame(msg=msg, received=time.perf_counter())):
            self._stats.count_dropped()

    def _run(self) -> None:
        # The warm-up runs on this thread, so that the allocator arenas and thread pools that frames will use
        # are the ones it sets up.
        try:
            self._warm_up_s = self._segmenter.warm_up()
        except InferenceError as error:
            self.get_logger().fatal(f"warm-up failed: {error}")
            return
        finally:
            self._worker_ready.set()
        while (frame := self._mailbox.take()) is not None and not self.exit_code:
            try:
                self._process(frame)
            except Exception:
                if not self.context.ok():
                    return  # SIGINT/SIGTERM shut the context down while this frame was being published
                # A bug, not a bad frame: end the process (with the traceback) rather than spin on without a worker.
                self._stop(EXIT_FAILED, f"the inference worker stopped:\n{traceback.format_exc()}")

    def _process(self, frame: Frame) -> None:
        try:
            rgb = self._to_rgb(frame.msg)
        except ValueError as error:  # ImageConversionError, or a frame the network cannot take
            self._stats.count_invalid()
            self._log_problem(f"invalid frame on {self._subscription.topic_name} dropped: {error}")
            return
        # The pictures cost a palette lookup and a blend per frame: made only while someone looks at them.
        pictures = self._color_pub.get_subscription_count() + self._overlay_pub.get_subscription_count() > 0
        start = time.perf_counter()
        try:
            result = self._segmenter.predict(rgb, color=pictures)
        except InferenceError as error:
            self._stats.count_failed()
            self._failures += 1
            limit = self._settings.max_consecutive_failures
            if limit and self._failures >= limit:
                self._stop(EXIT_INFERENCE_FAILING, f"{self._failures} frames in a row failed at inference on "
                           f"{self._segmenter.device} (parameter 'max_consecutive_failures' is {limit}); stopping "
                           f"with exit status {EXIT_INFERENCE_FAILING}. The last error: {error}")
            else:
                self._log_problem(f"inference on {self._segmenter.device} failed, frame skipped: {error}")
            return
        self._failures = 0
        inference_s = time.perf_counter() - start
        self._publish(frame.msg.header, rgb, result)
        self._stats.count_processed(latency_s=time.perf_counter() - frame.received, inference_s=inference_s)

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

    def _publish(self, header: Header, rgb: np.ndarray, result: Segmentation) -> None:
        self._labels_pub.publish(labels_to_image(result.labels, header))
        self._exposure_pub.publish(exposure_to_image(result.exposure, header))
        if result.color is None:
            return
        if self._color_pub.get_subscription_count():
            self._color_pub.publish(rgb_to_image(result.color, header))
        if self._overlay_pub.get_subscription_count():
            blended = overlay(rgb, result.labels, self._settings.overlay_alpha, colours=result.color)
            self._overlay_pub.publish(rgb_to_image(blended, header))

    def _log_problem(self, text: str) -> None:
        if self._throttle.allow(text, time.monotonic()):
            self.get_logger().error(text)

    def _publish_diagnostics(self) -> None:
        counts, previous = self._stats.snapshot(), self._reported
        self._reported = counts
        status = inference_status(self.get_name(), counts, previous, period_s=DIAGNOSTICS_PERIOD_S,
                                  topic=self._subscription.topic_name, device=str(self._segmenter.device),
                                  network_input=self._input_text())
        diagnostics = DiagnosticArray(status=[status])
        diagnostics.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(diagnostics)

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
