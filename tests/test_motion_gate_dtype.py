"""The motion gate with frames whose dtype, channels or shape change between frames.

A uint16 frame after uint8 ones raised OpenCV's 'input arrays ... have different types' (absdiff of
a uint8 reference and a uint16 thumbnail), stopping the node. Every numeric dtype is now compared as
8-bit grey, and a change of shape or dtype is processed and becomes the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.vision.motion import MotionGate


def _scene(value=60, car=None):
    img = np.full((120, 160, 3), value, np.uint8)
    if car is not None:
        img[40:80, car:car + 40] = 230
    return img


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64, np.int16, np.int32, np.bool_, np.float16])
def test_a_dtype_change_is_processed_not_an_error(dtype):
    g = MotionGate()
    assert g(_scene()) is True
    assert g(_scene()) is False
    other = _scene().astype(dtype)
    assert g(other) is True  # a new format: processed, and the new reference
    assert g(other.copy()) is False  # the same picture again: static
    assert g(_scene()) is True  # back to uint8: a change again, no error
    assert g(_scene()) is False


def test_uint16_motion_means_the_same_grey_levels():
    g = MotionGate()
    still = _scene().astype(np.uint16) * 257  # the same picture in 16 bits
    assert g(still) is True and g(still) is False
    moved = _scene(car=20).astype(np.uint16) * 257
    assert g(moved) is True
    # a change smaller than pixel_delta grey levels (10 x 257 in 16 bits) is not motion
    assert g(moved + 10 * 257) is False


def test_float_frames_in_unit_range_and_in_grey_levels():
    g = MotionGate()
    f = _scene().astype(np.float32) / 255.0
    assert g(f) is True and g(f) is False
    assert g(_scene(car=20).astype(np.float32) / 255.0) is True
    nan = np.full((120, 160, 3), np.nan, np.float32)
    assert g(nan) is True  # no NaN warning or error: compared as black


@pytest.mark.parametrize("shape", [(120, 160), (120, 160, 1), (120, 160, 4), (120, 160, 2), (240, 320, 3)])
def test_channel_count_and_size_changes(shape):
    g = MotionGate()
    assert g(_scene()) is True and g(_scene()) is False
    frame = np.full(shape, 60, np.uint8)
    assert g(frame) is True
    assert g(frame.copy()) is False


@pytest.mark.parametrize("frame", [np.zeros((0, 160, 3), np.uint8), np.zeros((5,), np.uint8),
                                   np.zeros((4, 4, 3), object)])
def test_frames_it_cannot_compare_are_passed_on(frame):
    g = MotionGate()
    assert g(_scene()) is True
    assert g(frame) is True  # the next stage names what is wrong with it
    assert g(_scene()) is True  # and the gate starts afresh
