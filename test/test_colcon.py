"""The package built the way ROS users build it: `colcon build` in a workspace, the installed node started."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_ros import Peer, next_domain_id
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from egnet_ros.node_process import NodeProcess, node_environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
COLCON = Path(sys.executable).with_name("colcon")
SOURCES = (
    "setup.py", "setup.cfg", "package.xml", "README.md", "resource", "egnet_core", "egnet_ros", "launch", "config"
)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A colcon workspace with this checkout as src/egnet_ros, built with --packages-select egnet_ros."""
    root = tmp_path_factory.mktemp("ws")
    package = root / "src" / "egnet_ros"
    package.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, package / name, ignore=ignore)
        else:
            shutil.copy2(source, package / name)
    built = subprocess.run([str(COLCON), "build", "--packages-select", "egnet_ros"], cwd=root, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return root / "install" / "egnet_ros"


def test_colcon_installs_the_launch_file_configs_profile_and_node_where_ros2_looks(workspace):
    share = workspace / "share" / "egnet_ros"
    assert (workspace / "share" / "ament_index" / "resource_index" / "packages" / "egnet_ros").is_file()
    for path in ("package.xml", "launch/segment.launch.py", "config/segment.yaml", "config/fastdds_profile.xml",
                 "config/train_nightcity.yaml"):
        assert (share / path).is_file(), path
    for script in ("segment_node", "egnet-segment", "egnet"):  # `ros2 run egnet_ros segment_node` looks in lib/
        assert os.access(workspace / "lib" / "egnet_ros" / script, os.X_OK), script


def test_the_installed_node_starts_and_publishes_its_class_table(workspace, tiny_checkpoint, tmp_path):
    (site_packages,) = (workspace / "lib").glob("python3*/site-packages")
    domain_id = next_domain_id()
    # What `source install/setup.bash` does for Python: the installed copy comes first.
    environment = node_environment(domain_id) | {"PYTHONPATH": str(site_packages)}
    where = subprocess.run([sys.executable, "-c", "import egnet_ros, egnet_core; print(egnet_ros.__file__); "
                            "print(egnet_core.__file__)"], env=environment, cwd=tmp_path, capture_output=True,
                           text=True, check=True)
    assert all(line.startswith(str(site_packages)) for line in where.stdout.split()), where.stdout

    peer = Peer(domain_id)
    node = NodeProcess([workspace / "lib" / "egnet_ros" / "segment_node", "--ros-args", "-p",
                        f"checkpoint:={tiny_checkpoint}", "-p", "input_width:=64", "-p", "input_height:=64"],
                       domain_id=domain_id, log=tmp_path / "node.log", env={"PYTHONPATH": str(site_packages)},
                       cwd=tmp_path)
    try:
        class_info = peer.record(String, "/egnet_segment/class_info", LATCHED)
        peer.spin_until(lambda: class_info or node.process.poll() is not None, 120, "the installed node's class table")
        assert class_info, node.output
        assert '"names": ["road", "sidewalk"' in class_info[0].data
    finally:
        peer.close()
        assert node.stop() == 0, node.output
