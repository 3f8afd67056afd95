"""The training commands refuse, naming the option, what failed later without naming it (--seed -1:
numpy's "expected non-negative integer"; --synth-refresh -1: "n must be >= 0", after rendering the
synthetic pool) or ran on regardless (--kd-temp 0: a NaN distillation loss, the model exported as
if trained; --lr nan)."""

from __future__ import annotations

import pytest

from edge.training import detector, ocr


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
