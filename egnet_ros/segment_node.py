"""The segmentation node: camera images in; train-id labels, exposure maps and, on demand, pictures out.

The subscription callback only stores the newest message in a one-slot mailbox and wakes a worker thread,
which converts, predicts and publishes. A frame that arrives while the worker is busy replaces the one
waiting (it is counted as dropped), so the latency stays about one inference time whatever the camera
rate, and the memory stays flat.

Every output carries the input's header unchanged and has the input's resolution; the network itself may
run at ``input_width`` × ``input_height`` (the Segmenter scales the results back).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions, install_signal_handlers
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE
from egnet_core.deploy.inference import Segmentation, Segmenter, resolve_device, resolve_threads
from egnet_core.model.checkpoint import check_same_architecture
from egnet_core.model.egnet import MIN_INPUT_SIZE
from egnet_core.reports.visualize import overlay

from .dds import use_fastdds_profile
from .frame_stats import FrameCounts, FrameStats
from .image_conversion import (
    compressed_to_rgb,
    exposure_to_image,
    image_to_rgb,
    labels_to_image,
    rgb_to_image,
)
from .stop_signals import StopSignals

NODE_NAME = "egnet_segment"
WARM_UP_SIZE = (1024, 512)  # (width, height) of the warm-up frame at native size: NightCity's resolution
DIAGNOSTICS_PERIOD_S = 1.0
PROBLEM_LOG_PERIOD_S = 5.0  # each kind of bad frame is logged at most once in this period

# name: (default, description). Every parameter is read once at start-up, so all are read-only.
PARAMETERS: dict[str, tuple[object, str]] = {
    "checkpoint": ("", "EGNet checkpoint (.pt) from egnet train, or .onnx from egnet export (ONNX Runtime); required"),
    "model.backbone": ("", "if set, the checkpoint must have this backbone (resnet18|resnet34|resnet50|resnet101)"),
    "model.output_stride": (0, "if non-zero, the checkpoint must have this output stride (8|16|32)"),
    "model.variant": ("", "if set, the checkpoint must be this EGNet variant (egnet, no_egl, ...)"),
    "model.num_classes": (0, "if non-zero, the checkpoint must predict this many classes"),
    "device": ("auto", "auto (CUDA when there is a GPU), cpu, cuda or cuda:N"),
    "half": (False, "fp16 inference; CUDA only, ignored with a warning on the CPU"),
    "bf16": (False, "bf16 inference (CPUs with AVX-512 BF16 or AMX, and CUDA); half takes precedence on CUDA"),
    "cuda_graphs": (False, "replay a captured CUDA graph per frame size; CUDA only, ignored with a warning on the CPU"),
    "compile": (False, "run the network through torch.compile (a slower start, then faster frames)"),
    "threads": (0, "CPU threads for inference, capped at the available CPUs; 0: torch's choice"),
    "input_width": (0, "width the network runs at; 0 with input_height 0: each frame's own size"),
    "input_height": (0, "height the network runs at; 0 with input_width 0: each frame's own size"),
    "confidence_threshold": (0.0, "pixels whose top softmax score is below this are labelled 255; 0 disables"),
    "overlay_alpha": (0.5, "weight of the palette in ~/overlay, in [0, 1]"),
    "max_frame_pixels": (MAX_FRAME_PIXELS, "frames of more pixels (width*height, read before decoding) are dropped"),
    "image_topic": ("image", "input topic (remapping 'image' does the same)"),
    "input_type": ("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, JPEG or PNG)"),
    "input_reliability": ("best_effort", "input QoS reliability: best_effort (sensor data) or reliable"),
    "input_qos_depth": (1, "input queue depth (keep last)"),
    "output_qos_depth": (5, "output queue depth (reliable, keep last)"),
}
MODEL_PARAMETERS = ("model.backbone", "model.output_stride", "model.variant", "model.num_classes")

# Late subscribers (a planner started after the node) still get the class table.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class ParameterError(ValueError):
    """A parameter the node cannot start with; the text names the parameter and its value."""


class WarmUpError(RuntimeError):
    """The model failed on its first, warm-up frame (out of device memory at this input size, for one)."""


@dataclass(frozen=True)
class Settings:
    checkpoint: str
    expected_model: dict[str, object]  # the model.* parameters that were set, as ModelConfig fields
    device: torch.device
    precision: str  # fp32, fp16 or bf16
    threads: int  # 0: torch's choice
    compile: bool
    cuda_graphs: bool
    input_size: tuple[int, int] | None  # (width, height); None runs the network at each frame's size
    confidence_threshold: float | None
    overlay_alpha: float
    max_frame_pixels: int
    image_topic: str
    compressed: bool
    input_qos: QoSProfile
    output_qos: QoSProfile


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


class ProblemThrottle:
    """Lets one message of each kind through per period; the kind is the text with its values masked, so a
    camera that keeps sending the same bad frame logs once per period while a new fault is logged at once."""

    _VALUES = re.compile(r"'[^']*'|\d+")

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._last: dict[str, float] = {}

    def allow(self, text: str, now: float) -> bool:
        kind = self._VALUES.sub("#", text)
        if now - self._last.get(kind, -self._period_s) < self._period_s:
            return False
        self._last[kind] = now
        return True


class SegmentNode(Node):
    """Built with its parameters, model and publishers; ``warm_up`` then ``listen`` start it, and ``close`` stops
    its worker. ``main`` runs the steps one by one, so that a stop signal between them ends it at once."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=True))
        settings = self._read_settings()
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.get_logger().info(f"loading {settings.checkpoint!r} on {settings.device}")
        self._settings = settings
        self._segmenter = _load_segmenter(settings)
        self._compressed = settings.compressed
        self._overlay_alpha = settings.overlay_alpha
        self._max_frame_pixels = settings.max_frame_pixels
        self._stats = FrameStats()
        self._mailbox = LatestFrame()
        self._throttle = ProblemThrottle(PROBLEM_LOG_PERIOD_S)
        self._reported = self._stats.snapshot()
        self.crashed = False

        self._labels_pub = self.create_publisher(Image, "~/labels", settings.output_qos)
        self._exposure_pub = self.create_publisher(Image, "~/exposure", settings.output_qos)
        self._color_pub = self.create_publisher(Image, "~/color", settings.output_qos)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", settings.output_qos)
        self._class_info_pub = self.create_publisher(String, "~/class_info", LATCHED)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self._warm_up_s: float | None = None  # set by the worker once it has warmed up
        self._worker_ready = threading.Event()
        self._worker = threading.Thread(target=self._run, name=f"{NODE_NAME}_worker", daemon=True)

    def warm_up(self) -> None:
        """Start the worker and wait for its warm-up frame; WarmUpError when the model cannot run."""
        width, height = self._segmenter.input_size or WARM_UP_SIZE
        self.get_logger().info(f"warming up on {self._segmenter.device} at {width}×{height}")
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

    def _read_settings(self) -> Settings:
        value = {name: self.get_parameter(name).value for name in PARAMETERS}
        _require(value, "checkpoint", bool(value["checkpoint"]), "a path to an EGNet checkpoint (.pt)")
        _require(value, "input_type", value["input_type"] in ("raw", "compressed"), "raw or compressed")
        _require(value, "input_reliability", value["input_reliability"] in ("best_effort", "reliable"),
                 "best_effort or reliable")
        for name in ("input_qos_depth", "output_qos_depth"):
            _require(value, name, value[name] >= 1, "at least 1")
        _require(value, "threads", value["threads"] >= 0, "0 (torch's choice) or positive")
        _require(value, "max_frame_pixels", value["max_frame_pixels"] >= 1, "at least 1")
        for name in ("confidence_threshold", "overlay_alpha"):
            _require(value, name, 0.0 <= value[name] <= 1.0, "in [0, 1]")
        _require(value, "model.num_classes", value["model.num_classes"] >= 0, "0 (any) or positive")
        size = (value["input_width"], value["input_height"])
        _require(value, "input_width", size == (0, 0) or min(size) >= MIN_INPUT_SIZE,
                 f"0 together with input_height 0 (native size), or both at least {MIN_INPUT_SIZE}; "
                 f"input_height is {size[1]!r} and")
        try:
            device = resolve_device(value["device"])
        except ValueError as error:
            raise ParameterError(f"parameter 'device': {error}") from None
        half, cuda_graphs = (self._cuda_only(value, name, device) for name in ("half", "cuda_graphs"))
        precision = "fp16" if half else "bf16" if value["bf16"] else "fp32"
        return Settings(
            checkpoint=value["checkpoint"],
            expected_model={name.removeprefix("model."): value[name] for name in MODEL_PARAMETERS if value[name]},
            device=device,
            precision=precision,
            threads=value["threads"] and resolve_threads(value["threads"], name="parameter 'threads'"),
            compile=value["compile"],
            cuda_graphs=cuda_graphs,
            input_size=None if size == (0, 0) else size,
            confidence_threshold=value["confidence_threshold"] or None,
            overlay_alpha=value["overlay_alpha"],
            max_frame_pixels=value["max_frame_pixels"],
            image_topic=value["image_topic"],
            compressed=value["input_type"] == "compressed",
            input_qos=QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=value["input_qos_depth"],
                reliability=ReliabilityPolicy.RELIABLE if value["input_reliability"] == "reliable"
                else ReliabilityPolicy.BEST_EFFORT,
            ),
            output_qos=QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=value["output_qos_depth"],
                reliability=ReliabilityPolicy.RELIABLE,
            ),
        )

    def _cuda_only(self, values: dict[str, object], name: str, device: torch.device) -> bool:
        if values[name] and device.type != "cuda":
            self.get_logger().warning(f"parameter {name!r} is true but device is {device}: it needs CUDA, ignored")
            return False
        return bool(values[name])

    def _warm_up(self) -> float:
        """One prediction on a black frame, so that the first camera frame is not slowed by allocator and
        kernel set-up (on CUDA, several seconds)."""
        width, height = self._segmenter.input_size or WARM_UP_SIZE
        start = time.perf_counter()
        self._segmenter.predict(np.zeros((height, width, 3), dtype=np.uint8))
        return time.perf_counter() - start

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._stats.count_received()
        if self._mailbox.put(Frame(msg=msg, received=time.perf_counter())):
            self._stats.count_dropped()

    def _run(self) -> None:
        # The warm-up runs on this thread, so that the allocator arenas and thread pools that frames will use
        # are the ones it sets up.
        try:
            self._warm_up_s = self._warm_up()
        except Exception:
            self.get_logger().fatal(f"warm-up failed:\n{traceback.format_exc()}")
            return
        finally:
            self._worker_ready.set()
        while (frame := self._mailbox.take()) is not None:
            try:
                self._process(frame)
            except Exception:
                if not self.context.ok():
                    return  # SIGINT/SIGTERM shut the context down while this frame was being published
                # A bug, not a bad frame: end the process (with the traceback) rather than spin on without a worker.
                self.get_logger().fatal(f"the inference worker stopped:\n{traceback.format_exc()}")
                self.crashed = True
                rclpy.try_shutdown(context=self.context)
                return

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
        except RuntimeError as error:  # torch's device errors, torch.cuda.OutOfMemoryError included
            self._stats.count_failed()
            self._log_problem(f"inference on {self._segmenter.device} failed, frame skipped: {error}")
            if isinstance(error, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            return
        inference_s = time.perf_counter() - start
        self._publish(frame.msg.header, rgb, result)
        self._stats.count_processed(latency_s=time.perf_counter() - frame.received, inference_s=inference_s)

    def _to_rgb(self, msg: Image | CompressedImage) -> np.ndarray:
        to_rgb = compressed_to_rgb if self._compressed else image_to_rgb
        rgb = to_rgb(msg, max_frame_pixels=self._max_frame_pixels)
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
            blended = overlay(rgb, result.labels, self._overlay_alpha, colours=result.color)
            self._overlay_pub.publish(rgb_to_image(blended, header))

    def _log_problem(self, text: str) -> None:
        if self._throttle.allow(text, time.monotonic()):
            self.get_logger().error(text)

    def _publish_diagnostics(self) -> None:
        counts, previous = self._stats.snapshot(), self._reported
        self._reported = counts
        new_problems = (counts.invalid - previous.invalid) + (counts.failed - previous.failed)
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if new_problems else DiagnosticStatus.OK,
            name=f"{self.get_name()}: inference",
            message=self._status_message(counts, previous, new_problems),
            hardware_id=str(self._segmenter.device),
            values=[KeyValue(key=key, value=value) for key, value in self._diagnostic_values(counts)],
        )
        diagnostics = DiagnosticArray(status=[status])
        diagnostics.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(diagnostics)

    def _status_message(self, counts: FrameCounts, previous: FrameCounts, new_problems: int) -> str:
        if new_problems:
            return f"{new_problems} invalid or failed frame(s) in the last {DIAGNOSTICS_PERIOD_S:g} s"
        if counts.received == 0:
            return f"waiting for images on {self._subscription.topic_name}"
        rate = (counts.processed - previous.processed) / DIAGNOSTICS_PERIOD_S
        return f"{rate:.1f} frames/s processed"

    def _diagnostic_values(self, counts: FrameCounts) -> list[tuple[str, str]]:
        values = [
            ("received", str(counts.received)),
            ("processed", str(counts.processed)),
            ("dropped (superseded)", str(counts.dropped)),
            ("invalid", str(counts.invalid)),
            ("failed", str(counts.failed)),
        ]
        if counts.latency is not None:
            values += [
                ("latency p50 (ms)", f"{counts.latency.p50 * 1e3:.1f}"),
                ("latency p90 (ms)", f"{counts.latency.p90 * 1e3:.1f}"),
                ("latency p99 (ms)", f"{counts.latency.p99 * 1e3:.1f}"),
                ("inference p50 (ms)", f"{counts.inference.p50 * 1e3:.1f}"),
                ("window (frames)", str(counts.window)),
            ]
        return values + [("network input", self._input_text())]

    def _input_text(self) -> str:
        size = self._segmenter.input_size
        return "native" if size is None else f"{size[0]}×{size[1]}"


