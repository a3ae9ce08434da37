"""Start the egnet_segment node: ``ros2 launch egnet_ros segment.launch.py checkpoint:=/path/to/best.pt``.

Arguments (``ros2 launch egnet_ros segment.launch.py --show-args`` lists them): the camera topic, the params
file, the checkpoint, the largest frame accepted, ``use_sim_time`` (for bag replay), the namespace, and the
Fast DDS profile the node loads.
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
    "image_topic": ("/camera/image_raw", "camera topic the node's 'image' input is remapped to"),
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
    return [
        Node(
            package="egnet_ros",
            executable="segment_node",
            name="egnet_segment",
            namespace=value["namespace"],
            parameters=[value["params_file"], overrides],
            remappings=[("image", value["image_topic"])],
            additional_env={FASTDDS_PROFILE_ENV: value["fastdds_profile"]},  # empty: the node loads no profile
            output="screen",
            emulate_tty=True,
        )
    ]
