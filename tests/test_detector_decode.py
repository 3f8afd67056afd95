"""Detector run-time maths on crafted arrays: letterbox, peak decoding, NMS, matching, plate crops."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bench.detect import match_frame
from edge.vision.base import Detections
from edge.vision.detector import box_iou, decode, letterbox, local_peaks, nms
from edge.vision.rectify import crop_plates


def _maps(h=12, w=20):
    return np.zeros((h, w), np.float32), np.zeros((12, h, w), np.float32)


def _put(heat, reg, row, col, score, dx, dy, w_px, stride, corners_rel=None):
    heat[row, col] = score
    reg[0, row, col], reg[1, row, col] = dx, dy
    reg[2, row, col] = np.log(w_px / stride)
    reg[3, row, col] = np.log(w_px / 2 / stride)
    if corners_rel is not None:
        reg[4:12, row, col] = np.asarray(corners_rel, np.float32).reshape(8)


def test_decode_places_box_at_offset_centre_with_2to1_size():
    heat, reg = _maps()
    corners = [[-0.5, -0.2], [0.5, -0.25], [0.5, 0.25], [-0.5, 0.2]]
    _put(heat, reg, 5, 7, 0.9, 0.25, 0.5, 40.0, 8, corners)
    boxes, scores, quads = decode(heat, reg, stride=8, threshold=0.3)
    assert boxes.shape == (1, 4) and scores.tolist() == pytest.approx([0.9])
    cx, cy = (7 + 0.25) * 8, (5 + 0.5) * 8
    np.testing.assert_allclose(boxes[0], [cx - 20, cy - 10, cx + 20, cy + 10], atol=1e-3)
    np.testing.assert_allclose(quads[0], np.array(corners) * 40 + [cx, cy], atol=1e-3)


def test_decode_forces_2to1_from_disagreeing_width_and_height():
    heat, reg = _maps()
    heat[3, 3] = 0.8
    reg[2, 3, 3] = np.log(64 / 8)  # w 64
    reg[3, 3, 3] = np.log(16 / 8)  # h 16 -> 2h 32; geometric mean of 64 and 32
    boxes, _, _ = decode(heat, reg, 8, 0.3)
    w, h = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
    assert w == pytest.approx(np.sqrt(64 * 32), rel=1e-4)
    assert w == pytest.approx(2 * h, rel=1e-5)


def test_local_peaks_keeps_only_maxima_above_threshold():
    heat, _ = _maps()
    heat[2, 2], heat[2, 3], heat[2, 4] = 0.5, 0.7, 0.6  # one peak at (2, 3)
    heat[8, 15] = 0.2  # below threshold
    heat[9, 0] = 0.4  # isolated peak on the border
    rows, cols = local_peaks(heat, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(2, 3), (9, 0)]


def test_decode_sorts_by_score_and_caps_candidates():
    heat, reg = _maps(30, 30)
    rng = np.random.default_rng(0)
    cells = [(r, c) for r in range(0, 30, 2) for c in range(0, 30, 2)]  # isolated cells: all peaks
    for r, c in cells:
        heat[r, c] = 0.31 + 0.6 * rng.random()
    boxes, scores, _ = decode(heat, reg, 8, 0.3, max_candidates=50)
    assert len(boxes) == 50 and np.all(np.diff(scores) <= 0)
    assert scores[0] == pytest.approx(heat.max())
    with pytest.raises(ValueError, match="reg"):
        decode(heat, reg[:11], 8, 0.3)


def test_nms_suppresses_overlaps_and_keeps_best_first():
    boxes = np.array([[0, 0, 40, 20], [2, 1, 42, 21], [100, 100, 140, 120], [0, 30, 40, 50]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.7], np.float32)
    keep = nms(boxes, scores, 0.3)
    assert keep.tolist() == [1, 3, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.3).tolist() == []


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 0.0, 1.0]], atol=1e-6)


def test_letterbox_maps_back_by_scale():
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[500:540, 900:980] = 255
    canvas, lb = letterbox(frame, (768, 448))
    assert canvas.shape == (448, 768, 3) and lb.scale == pytest.approx(0.4)
    assert (lb.width, lb.height) == (768, 432)
    assert np.all(canvas[432:] == 114)  # padding below the frame
    ys, xs = np.nonzero(canvas[:432, :, 0] > 128)
    assert xs.min() / lb.scale == pytest.approx(900, abs=3) and ys.max() / lb.scale == pytest.approx(540, abs=3)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        letterbox(np.zeros((10, 10), np.uint8), (768, 448))


def test_match_frame_counts_hits_and_false_alarms_at_iou_04():
    labels = np.array([[100, 100, 200, 150], [400, 100, 500, 150]], np.float32)
    preds = np.array(
        [
            [105, 102, 205, 152],  # hit on label 0
            [100, 100, 200, 150],  # duplicate on label 0: not a false alarm
            [430, 100, 530, 150],  # IoU 0.54 with label 1: hit
            [700, 300, 800, 350],  # nothing there: false alarm
        ],
        np.float32,
    )
    m = match_frame(preds, labels)
    assert (m.found, m.false_alarms) == (2, 1) and m.false_alarm_idx.tolist() == [3]
    m = match_frame(preds[:1] + np.array([60, 0, 60, 0], np.float32), labels)  # IoU 0.25: a miss
    assert (m.found, m.false_alarms) == (0, 1) and m.missed_idx.tolist() == [0, 1]
    assert match_frame(np.zeros((0, 4)), labels).found == 0


def test_crop_plates_rectifies_a_tilted_plate_from_corners():
    import cv2

    frame = np.full((300, 400, 3), 40, np.uint8)
    quad = np.array([[120, 100], [280, 130], [270, 200], [110, 170]], np.float32)
    cv2.fillConvexPoly(frame, quad.astype(np.int32), (255, 255, 255))
    box = np.array([[110, 110, 280, 195]], np.float32)
    crops = crop_plates(frame, Detections(box, np.ones(1, np.float32), quad[None]), (160, 80), pad=0.0)
    assert crops.shape == (1, 80, 160, 3)
    inner = crops[0, 8:-8, 8:-8]
    assert inner.mean() > 240  # the warped plate fills the crop: no dark background inside
    # without corners: the axis-aligned box crop shows dark background at its corners
    plain = crop_plates(frame, Detections(box, np.ones(1, np.float32), None), (160, 80), pad=0.0)
    assert plain[0, :6, -6:].mean() < 100
    assert crop_plates(frame, Detections.empty(), (160, 80)).shape == (0, 80, 160, 3)


def test_crop_plates_falls_back_to_box_for_broken_corners():
    frame = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    box = np.array([[50, 50, 150, 100]], np.float32)
    bowtie = np.array([[[50, 50], [150, 100], [150, 50], [50, 100]]], np.float32)  # self-crossing
    a = crop_plates(frame, Detections(box, np.ones(1, np.float32), bowtie), (100, 50), pad=0.0)
    b = crop_plates(frame, Detections(box, np.ones(1, np.float32), None), (100, 50), pad=0.0)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="out_size"):
        crop_plates(frame, Detections(box, np.ones(1, np.float32), None), (0, 50))


def test_match_frame_reports_how_wide_each_found_box_is_against_its_plate():
    labels = np.array([[100, 100, 200, 150], [400, 100, 500, 150], [700, 100, 800, 150]], np.float32)
    preds = np.array(
        [
            [110, 105, 190, 145],  # 80% of label 0's width (the best overlap with it)
            [100, 100, 200, 150],  # exact on label 0: this one is the match, not the narrow one
            [390, 100, 510, 150],  # 120% of label 1
        ],
        np.float32,
    )
    m = match_frame(preds, labels)  # label 2 not found: no ratio for it
    assert m.found == 2 and np.allclose(m.width_ratio, [1.0, 1.2])
    assert np.allclose(match_frame(preds[:1], labels).width_ratio, [0.8])
    assert match_frame(np.zeros((0, 4)), labels).width_ratio.size == 0
