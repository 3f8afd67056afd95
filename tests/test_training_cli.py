"""The training commands (`python -m edge.training.X`) end a user's mistake in one line naming it.

- a missing file (no labels.csv, no checkpoint, a model not found) was a traceback;
- `detector export` without --onnx wrote over the shipped models/detector.onnx; it now writes
  OUT/detector.onnx;
- a --threshold outside (0, 1) was written into the exported model, which the detector then refused
  to load; --batch 0, --minutes nan and the like failed minutes into a run, or as a torch traceback;
- `ocr_quant` (onnx and onnxruntime only) refused to run without torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.training import require_train_extra, run_main


def _run(module, *args, block=(), timeout=120):
    """python -m module args, with the modules in `block` made uninstalled."""
    code = ("import sys, runpy\n"
            + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
            + f"sys.argv = [{module!r}, *{list(map(str, args))!r}]\n"
            + f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_run_main_names_a_user_error_in_one_line(capsys):
    def missing():
        raise FileNotFoundError(2, "No such file or directory", "/x/checkpoint.pt")

    def refused():
        raise ValueError("/x/labels.csv: labels.csv (file,state,plate)\n not found")

    assert run_main("python -m edge.training.x", missing) == 2
    assert capsys.readouterr().err == "python -m edge.training.x: error: No such file or directory: /x/checkpoint.pt\n"
    assert run_main("python -m edge.training.x", refused) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert run_main("python -m edge.training.x", lambda: 0) == 0

    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_main("python -m edge.training.x", bug)


def test_quantizing_needs_onnx_not_torch(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "onnx") else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        require_train_extra("python -m edge.training.ocr_quant", ("onnx",))
    assert str(exc.value.code).startswith("python -m edge.training.ocr_quant: onnx not installed")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    if real("onnx") is not None:
        require_train_extra("python -m edge.training.ocr_quant", ("onnx",))  # torch missing: fine


@pytest.mark.parametrize("module", ["edge.training.ocr", "edge.training.detector", "edge.training.ocr_quant"])
def test_without_the_extra_each_command_says_what_to_install(module):
    r = _run(module, "--help", block=("torch", "onnx"))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"python -m {module}: " in lines[0] and "pip install -e '.[train]'" in lines[0]
    missing = "onnx" if module == "edge.training.ocr_quant" else "torch and onnx"
    assert lines[0].startswith(f"python -m {module}: {missing} not installed")


@pytest.mark.parametrize("module, args, said", [
    ("edge.training.ocr", ["--crops", "{tmp}/none", "--out", "{tmp}/run"], "labels.csv (file,state,plate) not found"),
    ("edge.training.ocr", ["--minutes", "nan"], "--minutes must be a positive number"),
    ("edge.training.ocr", ["--batch", "0"], "--batch must be at least 1, got 0"),
    ("edge.training.detector", ["export", "--out", "{tmp}/none"], "No such file or directory: {tmp}/none/checkpoint.pt"),
    ("edge.training.detector", ["mine", "--onnx", "{tmp}/none.onnx", "--csv", "{tmp}/x.csv"],
     "detector model not found: {tmp}/none.onnx"),
    ("edge.training.detector", ["export", "--threshold", "1.5"], "--threshold must be within (0, 1), got 1.5"),
    ("edge.training.detector", ["train", "--batch", "0"], "--batch must be at least 1, got 0"),
    ("edge.training.ocr_quant", ["{tmp}/none.onnx", "{tmp}/q.onnx"], "OCR model not found: {tmp}/none.onnx"),
])
def test_a_mistake_is_one_line_naming_it(tmp_path, module, args, said):
    pytest.importorskip("onnx")
    if module != "edge.training.ocr_quant":
        pytest.importorskip("torch")
    r = _run(module, *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"python -m {module}: error: ") and said.format(tmp=tmp_path) in last
    assert not (tmp_path / "q.onnx").exists()


def test_detector_export_defaults_to_the_run_folder_not_the_shipped_model():
    pytest.importorskip("torch")
    from edge.training import detector

    seen = {}
    real = detector.export_onnx
    try:
        detector.export_onnx = lambda ckpt, onnx, threshold: seen.update(ckpt=ckpt, onnx=onnx) or onnx
        detector.main(["export", "--out", "runs/somewhere"])
    finally:
        detector.export_onnx = real
    assert str(seen["onnx"]) == "runs/somewhere/detector.onnx"


def test_quantizing_a_model_onto_itself_is_refused(tmp_path, capsys):
    from edge.training.ocr_quant import main

    src = tmp_path / "ocr-float.onnx"
    src.write_bytes(b"float model")
    assert run_main("python -m edge.training.ocr_quant", lambda: main([str(src), str(tmp_path / "." / src.name)])) == 2
    assert "is the float model itself" in capsys.readouterr().err
    assert src.read_bytes() == b"float model"
