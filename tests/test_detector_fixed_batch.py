"""A user's detector exported with a fixed batch of N > 1 frames is run N frames a call.

It was refused at load ('the metadata asks for uint8 (1, H, W, 3)') though nothing else about it was
wrong; now the frames go in chunks of N, the last padded with blank canvases whose outputs are
dropped, and every frame gets the detections the same weights give it one at a time. The models
are tiny CenterNet-shaped nets written as ONNX protobuf by hand (no onnx package, no torch):
image uint8 (B, 32, 64, 3) -> float, NCHW -> 8x8 average pool -> 1x1 convolutions -> heat
(sigmoid, B x 1 x 4 x 8) and reg (B x 12 x 4 x 8).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.vision.detector import OnnxPlateDetector
from test_ocr_fixed_batch import _int, _len, _node, _tensor, _value_info, model_bytes

W, H, S = 64, 32, 8


def _attr_int(name, value):
    return _len(1, name) + _int(20, 2) + _int(3, value)


def _attr_ints(name, values):
    return _len(1, name) + _int(20, 7) + b"".join(_int(8, v) for v in values)


def _node_attrs(op, inputs, outputs, attrs):
    return _node(op, inputs, outputs) + b"".join(_len(5, a) for a in attrs)


def pooled_heat_nodes() -> bytes:
    """uint8 NHWC image -> float NCHW -> SxS average pool ("pooled") -> 1x1 conv wh, bh -> sigmoid ("heat")."""
    return (
        _len(1, _node_attrs("Cast", ["image"], ["f"], [_attr_int("to", 1)]))
        + _len(1, _node_attrs("Transpose", ["f"], ["nchw"], [_attr_ints("perm", [0, 3, 1, 2])]))
        + _len(1, _node_attrs("AveragePool", ["nchw"], ["pooled"], [_attr_ints("kernel_shape", [S, S]),
                                                                    _attr_ints("strides", [S, S])]))
        + _len(1, _node("Conv", ["pooled", "wh", "bh"], ["logit"]))
        + _len(1, _node("Sigmoid", ["logit"], ["heat"]))
    )


def tiny_detector(path, batch, seed=0):
    rng = np.random.default_rng(seed)
    w_heat = rng.normal(0, 0.05, (1, 3, 1, 1)).astype(np.float32)
    b_heat = np.array([-4.0], np.float32)
    w_reg = rng.normal(0, 0.01, (12, 3, 1, 1)).astype(np.float32)
    graph = (
        pooled_heat_nodes()
        + _len(1, _node("Conv", ["pooled", "wr"], ["reg"]))
        + _len(2, "tinydet")
        + _len(5, _tensor("wh", w_heat, 1)) + _len(5, _tensor("bh", b_heat, 1)) + _len(5, _tensor("wr", w_reg, 1))
        + _len(11, _value_info("image", 2, [batch, H, W, 3]))
        + _len(12, _value_info("heat", 1, [batch, 1, H // S, W // S]))
        + _len(12, _value_info("reg", 1, [batch, 12, H // S, W // S]))
    )
    meta = {"input_width": str(W), "input_height": str(H), "stride": str(S), "threshold": "0.05"}
    path.write_bytes(model_bytes(graph, meta))
    return path


def _frames(n):
    rng = np.random.default_rng(5)
    frames = []
    for i in range(n):
        f = np.full((64 + 8 * i, 128, 3), 20, np.uint8)
        f[rng.integers(0, 40):, rng.integers(0, 100):][:16, :24] = 255  # a bright block: a heat peak
        frames.append(f)
    return frames


@pytest.mark.parametrize("fixed", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_fixed_batch_detector_gives_each_frame_its_own_detections(tmp_path, fixed, n):
    one_by_one = OnnxPlateDetector(tiny_detector(tmp_path / "dyn.onnx", "batch"))
    batched = OnnxPlateDetector(tiny_detector(tmp_path / f"b{fixed}.onnx", fixed))
    frames = _frames(n)
    want, got = one_by_one.predict(frames), batched.predict(frames)
    assert len(got) == n
    assert sum(len(d) for d in want) > 0  # the test has something to compare
    for a, b in zip(want, got):
        np.testing.assert_allclose(b.boxes, a.boxes, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5)
    assert batched.fixed_batch == fixed and one_by_one.fixed_batch is None


def test_a_batch_of_one_and_the_shipped_model_run_as_before():
    assert OnnxPlateDetector().fixed_batch == 1
