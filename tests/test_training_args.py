"""The training commands refuse, naming the option, what failed later without naming it (--seed -1:
numpy's "expected non-negative integer"; --synth-refresh -1: "n must be >= 0", after rendering the
synthetic pool) or ran on regardless (--kd-temp 0: a NaN distillation loss, the model exported as
if trained; --lr nan)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the training commands need the train extra (torch)")
from edge.training import detector, ocr  # noqa: E402


@pytest.mark.parametrize("argv, said", [
    (["--seed", "-1"], "--seed must be 0 or more"),
    (["--synth-refresh", "-1"], "--synth-refresh must be 0 or more"),
    (["--synth-only-steps", "-5"], "--synth-only-steps must be 0 or more"),
    (["--kd-temp", "0"], "--kd-temp must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--kd-weight", "inf"], "--kd-weight must be a number >= 0"),
    (["--state-weight", "-1"], "--state-weight must be a number >= 0"),
])
def test_ocr_training_refuses_naming_the_option(capsys, argv, said):
    with pytest.raises(SystemExit) as err:
        ocr.parse_args(argv)
    assert err.value.code == 2 and said in capsys.readouterr().err


def test_ocr_training_defaults_pass():
    ocr.parse_args([])


@pytest.mark.parametrize("argv, said", [
    (["--seed", "-1"], "--seed must be 0 or more"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--lr", "0"], "--lr must be a positive number"),
])
def test_detector_training_refuses_naming_the_option(capsys, monkeypatch, argv, said):
    monkeypatch.setattr(detector, "train", lambda args: pytest.fail("training started"))
    with pytest.raises(SystemExit) as err:
        detector.main(["train", *argv])
    assert err.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("calib", ["0", "-5"])
def test_ocr_quant_refuses_no_calibration_crops(capsys, tmp_path, calib):
    from edge.training import ocr_quant

    with pytest.raises(SystemExit) as err:
        ocr_quant.main([str(tmp_path / "float.onnx"), str(tmp_path / "int8.onnx"), "--calib", calib])
    assert err.value.code == 2 and f"--calib must be at least 1, got {calib}" in capsys.readouterr().err


def test_ocr_quant_names_a_crops_folder_without_train_crops(tmp_path):
    from edge.training.ocr_quant import quantize
    from edge.training.splits import is_validation

    names = [f"c{i}.png" for i in range(200)]
    val_only = [n for n in names if is_validation(n)][:2]
    import cv2
    import numpy as np

    rows = ["file,state,plate"]
    for n in val_only:
        cv2.imwrite(str(tmp_path / n), np.full((32, 64, 3), 200, np.uint8))
        rows.append(f"{n},ca,ABC123")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="no crops in the train part"):
        quantize("models/ocr-float.onnx", tmp_path / "int8.onnx", tmp_path)


def test_loading_an_ocr_models_weights_gives_no_torch_warning():
    """torch warned 'The given NumPy array is not writable' (the state head's ONNX arrays) in every
    fine-tuning run. Once per process: so checked in a fresh one."""
    import subprocess
    import sys

    code = ("from edge.training.ocr_model import STATES, PlateRecognizer, load_onnx_weights; "
            "load_onnx_weights(PlateRecognizer(n_states=len(STATES)), 'models/ocr-float.onnx')")
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "not writable" not in r.stderr, r.stderr[-2000:]
