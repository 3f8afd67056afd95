"""bench detect with the plate check loaded the detector twice (the network alone at its threshold,
the proposals at the check's): twice the load time, and a model giving NaN boxes warned twice. It
is loaded once now, and each stage still counts its own dropped boxes and keeps its own threshold."""

from __future__ import annotations

import json
import logging

import cv2

import edge.vision.detector as detector_module
from edge import cli
from test_detector_non_finite import ReadsAll, _frame, nan_detector


def test_the_plate_check_bench_loads_the_detector_once_and_warns_once(tmp_path, capsys, caplog, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(frames / name), _frame(scale=4))
    (frames / "labels.csv").write_text("file,x,y,w,h,plate\na.png,36,44,56,28,ABC123\nb.png,36,44,56,28,ABC123\n")
    model = nan_detector(tmp_path / "nan.onnx", meta_over={"threshold": "0.6"})
    loads = []
    init = detector_module.OnnxPlateDetector.__init__

    def counted(self, *args, **kwargs):
        loads.append(kwargs.get("threshold"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(detector_module.OnnxPlateDetector, "__init__", counted)
    monkeypatch.setattr("edge.vision.ocr.load_ocr", lambda *a, **k: ReadsAll())
    with caplog.at_level(logging.WARNING, logger="edge.vision.detector"):
        assert cli.main(["bench", "detect", str(frames), "--model", str(model), "--plate-check-chars", "3",
                         "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(loads) == 1
    assert sum("NaN or infinite" in r.getMessage() for r in caplog.records) == 1
    # each stage: its own threshold, and the grey plate of each of the 2 frames dropped, counted once
    assert res["threshold"] == 0.5 and res["network_only"]["threshold"] == 0.6
    assert res["non_finite_boxes"] == 2 and res["network_only"]["non_finite_boxes"] == 2