def class_info() -> String:
    """The class table as JSON: names and palette rows indexed by train id, and the id of ignored pixels.

    A std_msgs/String keeps consumers free of a custom message package; vision_msgs' LabelInfo would name
    the classes but carries no palette.
    """
    table = {"names": list(CLASS_NAMES), "palette": PALETTE.tolist(), "ignore": IGNORE_INDEX}
    return String(data=json.dumps(table))


def _load_segmenter(settings: Settings) -> Segmenter:
    try:
        segmenter = Segmenter.from_checkpoint(
            settings.checkpoint, device=settings.device, input_size=settings.input_size,
            confidence_threshold=settings.confidence_threshold, precision=settings.precision,
            compile=settings.compile, cuda_graphs=settings.cuda_graphs,
        )
        expected = dataclasses.replace(segmenter.config, **settings.expected_model)
        check_same_architecture(segmenter.config, expected, settings.checkpoint)
    except RuntimeError as error:  # the device could not take the model (CUDA out of memory, a driver error)
        raise ParameterError(f"parameter 'device': the model cannot run on {settings.device}: {error}") from None
    except (FileNotFoundError, ValueError) as error:
        origin = ", ".join(f"model.{name}" for name in settings.expected_model)
        suffix = f" (expected by parameter(s) {origin})" if origin and "another architecture" in str(error) else ""
        raise ParameterError(f"parameter 'checkpoint': {error}{suffix}") from None
    if segmenter.config.num_classes != NUM_CLASSES:
        raise ParameterError(
            f"parameter 'checkpoint': {settings.checkpoint!r} predicts {segmenter.config.num_classes} classes; "
            f"the node publishes the {NUM_CLASSES} Cityscapes classes of NightCity"
        )
    return segmenter


