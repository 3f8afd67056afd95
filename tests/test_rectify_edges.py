"""crop_plates on boxes a detector (or a user's model) can give: past the frame's edge, beyond it, huge."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.vision.base import Detections
from edge.vision.rectify import crop_plates


def _dets(*boxes) -> Detections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(b, np.ones(len(b), np.float32), None)


@pytest.fixture
def frame():
    f = np.zeros((480, 640, 3), np.uint8)
    f[:, :320] = 200  # left half bright, right half dark
    return f


@pytest.mark.parametrize("box", [
    [1000, 500, 1600, 800],    # large plate wholly right of / below the frame (blur path)
    [700, 100, 1300, 400],     # wholly right of the frame
    [100, 600, 700, 900],      # wholly below the frame
])
def test_large_box_beyond_the_frame_is_cropped_not_an_error(frame, box):
    crops = crop_plates(frame, _dets(box), (128, 64))
    assert crops.shape == (1, 64, 128, 3)


def test_huge_box_is_quick(frame):
    t0 = time.perf_counter()
    crops = crop_plates(frame, _dets([0, 0, 2e5, 1e5]), (128, 64))
    assert crops.shape == (1, 64, 128, 3)
    assert time.perf_counter() - t0 < 2.0


def test_plates_inside_the_frame_crop_as_before(frame):
    # a large plate inside the frame still takes the blurred path; its left part bright, right dark
    crops = crop_plates(frame, _dets([100, 100, 540, 320]), (128, 64))
    assert crops[0, :, :30].mean() > 150 and crops[0, :, -30:].mean() < 50


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 640, 3), (480, 0, 3)])
def test_empty_frame_is_refused_by_name_not_a_division_by_zero(shape):
    from edge.vision.detector import letterbox

    with pytest.raises(ValueError, match="non-empty"):
        letterbox(np.zeros(shape, np.uint8), (768, 448))
