"""An OCR model giving NaN (or infinite) scores for a crop no longer costs the whole vehicle pass.

Its NaN confidence entered the track's vote, every sum of which became NaN: the pass was voted
"NaN sure", which no publishing threshold passes, and its read was lost without a word. Now the
recognizer reads such a crop as nothing (logged once, counted), and the vote leaves out any reading
whose confidence is not a number (a plug-in OCR's too). The model here is a tiny recognizer written
as ONNX protobuf by hand: rows / rows, so a flat crop (all zeros after standardization) gives 0/0.
"""

from __future__ import annotations

import logging

import numpy as np

from edge.vision.ocr import OnnxPlateOCR
from edge.vision.vote import Reading, vote
from test_ocr_fixed_batch import ALPHABET, C, H, T, W, _len, _node, _tensor, _value_info, model_bytes


def nan_recognizer(path):
    weights = np.random.default_rng(0).normal(size=(H, C)).astype(np.float32)
    graph = (
        _len(1, _node("Reshape", ["image", "shape"], ["rows"]))
        + _len(1, _node("Div", ["rows", "rows"], ["ones"]))  # NaN where a pixel is 0
        + _len(1, _node("Mul", ["ones", "rows"], ["same"]))
        + _len(1, _node("MatMul", ["same", "w"], ["logits"]))
        + _len(2, "nanocr")
        + _len(5, _tensor("shape", np.array([0, T, -1], np.int64), 7))
        + _len(5, _tensor("w", weights, 1))
        + _len(11, _value_info("image", 1, ["batch", 1, H, W]))
        + _len(12, _value_info("logits", 1, ["batch", T, C]))
    )
    meta = {"alphabet": ALPHABET, "input_height": str(H), "input_width": str(W), "version": "nan"}
    path.write_bytes(model_bytes(graph, meta, producer="alpr-edge-test"))
    return path


def test_a_crop_with_non_finite_scores_reads_as_nothing(tmp_path, caplog):
    ocr = OnnxPlateOCR(nan_recognizer(tmp_path / "nan.onnx"))
    rng = np.random.default_rng(3)
    flat = np.full((24, 60, 3), 128, np.uint8)
    noisy = [rng.integers(0, 256, (24, 60, 3), np.uint8) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="edge.vision.ocr"):
        got = ocr.predict([flat, noisy[0], flat, noisy[1]])
        alone = ocr.predict(noisy)  # what the textured crops read without the flat ones beside them
    assert got.texts[0] == got.texts[2] == "" and got.confidence[0] == got.confidence[2] == 0.0
    assert [got.texts[1], got.texts[3]] == alone.texts
    assert np.isfinite(got.confidence).all() and all(np.isfinite(c).all() for c in got.char_confidence)
    assert ocr.non_finite_reads == 2
    warned = [r for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(warned) == 1 and "nan.onnx" in warned[0].getMessage()


def test_the_vote_leaves_out_a_reading_without_a_usable_confidence():
    good = [Reading("ABC123", 0.9, np.full(6, 0.98, np.float32)) for _ in range(4)]
    nan = Reading("ABC123", float("nan"), np.full(6, np.nan, np.float32))
    half = Reading("XBC123", 0.9, np.array([np.nan, 1, 1, 1, 1, 1], np.float32))
    inf = Reading("ABC123", float("inf"), np.full(6, 0.9, np.float32))
    v = vote(good + [nan, half, inf])
    assert v.plate == "ABC123" and np.isfinite(v.confidence) and v.confidence > 0.9
    assert v.readings == 4 and vote([nan]) is None
