"""vision=labels on a source without ground truth says so, instead of reading nothing in silence."""

import logging
from datetime import datetime, timezone

import numpy as np

from edge.node.label_vision import LabelDetector
from edge.sources.base import Frame, PlateLabel


def _frame(k, labels):
    return Frame(k, np.zeros((90, 160, 3), np.uint8), k / 25, datetime.now(timezone.utc), labels=labels)


def test_labels_vision_on_a_source_without_ground_truth_warns_once(caplog):
    caplog.set_level(logging.WARNING, logger="edge.node.label_vision")
    det = LabelDetector()
    out = det.predict_frames([_frame(k, None) for k in range(5)])
    assert all(len(d) == 0 for d in out) and det.unlabelled == 5
    warned = [r.getMessage() for r in caplog.records if "no ground truth" in r.getMessage()]
    assert len(warned) == 1 and "frame 0" in warned[0] and "--vision onnx" in warned[0]


def test_labelled_frames_even_empty_ones_are_not_warned_about(caplog):
    caplog.set_level(logging.WARNING, logger="edge.node.label_vision")
    det = LabelDetector()
    out = det.predict_frames([_frame(0, []), _frame(1, [PlateLabel("ABC1234", (10, 10, 50, 30), 0)])])
    assert [len(d) for d in out] == [0, 1] and list(det.pending) == ["ABC1234"]
    assert det.unlabelled == 0 and "no ground truth" not in caplog.text
