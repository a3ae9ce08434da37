"""launch/segment.launch.py, run against test doubles of the launch classes it uses (launch and launch_ros are
not installable here), and the node started with exactly the command line launch_ros would give it."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from helpers_ros import Peer, make_header, make_image_msg, next_domain_id
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from egnet_ros.dds import FASTDDS_PROFILE, FASTDDS_PROFILE_ENV, use_fastdds_profile
from egnet_ros.node_process import NodeProcess

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch/segment.launch.py"


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None):
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None):
        self.function = function


class LaunchDescription:
    def __init__(self, initial_entities=None):
        self.entities = list(initial_entities or [])


class Node:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class LaunchContext:
    def __init__(self, launch_configurations):
        self.launch_configurations = launch_configurations


@pytest.fixture
def load_launch_file(monkeypatch):
    """Reads the launch file as a module, importing the doubles above in place of launch and launch_ros."""
    modules = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node},
    }
    for name, members in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(members)
        monkeypatch.setitem(sys.modules, name, module)

    def load():
        spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def launch_file(load_launch_file):
    return load_launch_file()


def launch(module, **arguments) -> Node:
    """What ``ros2 launch egnet_ros segment.launch.py name:=value ...`` would start."""
    description = module.generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(arguments) - set(declared)
    assert not unknown, f"not launch arguments: {unknown}"
    configurations = {name: arguments.get(name, argument.default_value) for name, argument in declared.items()}
    (function,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = function.function(LaunchContext(configurations))
    return node


def ros_args(node: Node) -> list[str]:
    """The command-line arguments launch_ros passes to a Node's executable."""
    options = node.kwargs
    args = ["--ros-args", "-r", f"__node:={options['name']}"]
    if options["namespace"]:  # launch_ros makes a relative namespace absolute
        args += ["-r", f"__ns:=/{options['namespace'].lstrip('/')}"]
    for parameters in options["parameters"]:
        if isinstance(parameters, dict):
            for name, value in parameters.items():
                args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
        else:
            args += ["--params-file", parameters]
    for source, target in options["remappings"]:
        args += ["-r", f"{source}:={target}"]
    return args


@pytest.mark.integration
def test_the_defaults_start_the_installed_node_with_the_shipped_params_and_dds_profile(load_launch_file, monkeypatch):
    monkeypatch.delenv(FASTDDS_PROFILE_ENV, raising=False)
    node = launch(load_launch_file())
    assert node.kwargs["package"] == "egnet_ros"
    assert node.kwargs["executable"] == "segment_node"
    assert node.kwargs["name"] == "egnet_segment"
    assert node.kwargs["namespace"] == ""
    params_file, overrides = node.kwargs["parameters"]
    assert Path(params_file) == ROOT / "config/segment.yaml" and Path(params_file).is_file()
    assert overrides == {"use_sim_time": False}, "an empty checkpoint argument leaves the params file's"
    assert node.kwargs["remappings"] == [("image", "/camera/image_raw"), ("camera_info", "/camera/camera_info")]
    assert Path(node.kwargs["additional_env"][FASTDDS_PROFILE_ENV]) == FASTDDS_PROFILE


@pytest.mark.integration
def test_arguments_reach_the_node(launch_file, tmp_path):
    node = launch(launch_file, image_topic="/front/image_color", checkpoint="/models/best.pt", use_sim_time="True",
                  namespace="car1", params_file=str(tmp_path / "mine.yaml"), fastdds_profile="")
    assert node.kwargs["parameters"] == [
        str(tmp_path / "mine.yaml"), {"use_sim_time": True, "checkpoint": "/models/best.pt"}
    ]
    assert node.kwargs["remappings"] == [("image", "/front/image_color"), ("camera_info", "/front/camera_info")]
    assert node.kwargs["namespace"] == "car1"
    assert node.kwargs["additional_env"] == {FASTDDS_PROFILE_ENV: ""}  # the node then loads none


