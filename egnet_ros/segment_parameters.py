"""The segmentation node's parameters: declared read-only, read once, turned into the Segmenter's InferenceOptions
(which validate themselves, in the parameters' names) and the node's own ROS settings."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.data.labels import NUM_CLASSES
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import InferenceOptions, OptionError
from egnet_core.model.checkpoint import CheckpointMismatch

from .cameras import CameraTopics, camera_topics
from .diagnostics import ExposureLimits

# name: (default, description). Every parameter is read once at start-up, so all are read-only.
PARAMETERS: dict[str, tuple[object, str]] = {
    "checkpoint": ("", "EGNet checkpoint (.pt) from egnet train, or .onnx from egnet export (ONNX Runtime); required"),
    "model.backbone": ("", "if set, the checkpoint must have this backbone (resnet18|resnet34|resnet50|resnet101)"),
    "model.output_stride": (0, "if non-zero, the checkpoint must have this output stride (8|16|32)"),
    "model.variant": ("", "if set, the checkpoint must be this EGNet variant (egnet, no_egl, ...)"),
    "model.num_classes": (0, "if non-zero, the checkpoint must predict this many classes"),
    "device": ("auto", "auto (CUDA when there is a GPU), cpu, cuda or cuda:N"),
    "precision": ("auto", "auto (at start-up, the fastest path whose labels agree with fp32), fp32, bf16 (CPUs "
                          "with AVX-512 BF16 or AMX, and CUDA) or fp16 (CUDA)"),
    "cuda_graphs": (False, "replay a captured CUDA graph per frame size; CUDA only, ignored with a warning on the CPU"),
    "compile": (False, "run the network through torch.compile (a slower start, then faster frames)"),
    "threads": (0, "CPU threads for inference, capped at the available CPUs; 0: torch's choice"),
    "input_width": (0, "width the network runs at; 0 with input_height 0: each frame's own size"),
    "input_height": (0, "height the network runs at; 0 with input_width 0: each frame's own size"),
    "confidence_threshold": (0.0, "pixels whose top softmax score is below this are labelled 255; 0 disables"),
    "overlay_alpha": (0.5, "weight of the palette in ~/overlay, in [0, 1]"),
    "max_frame_pixels": (MAX_FRAME_PIXELS, "frames of more pixels (width*height, read before decoding) are dropped"),
    "max_consecutive_failures": (10, "stop (exit status 3) after this many frames in a row fail at inference; "
                                     "0: never stop"),
    "cameras": (Parameter.Type.STRING_ARRAY, "camera names, e.g. [front, left]: each reads NAME/image and "
                                              "NAME/camera_info and publishes under ~/NAME/; unset: one camera "
                                              "on image_topic"),
    "inference_streams": (0, "worker threads segmenting different cameras at once (a camera is never in two); "
                              "0: auto, one per camera on the CPU (measured fastest there), 1 on CUDA"),
    "image_topic": ("image", "input topic of the single camera (remapping 'image' does the same)"),
    "input_type": ("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, JPEG or PNG)"),
    "input_reliability": ("best_effort", "input QoS reliability: best_effort (sensor data) or reliable"),
    "input_qos_depth": (1, "input queue depth (keep last)"),
    "output_qos_depth": (5, "output queue depth (reliable, keep last)"),
    "exposure_dark_warn_share": (0.95, "a camera is reported (WARN) when this share of its frame is below V 0.1"),
    "exposure_bright_warn_share": (0.5, "a camera is reported (WARN) when this share of its frame is V 0.9 or more"),
}
# Still read, with a warning; not in config/segment.yaml.
DEPRECATED_PARAMETERS: dict[str, tuple[object, str]] = {
    "half": (False, "deprecated: precision fp16 (CUDA only, ignored with a warning on the CPU)"),
    "bf16": (False, "deprecated: precision bf16"),
}
MODEL_PARAMETERS = ("model.backbone", "model.output_stride", "model.variant", "model.num_classes")
# The parameters' names of InferenceOptions fields, for the options' messages.
OPTION_NAMES = {
    "device": "parameter 'device'", "threads": "parameter 'threads'", "compile": "parameter 'compile'",
    "cuda_graphs": "parameter 'cuda_graphs'", "confidence_threshold": "parameter 'confidence_threshold'",
    "input_size": "parameters 'input_width' and 'input_height'", "precision": "parameter 'precision'",
    "architecture": "the model.* parameters",
}


class ParameterError(ValueError):
    """A parameter the node cannot start with; the text names the parameter and its value."""


@dataclass(frozen=True)
class NodeSettings:
    """What the node itself does with messages; how the model runs is the InferenceOptions'."""

    checkpoint: str
    overlay_alpha: float
    max_frame_pixels: int
    max_consecutive_failures: int  # 0: never stop
    cameras: tuple[CameraTopics, ...]
    streams: int  # inference streams, each taking at most ceil(cameras / streams) cameras' frames per batch
    compressed: bool
    exposure_limits: ExposureLimits
    input_qos: QoSProfile
    output_qos: QoSProfile


