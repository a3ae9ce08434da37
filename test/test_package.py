"""The distribution as colcon and pip see it: package.xml, and what a built wheel installs where."""

import ast
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import tiny_model

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_is_a_format_3_ament_python_package_with_real_dependencies():
    package = ElementTree.parse(ROOT / "package.xml").getroot()
    assert package.get("format") == "3"
    assert package.findtext("name") == "egnet_ros"
    assert package.find("export/build_type").text == "ament_python"
    depends = {element.text for element in package.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "launch_ros", "python3-torch", "python3-torchvision",
            "python3-opencv", "python3-numpy"} <= depends
    assert {"ament_copyright", "ament_flake8", "ament_pep257", "python3-pytest"} <= {
        element.text for element in package.findall("test_depend")}


def _imported_top_level_modules(*folders: Path) -> set[str]:
    names = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def test_package_xml_lists_every_ros_package_the_code_imports():
    imported = _imported_top_level_modules(ROOT / "egnet_ros", ROOT / "launch")
    ros = {name for name in imported
           if name.endswith("_msgs") or name.startswith(("rcl", "launch")) or name == "rclpy"}
    assert {"rclpy", "sensor_msgs", "diagnostic_msgs", "rosgraph_msgs", "launch_ros"} <= ros  # the scan works
    package = ElementTree.parse(ROOT / "package.xml").getroot()
    depends = {element.text for element in package.findall("exec_depend")}
    assert ros <= depends, f"imported but not in package.xml: {sorted(ros - depends)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("egnet_ros-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.integration
def test_the_wheel_installs_the_ament_index_marker_launch_and_config_under_share(wheel):
    names = wheel.namelist()
    data = [name.split(".data/data/", 1)[1] for name in names if ".data/data/" in name]
    assert "share/ament_index/resource_index/packages/egnet_ros" in data
    assert "share/egnet_ros/package.xml" in data
    assert "share/egnet_ros/launch/segment.launch.py" in data
    assert "share/egnet_ros/config/segment.yaml" in data
    assert any(name.startswith("egnet_core/") for name in names)
    assert any(name.startswith("egnet_ros/") for name in names)
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in ("egnet =", "segment_node =", "egnet-segment ="):
        assert script in entry_points
    assert "[egnet.commands]\nbag = egnet_ros.cli:register [ros]" in entry_points


def test_the_model_exports_with_static_control_flow_and_dynamic_sizes():
    model = tiny_model()
    batch = torch.export.Dim("batch", min=1, max=8)
    height, width = torch.export.Dim("height", min=64, max=2048), torch.export.Dim("width", min=64, max=2048)
    exported = torch.export.export(model, (torch.rand(2, 3, 64, 96),),
                                   dynamic_shapes={"images": {0: batch, 2: height, 3: width}})
    other = torch.rand(1, 3, 96, 64)  # another batch and size: no shape was baked into the graph
    with torch.no_grad():
        expected, got = model(other), exported.module()(other)
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got.exposure, expected.exposure)
