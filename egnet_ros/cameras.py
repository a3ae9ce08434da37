"""The node's cameras: which topics each one reads and writes, and what the node keeps about it.

With no ``cameras`` parameter the node has one camera on ``image`` (and ``camera_info`` beside it) and
publishes ``~/labels`` and the rest, as it always has. With ``cameras: [front, left]`` each camera NAME
reads ``NAME/image`` (``NAME/image/compressed`` for compressed input) and ``NAME/camera_info``, and publishes
``~/NAME/labels``, ``~/NAME/exposure``, ``~/NAME/confidence``, ``~/NAME/color``, ``~/NAME/overlay`` and
``~/NAME/camera_info``; relative names, so ``-r front/image:=/sensing/camera/front/image_raw`` remaps one.
"""

from __future__ import annotations

import copy
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from egnet_core.data.exposure import ExposureHealth, exposure_map
from egnet_core.deploy.inference import Segmentation
from egnet_core.reports.visualize import overlay

from .frame_stats import FrameStats
from .image_conversion import exposure_to_image, labels_to_image, rgb_to_image

# A camera name is one or more ROS name tokens joined by '/': it becomes part of topic names.
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")
OUTPUTS = ("labels", "exposure", "confidence", "color", "overlay", "camera_info")


@dataclass(frozen=True)
class CameraTopics:
    name: str  # the camera's name, or the single camera's input topic
    image: str
    camera_info: str
    outputs: str  # the prefix of its outputs: "~" or "~/NAME"


def camera_topics(cameras: Sequence[str], *, image_topic: str, compressed: bool) -> list[CameraTopics]:
    """The topics of each camera; ``cameras`` empty: the single camera on ``image_topic``. ValueError names a
    camera name that cannot be part of a topic name, or one given twice."""
    if not cameras:
        namespace, _, _ = image_topic.rpartition("/")
        info = f"{namespace}/camera_info" if namespace or image_topic.startswith("/") else "camera_info"
        return [CameraTopics(name=image_topic, image=image_topic, camera_info=info, outputs="~")]
    for name in cameras:
        if not isinstance(name, str) or not CAMERA_NAME.fullmatch(name):
            raise ValueError(f"camera name {name!r} cannot be part of a topic name: use letters, digits and '_' "
                             "(starting with a letter), tokens joined by '/', e.g. [front, left, rear]")
    repeated = sorted(name for name, count in Counter(cameras).items() if count > 1)
    if repeated:
        raise ValueError(f"camera name(s) {repeated} given more than once in {list(cameras)}")
    suffix = "image/compressed" if compressed else "image"
    return [CameraTopics(name=name, image=f"{name}/{suffix}", camera_info=f"{name}/camera_info", outputs=f"~/{name}")
            for name in cameras]


class Camera:
    """One camera's publishers, frame counts, batch sizes, newest camera_info and last processed frame."""

    def __init__(self, node: Node, topics: CameraTopics, qos: QoSProfile) -> None:
        self.topics = topics
        self.stats = FrameStats()
        self.reported = self.stats.snapshot()  # at the last diagnostics
        self._publishers = {output: node.create_publisher(CameraInfo if output == "camera_info" else Image,
                                                          f"{topics.outputs}/{output}", qos)
                            for output in OUTPUTS}
        self._lock = threading.Lock()  # camera_info comes on the executor, the rest on the worker
        self._camera_info: CameraInfo | None = None
        self._batch_sizes: Counter[int] = Counter()
        self._last_frame: np.ndarray | None = None  # RGB, for the exposure health

    @property
    def name(self) -> str:
        return self.topics.name

    def output_topic(self, output: str) -> str:
        return self._publishers[output].topic_name

    def wants(self, output: str) -> bool:
        """Whether ``output`` (made only on demand: confidence, color, overlay) has a subscriber."""
        return self._publishers[output].get_subscription_count() > 0

    def on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg

    def publish(self, header: Header, rgb: np.ndarray, result: Segmentation, *, batch_size: int,
                overlay_alpha: float) -> None:
        """The outputs of one frame, each with the frame's own header."""
        publishers = self._publishers
        publishers["labels"].publish(labels_to_image(result.labels, header))
        publishers["exposure"].publish(exposure_to_image(result.exposure, header))
        if result.confidence is not None and self.wants("confidence"):
            publishers["confidence"].publish(exposure_to_image(result.confidence, header))
        if result.color is not None and self.wants("color"):
            publishers["color"].publish(rgb_to_image(result.color, header))
        if result.color is not None and self.wants("overlay"):
            blended = overlay(rgb, result.labels, overlay_alpha, colours=result.color)
            publishers["overlay"].publish(rgb_to_image(blended, header))
        with self._lock:
            camera_info = copy.deepcopy(self._camera_info)
            self._batch_sizes[batch_size] += 1
            self._last_frame = rgb
        if camera_info is not None:  # the labels' exact header, for ExactTime synchronisers and projection
            camera_info.header = copy.deepcopy(header)
            publishers["camera_info"].publish(camera_info)

    def batch_sizes(self) -> dict[int, int]:
        with self._lock:
            return dict(sorted(self._batch_sizes.items()))

    def exposure_health(self) -> ExposureHealth | None:
        """Of the last processed frame, from its measured exposure (V of HSV, Section 3: what the camera saw,
        whatever the model makes of it); None before the first. Computed when asked: once per diagnostics."""
        with self._lock:
            frame = self._last_frame
        return None if frame is None else ExposureHealth.of(exposure_map(frame))