def declare_parameters(node: Node) -> None:
    for name, (default, description) in (PARAMETERS | DEPRECATED_PARAMETERS).items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=True))


def read_parameters(node: Node) -> tuple[InferenceOptions, NodeSettings]:
    value = {name: _value(node, name) for name in PARAMETERS | DEPRECATED_PARAMETERS}
    _require(value, "checkpoint", bool(value["checkpoint"]), "a path to an EGNet checkpoint (.pt)")
    _require(value, "input_type", value["input_type"] in ("raw", "compressed"), "raw or compressed")
    _require(value, "input_reliability", value["input_reliability"] in ("best_effort", "reliable"),
             "best_effort or reliable")
    for name in ("input_qos_depth", "output_qos_depth"):
        _require(value, name, value[name] >= 1, "at least 1")
    _require(value, "max_frame_pixels", value["max_frame_pixels"] >= 1, "at least 1")
    _require(value, "max_consecutive_failures", value["max_consecutive_failures"] >= 0, "0 (never stop) or positive")
    _require(value, "overlay_alpha", 0.0 <= value["overlay_alpha"] <= 1.0, "in [0, 1]")
    _require(value, "model.num_classes", value["model.num_classes"] >= 0, "0 (any) or positive")
    for name in ("exposure_dark_warn_share", "exposure_bright_warn_share"):
        _require(value, name, 0.0 < value[name] <= 1.0, "in (0, 1]")
    try:
        cameras = camera_topics(value["cameras"], image_topic=value["image_topic"],
                                compressed=value["input_type"] == "compressed")
    except ValueError as error:
        raise ParameterError(f"parameter 'cameras': {error}") from None
    device = _options(device=value["device"]).device
    cuda_graphs = _cuda_only(node, value, "cuda_graphs", str(device))
    streams = resolve_streams(value["inference_streams"], len(cameras), cuda=device.type == "cuda",
                              cuda_graphs=cuda_graphs)
    size = (value["input_width"], value["input_height"])
    options = _options(
        device=device, precision=_precision(node, value, str(device)), threads=value["threads"],
        compile=value["compile"], cuda_graphs=cuda_graphs, input_size=None if size == (0, 0) else size,
        confidence_threshold=value["confidence_threshold"] or None,
        architecture={name.removeprefix("model."): value[name] for name in MODEL_PARAMETERS if value[name]},
    )
    reliable = value["input_reliability"] == "reliable"
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    settings = NodeSettings(
        checkpoint=value["checkpoint"],
        overlay_alpha=value["overlay_alpha"],
        max_frame_pixels=value["max_frame_pixels"],
        max_consecutive_failures=value["max_consecutive_failures"],
        cameras=tuple(cameras),
        streams=streams,
        compressed=value["input_type"] == "compressed",
        exposure_limits=ExposureLimits(dark_share=value["exposure_dark_warn_share"],
                                       bright_share=value["exposure_bright_warn_share"]),
        input_qos=QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=value["input_qos_depth"], reliability=reliability),
        output_qos=QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=value["output_qos_depth"],
                              reliability=ReliabilityPolicy.RELIABLE),
    )
    return options, settings


