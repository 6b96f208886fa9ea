"""ament_python package `ood_perception`: pip-installable and colcon-buildable from one file."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ood_perception"

# What the node needs at run time (core, backends, ros). package.xml names the same set as
# rosdep keys where rosdistro has one; the rest is the README's pip step
# (test/test_package.py checks both). A runtime is the user's choice and never a package.xml
# key: the `onnxruntime` extra is the CPU build; GPU machines install onnxruntime-gpu
# instead (the two cannot share an environment).
INSTALL_REQUIRES = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "pyyaml>=6.0",
    "onnx>=1.16",
]

EXTRAS_REQUIRE = {
    "onnxruntime": ["onnxruntime>=1.18"],
    "torch": ["torch>=2.5"],
    # The offline tools: export, evaluate, calibrate, replay, training, demo, benchmark.
    "tools": [
        "torch>=2.5",
        "onnxscript>=0.3",
        "onnxruntime>=1.18",
        "rosbags>=0.10",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "pillow>=10.0",
    ],
    # Fleet runs (`--ray`, `mine`): Ray core only (no dashboard, no Ray Data) and pyarrow for
    # the Parquet catalog and object-storage outputs.
    "fleet": ["ray>=2.9", "pyarrow>=14"],
    # ROS 2 Jazzy from PyPI wheels, for machines without a ROS distribution.
    "ros": [
        "ros-jazzy-rclpy[fastrtps]",
        "ros-jazzy-sensor-msgs",
        "ros-jazzy-std-msgs",
        "ros-jazzy-diagnostic-msgs",
        "ros-jazzy-geometry-msgs",
        "ros-jazzy-visualization-msgs",
        "ros-jazzy-nav-msgs",
        "ros-jazzy-lifecycle-msgs",
        "ros-jazzy-rosgraph-msgs",
    ],
    "test": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "transformers>=4.47",
        "scikit-learn>=1.4",
        "ruff>=0.6",
        # test/test_package.py builds the package as a vehicle would.
        "colcon-core>=0.15",
        "colcon-ros>=0.4",
        # S2M fidelity reference: segment-anything's modeling code needs only torch.
        "segment-anything==1.0",
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
            "ood_perception_lifecycle_node = ood_perception.ros.lifecycle_node:main",
            "ood-perception = ood_perception.cli.main:main",
        ],
    },
)
