"""A user's OCR model exported with a fixed batch dimension (1, or any N) is read in chunks of that size.

It used to be fed up to max_batch (64) crops per call and failed on the first frame with two
plates ('Got invalid dimensions for input'). The models here are tiny recognizers written as ONNX
protobuf by hand (image (B, 1, 8, 16) -> Reshape (B, 16, 8) -> MatMul (8, 4) -> logits (B, 16, 4)),
so neither torch nor the `onnx` package is needed.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge.vision.ocr import OnnxPlateOCR, load_ocr

H, W, T, C = 8, 16, 16, 4
ALPHABET = "ABC"  # C - 1 characters and the blank


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _len(field: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _value_info(name: str, elem: int, dims) -> bytes:
    shape = b"".join(_len(1, _int(1, d) if isinstance(d, int) else _len(2, d)) for d in dims)
    return _len(1, name) + _len(2, _len(1, _int(1, elem) + _len(2, shape)))


def _tensor(name: str, array: np.ndarray, elem: int) -> bytes:
    return b"".join(_int(1, d) for d in array.shape) + _int(2, elem) + _len(8, name) + _len(9, array.tobytes())


def _node(op: str, inputs, outputs) -> bytes:
    return b"".join(_len(1, i) for i in inputs) + b"".join(_len(2, o) for o in outputs) + _len(4, op)


def model_bytes(graph: bytes, meta: dict[str, str], producer: str | None = None) -> bytes:
    """ModelProto: IR version 8, the graph, opset 13, metadata_props (every test model here)."""
    return (_int(1, 8) + (_len(2, producer) if producer else b"") + _len(7, graph) + _len(8, _len(1, "") + _int(2, 13))
            + b"".join(_len(14, _len(1, k) + _len(2, v)) for k, v in meta.items()))


def tiny_recognizer(path, batch, seed=0):
    """An alpr-edge recognizer of input (batch, 1, 8, 16): batch an int (fixed) or a name (dynamic)."""
    weights = np.random.default_rng(seed).normal(size=(H, C)).astype(np.float32)
    graph = (
        _len(1, _node("Reshape", ["image", "shape"], ["rows"]))
        + _len(1, _node("MatMul", ["rows", "w"], ["logits"]))
        + _len(2, "tiny")
        + _len(5, _tensor("shape", np.array([0, T, -1], np.int64), 7))
        + _len(5, _tensor("w", weights, 1))
        + _len(11, _value_info("image", 1, [batch, 1, H, W]))
        + _len(12, _value_info("logits", 1, [batch, T, C]))
    )
    meta = {"alphabet": ALPHABET, "input_height": str(H), "input_width": str(W), "version": f"tiny-{batch}"}
    path.write_bytes(model_bytes(graph, meta, producer="alpr-edge-test"))
    return path


def _crops(n, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (24 + i % 3, 60 + 7 * i, 3), np.uint8) for i in range(n)]


@pytest.fixture()
def reference(tmp_path):
    """The same weights with a dynamic batch: what each crop should read."""
    return OnnxPlateOCR(tiny_recognizer(tmp_path / "dynamic.onnx", "batch"))


@pytest.mark.parametrize("fixed", [1, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_fixed_batch_model_reads_any_number_of_crops(tmp_path, reference, fixed, n):
    ocr = OnnxPlateOCR(tiny_recognizer(tmp_path / f"fixed{fixed}.onnx", fixed))
    crops = _crops(n)
    got, want = ocr.predict(crops), reference.predict(crops)
    assert got.texts == want.texts and len(got.texts) == n
    np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-5)
    assert len(got.char_confidence) == n
    assert ocr.fixed_batch == fixed and reference.fixed_batch is None


def test_fixed_batch_under_max_batch_and_in_an_ensemble(tmp_path, reference):
    one = tiny_recognizer(tmp_path / "one.onnx", 1)
    ocr = load_ocr([one, one], max_batch=2)  # an ensemble whose members take one crop per call
    crops = _crops(7)
    widths = [50.0] * 7  # all small: the second member reads them too
    got = ocr.predict(crops, plate_widths=widths)
    assert got.texts == reference.predict(crops).texts


def test_shipped_models_keep_a_dynamic_batch():
    assert OnnxPlateOCR().fixed_batch is None
