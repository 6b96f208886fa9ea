"""Node tests share one isolated ROS domain per module (see ros_harness.isolated_ros_env)."""

from __future__ import annotations

import os

import pytest
from ros_harness import isolated_ros_env


@pytest.fixture(scope="module")
def ros_env():
    """This process and its children in a domain of their own, discovery on localhost."""
    env = isolated_ros_env()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
