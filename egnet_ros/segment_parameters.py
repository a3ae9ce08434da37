"""The segmentation node's parameters: declared read-only, read once, turned into the Segmenter's InferenceOptions
(which validate themselves, in the parameters' names) and the node's own ROS settings."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from egnet_core.data.imageio import MAX_FRAME_PIXELS
from egnet_core.data.labels import NUM_CLASSES
from egnet_core.deploy.errors import InferenceError
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import InferenceOptions, OptionError
from egnet_core.model.checkpoint import CheckpointMismatch

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
    "max_consecutive_failures": (10, "stop (exit status 3) after this many frames in a row fail at inference; "
                                     "0: never stop"),
    "image_topic": ("image", "input topic (remapping 'image' does the same)"),
    "input_type": ("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, JPEG or PNG)"),
    "input_reliability": ("best_effort", "input QoS reliability: best_effort (sensor data) or reliable"),
    "input_qos_depth": (1, "input queue depth (keep last)"),
    "output_qos_depth": (5, "output queue depth (reliable, keep last)"),
}
MODEL_PARAMETERS = ("model.backbone", "model.output_stride", "model.variant", "model.num_classes")
# The parameters' names of InferenceOptions fields, for the options' messages.
OPTION_NAMES = {
    "device": "parameter 'device'", "threads": "parameter 'threads'", "compile": "parameter 'compile'",
    "cuda_graphs": "parameter 'cuda_graphs'", "confidence_threshold": "parameter 'confidence_threshold'",
    "input_size": "parameters 'input_width' and 'input_height'", "precision": "parameters 'half' and 'bf16'",
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
    image_topic: str
    compressed: bool
    input_qos: QoSProfile
    output_qos: QoSProfile


def declare_parameters(node: Node) -> None:
    for name, (default, description) in PARAMETERS.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=True))


def read_parameters(node: Node) -> tuple[InferenceOptions, NodeSettings]:
    value = {name: node.get_parameter(name).value for name in PARAMETERS}
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
    device = _options(device=value["device"]).device
    half, cuda_graphs = (_cuda_only(node, value, name, str(device)) for name in ("half", "cuda_graphs"))
    size = (value["input_width"], value["input_height"])
    options = _options(
        device=device, precision="fp16" if half else "bf16" if value["bf16"] else "fp32", threads=value["threads"],
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
        image_topic=value["image_topic"],
        compressed=value["input_type"] == "compressed",
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


def _cuda_only(node: Node, values: dict[str, object], name: str, device: str) -> bool:
    if values[name] and not device.startswith("cuda"):
        node.get_logger().warning(f"parameter {name!r} is true but device is {device}: it needs CUDA, ignored")
        return False
    return bool(values[name])


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
