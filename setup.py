"""egnet: one distribution that pip installs and that colcon builds as the ament_python package egnet_ros."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "egnet_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Night-time semantic segmentation with the Exposure-Guided Network (EGNet) for ROS 2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["egnet_core", "egnet_core.*", "egnet_ros", "egnet_ros.*"]),
    # The console scripts load the Fast DDS profile from beside the module; launch uses the share/ copy.
    package_data={PACKAGE: ["fastdds_profile.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + [f"{PACKAGE}/fastdds_profile.xml"]),
    ],
    # torch is deliberately unpinned here: the registry's torchvision links the CUDA build of torch,
    # and a pin that admits only the CPU-only wheel found on some machines leaves torchvision unimportable.
    install_requires=[
        "torch",
        "torchvision",
        "numpy",
        "opencv-python-headless",
        "pillow",  # palette label maps: OpenCV expands a palette into colours
        "pyyaml",
        "cityscapesscripts",
        "matplotlib",
        "tqdm",
        "tensorboard",
    ],
    extras_require={
        # For machines without a ROS 2 distro: rclpy and the messages from the registry's ros-* wheels.
        # Users with a sourced distro skip this extra and keep their own.
        "ros": [
            "rosbags",
            "backports.zstd; python_version < '3.14'",  # zstd-compressed bags (the standard library's from 3.14)
            "ros-rclpy",
            "ros-sensor-msgs",
            "ros-std-msgs",
            "ros-diagnostic-msgs",
            "ros-rmw-fastrtps-cpp",
        ],
        # `egnet export` and .onnx models in the node, the bag tool and the evaluator (ONNX Runtime on the CPU;
        # install onnxruntime-gpu instead for CUDA).
        "onnx": [
            "onnx",
            "onnxscript",
            "onnxruntime",
        ],
        # `egnet export --int8` to a .pt2 file and running one: PyTorch's PT2E quantization with the x86 Inductor
        # quantizer (oneDNN int8 with AMX or VNNI).
        "int8": [
            "torchao",
        ],
        # Tests, the linter, and colcon for the test that builds the package as ROS users do.
        "dev": [
            "pytest",
            "scikit-learn",
            "ruff",
            "colcon-core",
            "colcon-ros",
            "colcon-python-setup-py",
            "colcon-package-selection",
        ],
    },
    entry_points={
        "console_scripts": [
            "egnet = egnet_core.cli:main",
            # One main under two names: `ros2 run egnet_ros segment_node` on a ROS 2 distro, egnet-segment on PATH.
            # egnet_ros.segment_main handles SIGINT and SIGTERM before it imports the node (torch, rclpy).
            "segment_node = egnet_ros.segment_main:main",
            "egnet-segment = egnet_ros.segment_main:main",
        ],
        # The ROS side plugs into `egnet` (see egnet_core/cli.py and demo.py); the library never imports it.
        "egnet.commands": ["bag = egnet_ros.cli:register [ros]"],
        "egnet.demo_steps": ["night_drive = egnet_ros.demo_drive:night_drive [ros]"],
    },
    zip_safe=True,
)
