"""Start the egnet_segment node: ``ros2 launch egnet_ros segment.launch.py checkpoint:=/path/to/best.pt``.

Arguments (``ros2 launch egnet_ros segment.launch.py --show-args`` lists them): the camera topic (or several
cameras and their topics), the params file, the checkpoint, the largest frame accepted, ``use_sim_time`` (for
bag replay), the namespace, and the Fast DDS profile the node loads.

Four cameras through one model: ``ros2 launch egnet_ros segment.launch.py cameras:=front,left,right,rear``
reads ``/camera/front/image_raw`` (and ``/camera/front/camera_info``) and so on; ``camera_topics:=`` lists other
image topics, one per camera, each camera's camera_info taken from beside its image.
"""

import os
from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from egnet_ros.dds import FASTDDS_PROFILE, FASTDDS_PROFILE_ENV
from launch import LaunchDescription

# share/egnet_ros/launch/ when installed, launch/ in the source tree: config/ is beside it in both.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"

# name: (default, description)
ARGUMENTS = {
    "image_topic": ("/camera/image_raw", "camera topic the node's 'image' input is remapped to (one camera)"),
    "cameras": ("", "comma-separated camera names (front,left,right,rear): one model pass for all; empty: one camera "
                    "on image_topic"),
    "camera_topics": ("", "comma-separated image topics, one per camera in 'cameras'; empty: "
                          "/camera/NAME/image_raw"),
    "params_file": (str(CONFIG_DIR / "segment.yaml"), "YAML file with the node's parameters"),
    "checkpoint": ("", "EGNet checkpoint (.pt); empty: the 'checkpoint' parameter of params_file"),
    "max_frame_pixels": ("", "frames of more pixels (width*height) are dropped; empty: params_file's (4096*4096)"),
    "use_sim_time": ("false", "true to follow /clock, as when a bag is replayed with --clock"),
    "namespace": ("", "namespace of the node and of its topics"),
    "fastdds_profile": (
        os.environ.get(FASTDDS_PROFILE_ENV, str(FASTDDS_PROFILE)),
        "Fast DDS XML profile for the node (large best-effort images need its 32 MiB shared-memory segments); "
        "the camera driver should load the same file; empty: none",
    ),
}


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in ARGUMENTS.items()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_segment_node)])


def _segment_node(context):
    value = context.launch_configurations
    use_sim_time = value["use_sim_time"].strip().lower()
    if use_sim_time not in ("true", "false"):
        raise ValueError(f"launch argument 'use_sim_time' must be true or false, got {value['use_sim_time']!r}")
    # The checkpoint and max_frame_pixels arguments override the params file only when given, so it may carry them.
    overrides = {"use_sim_time": use_sim_time == "true"}
    if value["checkpoint"]:
        overrides["checkpoint"] = value["checkpoint"]
    if value["max_frame_pixels"]:
        if not value["max_frame_pixels"].strip().isdigit() or int(value["max_frame_pixels"]) < 1:
            raise ValueError("launch argument 'max_frame_pixels' must be a positive whole number, "
                             f"got {value['max_frame_pixels']!r}")
        overrides["max_frame_pixels"] = int(value["max_frame_pixels"])
    cameras = _names(value["cameras"])
    if cameras:
        overrides["cameras"] = cameras
    return [
        Node(
            package="egnet_ros",
            executable="segment_node",
            name="egnet_segment",
            namespace=value["namespace"],
            parameters=[value["params_file"], overrides],
            remappings=_remappings(value),
            additional_env={FASTDDS_PROFILE_ENV: value["fastdds_profile"]},  # empty: the node loads no profile
            output="screen",
            emulate_tty=True,
        )
    ]


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _remappings(value) -> list[tuple[str, str]]:
    """Each camera's image topic and the camera_info beside it (``/a/b/image_raw`` -> ``/a/b/camera_info``)."""
    cameras, topics = _names(value["cameras"]), _names(value["camera_topics"])
    if not cameras:
        if topics:
            raise ValueError(f"launch argument 'camera_topics' ({value['camera_topics']!r}) needs 'cameras' too")
        return [("image", value["image_topic"]), ("camera_info", _beside(value["image_topic"]))]
    topics = topics or [f"/camera/{name}/image_raw" for name in cameras]
    if len(topics) != len(cameras):
        raise ValueError(f"launch argument 'camera_topics' has {len(topics)} topic(s) for {len(cameras)} camera(s) "
                         f"{cameras}: give one image topic per camera, in the same order")
    return [pair for name, topic in zip(cameras, topics)
            for pair in ((f"{name}/image", topic), (f"{name}/camera_info", _beside(topic)))]


def _beside(image_topic: str) -> str:
    namespace = image_topic.rpartition("/")[0]
    return f"{namespace}/camera_info" if namespace or image_topic.startswith("/") else "camera_info"