@pytest.mark.integration
def test_four_cameras_are_one_node_each_camera_remapped_with_its_camera_info(launch_file):
    node = launch(launch_file, cameras="front, left,right,rear")
    assert node.kwargs["parameters"][1]["cameras"] == ["front", "left", "right", "rear"]
    assert node.kwargs["remappings"][:2] == [("front/image", "/camera/front/image_raw"),
                                             ("front/camera_info", "/camera/front/camera_info")]
    assert len(node.kwargs["remappings"]) == 8
    node = launch(launch_file, cameras="front,rear", camera_topics="/sensing/cam0/image_rect,/sensing/cam3/image_rect")
    assert node.kwargs["remappings"] == [
        ("front/image", "/sensing/cam0/image_rect"), ("front/camera_info", "/sensing/cam0/camera_info"),
        ("rear/image", "/sensing/cam3/image_rect"), ("rear/camera_info", "/sensing/cam3/camera_info")]
    with pytest.raises(ValueError, match=r"'camera_topics' has 1 topic\(s\) for 2 camera\(s\) \['front', 'rear'\]"):
        launch(launch_file, cameras="front,rear", camera_topics="/a/image")
    with pytest.raises(ValueError, match="'camera_topics' \\('/a/image'\\) needs 'cameras' too"):
        launch(launch_file, camera_topics="/a/image")


@pytest.mark.integration
def test_a_fastdds_profile_the_user_chose_is_kept(load_launch_file, monkeypatch):
    monkeypatch.setenv(FASTDDS_PROFILE_ENV, "/etc/fleet/fastdds.xml")
    node = launch(load_launch_file())
    assert node.kwargs["additional_env"] == {FASTDDS_PROFILE_ENV: "/etc/fleet/fastdds.xml"}


def test_an_empty_profile_variable_means_no_profile(monkeypatch):
    monkeypatch.setenv(FASTDDS_PROFILE_ENV, "")
    use_fastdds_profile()
    assert FASTDDS_PROFILE_ENV not in os.environ
    use_fastdds_profile()  # unset: egnet's own
    assert os.environ[FASTDDS_PROFILE_ENV] == str(FASTDDS_PROFILE)


@pytest.mark.integration
def test_a_bad_use_sim_time_is_an_error_naming_the_argument(launch_file):
    with pytest.raises(ValueError, match="launch argument 'use_sim_time' must be true or false, got 'yes'"):
        launch(launch_file, use_sim_time="yes")


@pytest.mark.integration
def test_the_node_runs_with_the_command_line_launch_would_give_it(launch_file, tiny_checkpoint, tmp_path):
    node = launch(launch_file, image_topic="/front/image_raw", checkpoint=str(tiny_checkpoint), use_sim_time="true",
                  namespace="car1")
    domain_id = next_domain_id()
    peer = Peer(domain_id)
    process = NodeProcess.script("segment_node", ros_args(node), domain_id=domain_id, log=tmp_path / "node.log")
    try:
        process.wait_until_ready(domain_id, "/car1/egnet_segment")
        camera = peer.publisher(Image, "/front/image_raw", qos_profile_sensor_data)
        labels = peer.record(Image, "/car1/egnet_segment/labels", 10)
        diagnostics = peer.record(DiagnosticArray, "/diagnostics", 10)
        peer.wait_for_subscriber(camera)
        peer.spin_for(0.5)
        msg = make_image_msg(np.zeros((48, 64, 3), np.uint8), "rgb8")
        msg.header = make_header(sec=42)
        camera.publish(msg)
        peer.spin_until(lambda: labels and diagnostics, 30, "labels in the launch namespace and diagnostics")
        assert process.stop() == 0
    finally:
        peer.close()
        process.kill()
    assert labels[0].header.stamp.sec == 42
    # use_sim_time reached the node: with no /clock its clock stands at zero, and diagnostics carry that time.
    assert diagnostics[-1].header.stamp.sec == 0 and diagnostics[-1].header.stamp.nanosec == 0


@pytest.mark.integration
def test_max_frame_pixels_reaches_the_node_as_an_integer(launch_file):
    node = launch(launch_file, max_frame_pixels="8294400")
    assert node.kwargs["parameters"][1] == {"use_sim_time": False, "max_frame_pixels": 8294400}
    with pytest.raises(ValueError, match="launch argument 'max_frame_pixels' must be a positive whole number, got"):
        launch(launch_file, max_frame_pixels="4k")
