"""A detector model giving a NaN (or infinite) box for one plate no longer costs the frame's other
plates, nor the run: the bad detection is dropped, logged once and counted.

A NaN box passed NMS and the tracker (its IoU with anything is 0), and when its track was voted
into a read the read event refused the NaN box: the edge node's worker raised and the run ended with
a traceback, every other vehicle's read of that batch lost with it. The models here are tiny
CenterNet-shaped nets written as ONNX protobuf by hand (no onnx package, no torch): a bright cell
(255) gives a plate with finite regression maps, a grey one (100) a plate whose maps are the square
root of a negative number (NaN), as an overflowing or badly exported model gives.

Also here: the refusal of a model whose outputs disagree with its input names the batch the model
has (its fixed N, or N for any), not always the shipped model's 1.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from edge.vision.base import PlateTexts
from edge.vision.detector import OnnxPlateDetector
from test_detector_fixed_batch import pooled_heat_nodes
from test_ocr_fixed_batch import _len, _node, _tensor, _value_info, model_bytes

W, H, S = 64, 32, 8

# The bad box is dropped quietly: numpy's RuntimeWarnings before the tracker drops it were noise in
# users' logs (edge/node/pipeline.py: the framings' scaling and the plate widths).
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def nan_detector(path, batch="batch", bad_value=float("nan"), meta_over=None):
    """image (B, 32, 64, 3) -> 8x8 average pool -> heat = sigmoid(0.02 * sum(rgb) - 3);
    reg = sqrt(1e-4 * (mean(rgb) - 150)): finite on bright cells, NaN on grey ones. bad_value: what a
    grey cell's first regression channel becomes (NaN, or +inf by dividing by zero)."""
    w_heat = np.full((1, 3, 1, 1), 0.02, np.float32)
    b_heat = np.array([-3.0], np.float32)
    w_reg = np.full((12, 3, 1, 1), 1e-4 / 3, np.float32)
    b_reg = np.full(12, -150e-4, np.float32)
    nodes = pooled_heat_nodes() + _len(1, _node("Conv", ["pooled", "wr", "br"], ["lin"]))
    if np.isnan(bad_value):
        nodes += _len(1, _node("Sqrt", ["lin"], ["reg"]))
    else:  # inf: 1e-3 / relu(lin): +inf where lin <= 0
        nodes += (_len(1, _node("Relu", ["lin"], ["pos"])) + _len(1, _node("Div", ["one", "pos"], ["inv"]))
                  + _len(1, _node("Mul", ["inv", "tiny"], ["reg"])))
    ob = batch
    graph = (
        nodes + _len(2, "nandet")
        + _len(5, _tensor("wh", w_heat, 1)) + _len(5, _tensor("bh", b_heat, 1))
        + _len(5, _tensor("wr", w_reg, 1)) + _len(5, _tensor("br", b_reg, 1))
        + _len(5, _tensor("one", np.ones(1, np.float32), 1)) + _len(5, _tensor("tiny", np.full(1, 1e-3, np.float32), 1))
        + _len(11, _value_info("image", 2, [batch, H, W, 3]))
        + _len(12, _value_info("heat", 1, [ob, 1, H // S, W // S]))
        + _len(12, _value_info("reg", 1, [ob, 12, H // S, W // S]))
    )
    meta = {"input_width": str(W), "input_height": str(H), "stride": str(S), "threshold": "0.5", **(meta_over or {})}
    path.write_bytes(model_bytes(graph, meta))
    return path


class ReadsAll:
    """An OCR stage that reads every crop as ABC123, surely."""

    def predict(self, crops):
        n = len(crops)
        return PlateTexts(["ABC123"] * n, np.full(n, 0.95, np.float32), [np.full(6, 0.99, np.float32)] * n)


def _frame(scale=1):
    """A plate-like bright cell at grid (1, 1) and a grey one at (2, 6), `scale` times the input size."""
    f = np.zeros((H, W, 3), np.uint8)
    f[8:16, 8:16] = 255
    f[16:24, 48:56] = 100
    return cv2.resize(f, (W * scale, H * scale), interpolation=cv2.INTER_NEAREST)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_box_is_dropped_and_the_other_kept(tmp_path, caplog, bad):
    det = OnnxPlateDetector(nan_detector(tmp_path / "nan.onnx", bad_value=bad))
    with caplog.at_level(logging.WARNING, logger="edge.vision.detector"):
        out = det.predict([_frame(), _frame()])
    assert [len(d) for d in out] == [1, 1]  # the bright plate of each frame, not the grey one
    for d in out:
        assert np.isfinite(d.boxes).all() and np.isfinite(d.corners).all() and np.isfinite(d.scores).all()
        cx = (d.boxes[0, 0] + d.boxes[0, 2]) / 2
        assert 8 < cx < 24  # the bright cell's plate
    assert det.non_finite_boxes == 2
    warned = [r for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(warned) == 1 and "nan.onnx" in warned[0].getMessage()  # once, naming the model


def test_the_edge_node_reads_the_finite_plate_of_the_frame(tmp_path):
    from edge.node.config import build_config
    from edge.node.pipeline import EdgeNode, MemorySink
    from edge.sources.folder import FolderSource

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "car.png"), _frame(scale=4))  # the plate 50 px wide, 25 px tall
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=str(frames), output_dir=str(tmp_path / "out"),
                       save_crops=False)
    det = OnnxPlateDetector(nan_detector(tmp_path / "nan.onnx"))
    sink = MemorySink()
    m = EdgeNode(cfg, FolderSource(frames), det, ReadsAll(), sink).run()  # raised on the NaN box's read
    assert [e.plate for e in sink.events] == ["ABC123"] and m.reads == 1
    assert det.non_finite_boxes == 1


def test_non_finite_corners_alone_fall_back_to_the_box(tmp_path):
    det = OnnxPlateDetector(nan_detector(tmp_path / "nan.onnx"))
    heat = np.zeros((H // S, W // S), np.float32)
    heat[1, 1] = 0.9
    reg = np.zeros((12, H // S, W // S), np.float32)
    reg[4:, 1, 1] = np.nan  # box finite, corners not
    from edge.vision.detector import Letterbox

    d = det._decode(heat, reg, Letterbox(1.0, W, H), np.zeros((H, W, 3), np.uint8))
    assert len(d) == 1 and det.non_finite_boxes == 0
    b = d.boxes[0]
    np.testing.assert_allclose(d.corners[0], [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]])


@pytest.mark.parametrize("batch, said", [(3, "(3, 1, 2, 4)"), ("batch", "(N, 1, 2, 4)")])
def test_mismatched_outputs_name_the_models_own_batch(tmp_path, batch, said):
    # metadata stride 16 where the graph's maps are 1/8 of the input: refused at load
    path = nan_detector(tmp_path / "odd.onnx", batch=batch, meta_over={"stride": "16"})
    with pytest.raises(ValueError) as err:
        OnnxPlateDetector(path)
    msg = str(err.value)
    assert said in msg and "(1, 1," not in msg and "odd.onnx" in msg


def test_bench_detect_counts_the_dropped_boxes(tmp_path, capsys):
    import json

    from edge import cli

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "car.png"), _frame(scale=4))
    (frames / "labels.csv").write_text("file,x,y,w,h,plate\ncar.png,36,44,56,28,ABC123\n")
    model = nan_detector(tmp_path / "nan.onnx")
    assert cli.main(["bench", "detect", str(frames), "--model", str(model), "--plate-check-chars", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["non_finite_boxes"] == 1 and res["n"] == 1  # the grey plate of the one frame, counted once


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_plug_in_detectors_non_finite_box_is_left_out_of_tracking(tmp_path, caplog, bad):
    """A Python detector (not ONNX) giving a NaN box beside a good one: the tracker leaves it out,
    and the good plate is read (the node raised on the NaN box's read and stopped)."""
    from edge.node.config import build_config
    from edge.node.pipeline import EdgeNode, MemorySink
    from edge.sources.folder import FolderSource
    from edge.vision.base import Detections

    class TwoBoxes:
        def predict(self, frames):
            boxes = np.array([[bad, 10, bad, 40], [170, 100, 290, 160]], np.float32)
            return [Detections(boxes, np.array([0.9, 0.9], np.float32), None) for _ in frames]

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "car.png"), np.full((200, 400, 3), 114, np.uint8))
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=str(frames), output_dir=str(tmp_path / "out"),
                       save_crops=False)
    sink = MemorySink()
    node = EdgeNode(cfg, FolderSource(frames), TwoBoxes(), ReadsAll(), sink)
    with caplog.at_level(logging.WARNING, logger="edge.vision.tracker"):
        m = node.run()
    assert [e.plate for e in sink.events] == ["ABC123"] and m.reads == 1
    assert node.tracker.non_finite_boxes == 1
    assert sum("NaN or infinite" in r.getMessage() for r in caplog.records) == 1
    # ... and the node says so in its metrics, status and summary
    assert node.stage_counters() == {"active_tracks": 0, "non_finite_boxes": 1, "non_finite_reads": 0}


def test_crop_plates_gives_a_non_finite_box_a_black_crop_without_warnings():
    import warnings

    from edge.vision.base import Detections
    from edge.vision.rectify import crop_plates

    frame = np.full((100, 200, 3), 200, np.uint8)
    dets = Detections(np.array([[np.nan, 1, 50, 20], [10, 10, 90, 50]], np.float32), np.ones(2, np.float32), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crops = crop_plates(frame, dets, (64, 32))
    assert crops.shape == (2, 32, 64, 3) and crops[0].max() == 0 and crops[1].min() == 200
