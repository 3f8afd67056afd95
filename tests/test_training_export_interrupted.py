"""An ONNX export or quantization interrupted (Ctrl-C, a full disk) wrote straight to its target,
often a shipped models/*.onnx: the detector's export left half a file or a graph without the
metadata the detector needs, ocr_quant a model without its alphabet. They now write beside the
target and rename over it (edge.training.save_onnx): the model there stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx", reason="exports need the train extra (onnx)")
torch = pytest.importorskip("torch", reason="exports need the train extra (torch)")

SHIPPED = b"the model that was there"


def _interrupting(write_to_arg: int):
    """A stand-in for a writer that writes half its file (path: positional argument
    `write_to_arg`) and is then interrupted."""

    def writer(*args, **kwargs):
        Path(args[write_to_arg]).write_bytes(b"half a mod")
        raise KeyboardInterrupt

    return writer


def _target(tmp_path) -> Path:
    target = tmp_path / "models" / "model.onnx"
    target.parent.mkdir()
    target.write_bytes(SHIPPED)
    return target


def test_an_interrupted_save_leaves_the_model_there(tmp_path, monkeypatch):
    from edge.training import save_onnx

    target = _target(tmp_path)
    monkeypatch.setattr(onnx, "save", _interrupting(1))
    with pytest.raises(KeyboardInterrupt):
        save_onnx(onnx.ModelProto(), target)
    assert target.read_bytes() == SHIPPED and sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_an_interrupted_detector_export_leaves_the_model_there(tmp_path, monkeypatch):
    from edge.training.detector import PlateNet, export_onnx

    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": PlateNet().state_dict(), "step": 1, "elapsed": 1.0}, ckpt)
    target = _target(tmp_path)
    monkeypatch.setattr(torch.onnx, "export", _interrupting(2))
    with pytest.raises(KeyboardInterrupt):
        export_onnx(ckpt, target)
    assert target.read_bytes() == SHIPPED


def test_an_interrupted_quantization_leaves_the_model_there(tmp_path, monkeypatch):
    import cv2
    import numpy as np
    import onnxruntime.quantization as quantization

    from edge.training.ocr_quant import quantize

    crops = tmp_path / "crops"
    crops.mkdir()
    rows = ["file,state,plate"]
    for i in range(6):
        cv2.imwrite(str(crops / f"c{i}.png"), np.full((32, 96, 3), 40 * i, np.uint8))
        rows.append(f"c{i}.png,ca,ABC12{i}")
    (crops / "labels.csv").write_text("\n".join(rows) + "\n")
    target = _target(tmp_path)
    monkeypatch.setattr(quantization, "quantize_static", _interrupting(1))
    with pytest.raises(KeyboardInterrupt):
        quantize(Path("models/ocr-float.onnx"), target, crops, n_calib=4)
    assert target.read_bytes() == SHIPPED
