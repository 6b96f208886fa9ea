"""Newest-frame slots: superseded frames are counted, cameras that arrive together batch."""

from __future__ import annotations

import threading
import time

from ood_perception.ros.frame_slots import FrameSlots


def test_only_the_newest_frame_is_taken_and_the_rest_counted():
    superseded = []
    slots = FrameSlots(1, on_superseded=superseded.append)
    for message in ("a", "b", "c"):
        slots.put(0, message)
    taken = slots.take(timeout=0.1)
    assert [frame.message for frame in taken] == ["c"]
    assert superseded == [0, 0]
    assert slots.take(timeout=0.01) == []


def test_cameras_that_arrive_within_batch_wait_share_one_take():
    slots = FrameSlots(2)
    slots.put(0, "front")
    timer = threading.Timer(0.02, lambda: slots.put(1, "rear"))
    timer.start()
    taken = slots.take(timeout=1.0, batch_wait=1.0)
    timer.join()
    assert sorted(frame.message for frame in taken) == ["front", "rear"]
    assert [frame.camera for frame in sorted(taken, key=lambda f: f.camera)] == [0, 1]


def test_batch_wait_is_bounded_when_a_camera_is_silent():
    slots = FrameSlots(2)
    slots.put(1, "rear")
    start = time.monotonic()
    taken = slots.take(timeout=1.0, batch_wait=0.05)
    assert [frame.message for frame in taken] == ["rear"]
    assert time.monotonic() - start < 0.5


def test_close_wakes_a_waiting_worker():
    slots = FrameSlots(1)
    result = []
    worker = threading.Thread(target=lambda: result.append(slots.take(timeout=10.0)))
    worker.start()
    time.sleep(0.05)
    slots.close()
    worker.join(timeout=2.0)
    assert not worker.is_alive() and result == [[]]


def test_close_hands_back_the_waiting_frames_and_refuses_new_ones():
    slots = FrameSlots(2)
    slots.put(1, "rear")
    left = slots.close()
    assert [(frame.camera, frame.message) for frame in left] == [(1, "rear")]
    assert slots.put(0, "front") is False and slots.take(timeout=0.01) == []
