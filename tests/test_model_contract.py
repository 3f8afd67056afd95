"""A user's own ONNX model whose graph disagrees with its metadata is refused when loaded, with an
error naming the file and what disagrees (it used to load, then fail on the first plate or frame with
an onnxruntime or decoding error naming neither), and bad metadata values are named too.

The models are the shipped ones with metadata entries appended to the protobuf (a repeated field:
the last entry of a key wins), so no `onnx` package is needed."""

from __future__ import annotations

import numpy as np
import pytest

from edge.vision.detector import DEFAULT_MODEL as DETECTOR
from edge.vision.detector import OnnxPlateDetector
from edge.vision.ocr import DEFAULT_MODEL as OCR
from edge.vision.ocr import OnnxPlateOCR, preprocess
from test_ocr_fixed_batch import _len


def with_metadata(src, dst, **entries):
    """A copy of the ONNX model `src` at `dst` with metadata_props (ModelProto field 14) entries added."""
    data = src.read_bytes()
    for k, v in entries.items():
        data += _len(14, _len(1, k) + _len(2, v))
    dst.write_bytes(data)
    return dst


def test_the_rewriting_changes_metadata_only(tmp_path):
    ocr = OnnxPlateOCR(with_metadata(OCR, tmp_path / "v.onnx", version="mine"))
    assert ocr.version == "mine" and (ocr.height, ocr.width) == (48, 144)
    assert OnnxPlateDetector(with_metadata(DETECTOR, tmp_path / "d.onnx", note="x")).input_size == (768, 448)


@pytest.mark.parametrize("entries, words", [
    ({"input_height": "32"}, ["input 'image'", "(N, 1, 32, 144)"]),  # the graph takes 48 rows
    ({"input_width": "160"}, ["input 'image'", "(N, 1, 48, 160)"]),
    ({"alphabet": "0123456789"}, ["'logits'", "(N, T, 11)"]),       # the graph has 37 classes
    ({"input_width": "wide"}, ["'input_width' must be an integer", "'wide'"]),
    ({"states": "ca,nv"}, ["'states' must be a JSON list"]),
])
def test_ocr_model_disagreeing_with_its_metadata_is_refused_at_load(tmp_path, entries, words):
    _assert_refused(OnnxPlateOCR, with_metadata(OCR, tmp_path / "mine.onnx", **entries), words)


@pytest.mark.parametrize("entries, words", [
    ({"input_width": "640"}, ["input 'image'", "(N, 448, 640, 3)"]),  # the graph takes 768 columns
    ({"stride": "16"}, ["heatmap", "stride 16"]),                   # the maps are 1/8 of the input
    ({"stride": "eight"}, ["must be integers", "'eight'"]),
])
def test_detector_model_disagreeing_with_its_metadata_is_refused_at_load(tmp_path, entries, words):
    _assert_refused(OnnxPlateDetector, with_metadata(DETECTOR, tmp_path / "mine.onnx", **entries), words)


def _assert_refused(load, path, words):
    with pytest.raises(ValueError) as err:
        load(path)
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_non_uint8_colour_crop_is_named_not_an_opencv_error():
    with pytest.raises(ValueError, match=r"crops\[1\]: expected uint8 pixels, got float64"):
        preprocess([np.zeros((10, 20, 3), np.uint8), np.zeros((10, 20, 3), np.float64)], 48, 144)