def _require(values: dict[str, object], name: str, condition: bool, expectation: str) -> None:
    if not condition:
        raise ParameterError(f"parameter {name!r} must be {expectation}, got {values[name]!r}")


def _check_parameter_overrides(argv: list[str]) -> None:
    """rcl cannot parse ``-p NAME:=`` with nothing after ``:=`` (``-p checkpoint:=''`` in a shell) and fails with a
    traceback inside rclpy.init; name the parameter instead."""
    ros_args = False
    for flag, rule in zip(argv, argv[1:]):
        if flag in ("--ros-args", "--"):
            ros_args = flag == "--ros-args"
        elif ros_args and flag in ("-p", "--param"):
            name, assigns, value = rule.partition(":=")
            if assigns and not value.strip():
                raise ParameterError(f"parameter {name!r} is empty on the command line ({flag} {rule}): give it a "
                                     f"value ({flag} {name}:=...) or leave it to the params file")


def _init_rclpy(args: list[str] | None) -> None:
    _check_parameter_overrides(sys.argv if args is None else args)
    try:
        # No rclpy signal handlers yet: they would shut the context down under the start-up (see _spin).
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except _rclpy.RCLError as error:  # rcl refuses the command line
        raise ParameterError(f"the ROS arguments cannot be parsed: {error}") from None


