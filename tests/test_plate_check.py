"""The plate check (edge/vision/verify.py): detector proposals kept only where the OCR reads a plate."""

import numpy as np
import pytest

from edge.node.config import build_config
from edge.vision.base import Detections, Detector, PlateOCR, PlateTexts
from edge.vision.verify import PROPOSAL_THRESHOLD, OcrCheckedDetector


class Proposals(Detector):
    """Fixed proposals per frame; the frame's pixel [0, 0, 0] says which list."""

    def __init__(self, per_frame):
        self.per_frame = per_frame
        self.threshold = 0.42

    def predict(self, frames):
        out = []
        for f in frames:
            boxes = np.asarray(self.per_frame[int(f[0, 0, 0])], np.float32).reshape(-1, 4)
            out.append(Detections(boxes, np.linspace(0.7, 0.5, len(boxes)).astype(np.float32), None))
        return out


class TextByWidth(PlateOCR):
    """'Reads' as many characters as the crop's source box was wide / 10 (set through the cropper)."""

    width, height = 40, 20

    def __init__(self):
        self.batches = []

    def predict(self, crops):
        self.batches.append(len(crops))
        texts = ["X" * int(c[0, 0, 0]) for c in crops]
        return PlateTexts(texts, np.ones(len(texts), np.float32), [np.ones(len(t), np.float32) for t in texts])


def width_cropper(frame, dets, size):
    w, h = size
    return [np.full((h, w, 3), int((b[2] - b[0]) // 10), np.uint8) for b in dets.boxes]


def frame(k):
    f = np.zeros((100, 200, 3), np.uint8)
    f[0, 0, 0] = k
    return f


def test_keeps_proposals_the_ocr_reads_enough_characters_in_and_batches_all_frames():
    # frame 0: widths 0, 50, 20, 30 px -> 0, 5, 2, 3 characters; frame 1: none; frame 2: one of 1 char
    boxes = {0: [[0, 0, 0, 20], [0, 0, 50, 20], [0, 0, 20, 20], [0, 0, 30, 20]], 1: [], 2: [[5, 5, 15, 25]]}
    ocr = TextByWidth()
    det = OcrCheckedDetector(Proposals(boxes), ocr, min_chars=3, cropper=width_cropper)
    out = det.predict([frame(0), frame(1), frame(2)])
    assert [len(d) for d in out] == [2, 0, 0]
    np.testing.assert_array_equal(out[0].boxes, np.asarray([[0, 0, 50, 20], [0, 0, 30, 20]], np.float32))
    assert ocr.batches == [5]  # one OCR call for every proposal of the batch
    assert det.threshold == 0.42  # the proposals' threshold


def test_proposals_too_small_to_read_are_kept_unchecked():
    boxes = {0: [[0, 0, 10, 5], [0, 0, 10, 30]]}  # 5 px tall: tracked, not read; 30 px tall: checked
    ocr = TextByWidth()
    out = OcrCheckedDetector(Proposals(boxes), ocr, min_chars=3, min_height=12, cropper=width_cropper).predict([frame(0)])
    np.testing.assert_array_equal(out[0].boxes, np.asarray([[0, 0, 10, 5]], np.float32))
    assert ocr.batches == [1]


def test_min_chars_must_be_positive():
    with pytest.raises(ValueError, match="min_chars"):
        OcrCheckedDetector(Proposals({}), TextByWidth(), min_chars=0)


def test_node_config_turns_the_check_on_by_default_and_names_the_field():
    from edge.node.config import EdgeConfigError

    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="synthetic:highway")
    assert cfg.plate_check_chars == 3 and cfg.detector_threshold is None and PROPOSAL_THRESHOLD == 0.5
    with pytest.raises(EdgeConfigError, match="plate_check_chars"):
        build_config(camera_id="cam-1", agency_id="sac-pd", source="synthetic:highway", plate_check_chars=-1)


def test_node_stages_propose_at_the_check_threshold_unless_the_check_is_off():
    from edge.node.runner import load_stages
    from edge.vision.detector import OnnxPlateDetector

    checked, _ = load_stages(build_config(camera_id="cam-1", agency_id="sac-pd", source="synthetic:highway"))
    assert isinstance(checked, OnnxPlateDetector) and checked.threshold == PROPOSAL_THRESHOLD
    plain, _ = load_stages(build_config(camera_id="cam-1", agency_id="sac-pd", source="synthetic:highway",
                                        plate_check_chars=0))
    assert plain.threshold > PROPOSAL_THRESHOLD  # the model's own


def test_node_drops_unsure_detections_it_reads_too_few_characters_in(tmp_path):
    # the node applies the check to its own readings: proposals of 0.7 and 0.5 read as 0 and 5
    # characters, a sure one (0.8) read as 1: the first is dropped, the others are tracked
    import cv2

    from edge.node.pipeline import EdgeNode, MemorySink
    from edge.sources.folder import FolderSource

    class Fixed(Detector):
        def predict(self, frames):
            boxes = np.asarray([[0, 0, 0, 40], [0, 0, 50, 40], [0, 0, 10, 40]], np.float32)
            return [Detections(boxes, np.asarray([0.7, 0.5, 0.8], np.float32), None) for _ in frames]

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((100, 200, 3), 90 + i, np.uint8))
    seen = []
    for chars in (3, 0):
        cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=str(tmp_path), plate_check_chars=chars,
                           save_crops=False, ocr_variants=1)
        node = EdgeNode(cfg, FolderSource(tmp_path), Fixed(), TextByWidth(), MemorySink(),
                        cropper=width_cropper, on_frame=lambda f, d: seen.append(d.scores.tolist()))
        node.run()
        assert seen[-1] == pytest.approx([0.5, 0.8] if chars else [0.7, 0.5, 0.8])
        assert node.metrics.plates == (4 if chars else 6)