def load_segmenter(checkpoint: str, options: InferenceOptions) -> Segmenter:
    """The checkpoint's Segmenter; errors name the parameter to change."""
    try:
        segmenter = Segmenter.from_checkpoint(checkpoint, options)
    except InferenceError as error:  # the device could not take the model (CUDA out of memory, a driver error)
        raise ParameterError(f"parameter 'device': the model cannot run on {options.device}: {error}") from None
    except CheckpointMismatch as error:
        origin = ", ".join(f"model.{name}" for name in error.differences)
        raise ParameterError(f"parameter 'checkpoint': {error} (expected by parameter(s) {origin})") from None
    except (FileNotFoundError, ValueError) as error:
        raise ParameterError(f"parameter 'checkpoint': {error}") from None
    if segmenter.config.num_classes != NUM_CLASSES:
        raise ParameterError(
            f"parameter 'checkpoint': {checkpoint!r} predicts {segmenter.config.num_classes} classes; "
            f"the node publishes the {NUM_CLASSES} Cityscapes classes of NightCity"
        )
    return segmenter


def _options(**fields) -> InferenceOptions:
    try:
        return InferenceOptions(names=OPTION_NAMES, **fields)
    except OptionError as error:
        raise ParameterError(str(error)) from None


def _value(node: Node, name: str):
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:  # declared by type only (cameras): not given
        return []


def _precision(node: Node, value: dict[str, object], device: str) -> str:
    """The precision parameter, or what the deprecated half (CUDA only, as always) or bf16 ask for."""
    legacy = {name: precision for name, precision in (("half", "fp16"), ("bf16", "bf16"))
              if name != "half" or _cuda_only(node, value, name, device)}
    asked = [name for name in legacy if value[name]]
    if not asked:
        return value["precision"]
    if value["precision"] != "auto":
        raise ParameterError(f"parameter 'precision' is {value['precision']!r} and the deprecated parameter "
                             f"{asked[0]!r} is true: set precision only")
    node.get_logger().warning(f"parameter {asked[0]!r} is deprecated: use precision: {legacy[asked[0]]}")
    return legacy[asked[0]]


def _cuda_only(node: Node, values: dict[str, object], name: str, device: str) -> bool:
    if values[name] and not device.startswith("cuda"):
        node.get_logger().warning(f"parameter {name!r} is true but device is {device}: it needs CUDA, ignored")
        return False
    return bool(values[name])


def resolve_streams(requested: int, cameras: int, *, cuda: bool, cuda_graphs: bool) -> int:
    """The number of inference streams: ``requested``, or for 0 what measured fastest (see the parameter)."""
    if requested == 0:
        return 1 if cuda else cameras
    if requested < 0 or requested > cameras:
        raise ParameterError(f"parameter 'inference_streams' is {requested}: expected 0 (auto) or 1 to the number "
                             f"of cameras ({cameras}), since each stream segments other cameras")
    if requested > 1 and cuda_graphs:
        raise ParameterError(f"parameter 'inference_streams' is {requested} with parameter 'cuda_graphs' true: a "
                             "captured CUDA graph replays one set of buffers; use inference_streams 1 with CUDA graphs")
    return requested


def _require(values: dict[str, object], name: str, condition: bool, expectation: str) -> None:
    if not condition:
        raise ParameterError(f"parameter {name!r} must be {expectation}, got {values[name]!r}")


def check_parameter_overrides(argv: list[str]) -> None:
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


def init_rclpy(args: list[str] | None) -> None:
    check_parameter_overrides(sys.argv if args is None else args)
    try:
        # No rclpy signal handlers yet: they would shut the context down under the start-up (see the node's _spin).
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except _rclpy.RCLError as error:  # rcl refuses the command line
        raise ParameterError(f"the ROS arguments cannot be parsed: {error}") from None
