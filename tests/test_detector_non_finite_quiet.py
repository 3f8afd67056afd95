"""A detector model's NaN, infinite or overflowing outputs: the boxes they give are dropped and
counted by OnnxPlateDetector without numpy RuntimeWarnings on the way (decoding raised "overflow
encountered in cast" and "invalid value encountered in add" for each such frame, noise in users'
logs), and a box finite in network pixels that overflows float32 in frame pixels (a 1080p frame is
2.5x the network input) is dropped and counted too: it left the detector as an infinite box."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edge.vision.detector import Letterbox, OnnxPlateDetector, decode
from test_detector_non_finite import nan_detector

H, W, S = 4, 8, 8


def _maps(fault):
    heat = np.zeros((H, W), np.float32)
    heat[1, 1], heat[2, 5] = 0.9, 0.8  # two plates; the first one's outputs are faulty
    reg = np.zeros((12, H, W), np.float32)
    {"nan": lambda: reg[:, 1, 1].fill(np.nan),
     "inf-corners": lambda: (reg[0].__setitem__((1, 1), np.inf), reg[4].__setitem__((1, 1), -np.inf)),
     "overflow": lambda: reg[0].__setitem__((1, 1), 3e38),
     "huge-corner": lambda: reg[5].__setitem__((1, 1), 3e38),
     "inf-score": lambda: heat.__setitem__((1, 1), np.inf)}[fault]()
    return heat, reg


@pytest.mark.parametrize("fault", ["nan", "inf-corners", "overflow", "huge-corner", "inf-score"])
@pytest.mark.parametrize("scale", [0.4, 1.0, 2.5])
def test_faulty_outputs_decode_without_runtime_warnings(tmp_path, fault, scale):
    det = OnnxPlateDetector(nan_detector(tmp_path / "m.onnx"))
    heat, reg = _maps(fault)
    frame = np.zeros((int(H * S / scale), int(W * S / scale), 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode(heat, reg, S, 0.5)
        d = det._decode(heat, reg, Letterbox(scale, W * S, H * S), frame)
    assert np.isfinite(d.boxes).all() and np.isfinite(d.corners).all() and np.isfinite(d.scores).all()
    good = d.boxes[:, 0] > 30 / scale  # the second plate, at cell (2, 5)
    assert good.sum() == 1
    if fault == "huge-corner":  # the box is fine: kept, its corners from the box
        assert len(d) == 2 and det.non_finite_boxes == 0
    else:
        assert len(d) == 1 and det.non_finite_boxes == 1


def test_a_box_finite_in_the_network_but_not_in_the_frame_is_dropped_and_counted(tmp_path):
    det = OnnxPlateDetector(nan_detector(tmp_path / "m.onnx"))
    heat, reg = _maps("overflow")
    reg[0, 1, 1] = 3e37  # centre 2.4e38 network pixels: finite in float32; / 0.4 is not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = det._decode(heat, reg, Letterbox(0.4, W * S, H * S), np.zeros((80, 160, 3), np.uint8))
    assert len(d) == 1 and np.isfinite(d.boxes).all() and det.non_finite_boxes == 1


def test_a_box_too_far_out_for_float32_arithmetic_is_dropped_with_the_non_finite(tmp_path):
    """1e37 px is finite, but the tracker's areas and the node's sums of such coordinates are not."""
    det = OnnxPlateDetector(nan_detector(tmp_path / "m.onnx"))
    heat, reg = _maps("overflow")
    reg[0, 1, 1] = 1e36  # centre 8e36 network pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = det._decode(heat, reg, Letterbox(1.0, W * S, H * S), np.zeros((32, 64, 3), np.uint8))
    assert len(d) == 1 and det.non_finite_boxes == 1 and np.abs(d.boxes).max() < 100


@pytest.mark.parametrize("far", [1e20, 3e38, -3e38])
def test_a_plug_in_box_beyond_float32_arithmetic_is_left_out_quietly(far):
    """A plug-in detector's box 1e20 px out is finite, but the tracker's distances (squares) and the
    rectifier's centre (a sum) of such coordinates overflowed float32 with RuntimeWarnings; both now
    treat it as they treat a NaN box: a black crop, left out of tracking and counted."""
    from edge.vision.base import Detections
    from edge.vision.rectify import crop_plates
    from edge.vision.tracker import IouTracker, Observation
    from edge.vision.vote import Reading

    frame = np.full((100, 200, 3), 200, np.uint8)
    boxes = np.array([[far, 10, far, 40], [10, 10, 90, 50]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crops = crop_plates(frame, Detections(boxes, np.ones(2, np.float32), None), (64, 32))
        tracker = IouTracker()
        reading = Reading("ABC123", 0.9, np.full(6, 0.98, np.float32))
        for i, t in enumerate((0.0, 0.1)):
            tracker.update(t, [Observation(frame_index=i, timestamp=t, box=b, score=0.9, reading=reading) for b in boxes])
    assert crops[0].max() == 0 and crops[1].min() == 200
    assert tracker.non_finite_boxes == 2 and len(tracker) == 1
