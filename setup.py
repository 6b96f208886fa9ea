"""ament_python package `ood_perception`: pip-installable and colcon-buildable from one file."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ood_perception"

# Runtime Python dependencies. package.xml names the same set as rosdep keys
# (test/test_package.py checks that the two lists agree).
INSTALL_REQUIRES = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "pyyaml>=6.0",
    "tqdm>=4.66",
    "onnx>=1.16",
    "onnxruntime>=1.18",
    "onnxscript>=0.3",
    "torch>=2.5",
    "rosbags>=0.10",
    "matplotlib>=3.8",
    "pillow>=10.0",
]

EXTRAS_REQUIRE = {
    # ROS 2 Jazzy from PyPI wheels, for machines without a ROS distribution.
    "ros": [
        "ros-jazzy-rclpy[fastrtps]",
        "ros-jazzy-sensor-msgs",
        "ros-jazzy-std-msgs",
        "ros-jazzy-diagnostic-msgs",
    ],
    "test": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "transformers>=4.47",
        "scikit-learn>=1.4",
        "ruff>=0.6",
        # What mmsegmentation 1.2.2 / mmcv-lite 2.1.0 / mmengine 0.10.7 (the DOoD segmentors'
        # reference) import. Those three come from the Makefile with --no-deps: they require
        # opencv-python, whose cv2 would replace opencv-python-headless's.
        "addict>=2.4",
        "yapf>=0.40",
        "termcolor>=2.0",
        "prettytable>=3.0",
        "ftfy>=6.0",
    ],
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")
         + glob("config/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    zip_safe=True,
    maintainer="ood_perception maintainers",
    maintainer_email="ood-perception@example.com",
    description="Real-time out-of-distribution obstacle segmentation for ROS 2 camera pipelines.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "ood_perception_node = ood_perception.ros.node:main",
            "ood-perception = ood_perception.cli.main:main",
        ],
    },
)