def _spin(node: SegmentNode, stop: StopSignals) -> None:
    """Spin until SIGINT or SIGTERM, unless one came already."""
    # rclpy's handlers shut the context down, which ends spin, and then call the StopSignals handlers. Installed
    # only now, so that no start-up step met a shut-down context; a signal that came earlier was only recorded.
    install_signal_handlers(SignalHandlerOptions.ALL)
    if not stop.requested:
        rclpy.spin(node)


def main(args: list[str] | None = None, *, stop: StopSignals | None = None) -> int:
    """Run the node until SIGINT or SIGTERM (exit status 0), also when one arrives during start-up; 1 when it
    cannot start or its worker failed. ``stop``: the console script's StopSignals, installed before the imports."""
    stop = stop or StopSignals()
    if stop.requested:
        return 0  # SIGINT or SIGTERM while torch and rclpy were imported: nothing had started
    use_fastdds_profile()
    node, rclpy_handlers = None, False
    try:
        _init_rclpy(args)
        # A signal from here to _spin is only recorded; each step runs to its end and the next is skipped.
        if not stop.requested:
            node = SegmentNode()
        if node is not None and not stop.requested:
            node.warm_up()
        if node is not None and not stop.requested:
            node.listen()
            rclpy_handlers = True
            _spin(node, stop)
    except (ParameterError, ParameterException, NameValidationException, WarmUpError) as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        return 1
    except ExternalShutdownException:
        pass  # SIGINT or SIGTERM: rclpy's handler has shut the context down, which ends spin
    finally:
        if node is not None:
            counts, logger_name = node.close(), node.get_logger().name
            node.destroy_node()
            # Logged after destroy_node: the node's logger would also publish to /rosout, whose context a
            # signal has already shut down.
            rclpy.logging.get_logger(logger_name).info(f"summary: {counts.summary()}")
        # Uninstalling handlers that were never installed would put SIG_DFL back for a moment.
        rclpy.try_shutdown(uninstall_handlers=rclpy_handlers)
    return 1 if node is not None and node.crashed else 0
