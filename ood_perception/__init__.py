"""Out-of-distribution obstacle segmentation for camera images, with a ROS 2 node on top."""

__version__ = "0.1.0"
