"""`alpr-edge demo` as a new user runs it: bad options named up front, no read data left behind,
and an error while the cameras run reported (not an abort from a camera thread inside onnxruntime)."""

import threading
import time

import pytest
import yaml

from edge.cli import main

REGISTRY = "examples/registry.yaml"


def test_negative_seed_is_refused_by_name_before_anything_runs(capsys):
    assert main(["demo", "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--seed must be 0 or more, got -1" in err and "Traceback" not in err


@pytest.mark.parametrize("extra", [["--synthetic-reads", "3"], []])
def test_a_registry_without_cameras_is_named(tmp_path, capsys, extra):
    reg = yaml.safe_load(open(REGISTRY))
    reg["cameras"] = []
    path = tmp_path / "no-cameras.yaml"
    path.write_text(yaml.safe_dump(reg))
    assert main(["demo", "--registry", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert f"the registry {path} has no cameras" in err and "ZeroDivisionError" not in err


def test_a_demo_run_leaves_no_read_data_in_the_temp_folder(tmp_path, monkeypatch, capsys):
    """Without --audit/--out the audit log, the agencies' inboxes and the crops lived in a
    /tmp/alpr-demo-* folder that was never removed (plates, times and cameras of every read)."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["demo", "--synthetic-reads", "3", "--no-forgeries"]) == 0
    assert "audit chain intact: 3 records" in capsys.readouterr().out
    assert list(scratch.iterdir()) == []


def test_a_failure_while_the_cameras_run_waits_for_them(tmp_path, monkeypatch, capsys):
    """An unreachable broker (or Ctrl-C) with cameras running: the demo returned while camera threads
    were still inside onnxruntime, and the process aborted ('terminate called without an active
    exception', exit 134) instead of exiting 1 with the broker's error."""
    import edge.demo.run as demo_run
    from edge.transport.mqtt import MQTTError

    def unreachable(reads, *a, **kw):
        time.sleep(0.5)  # the cameras are running by now
        raise MQTTError("cannot reach broker mqtt://127.0.0.1:1: [Errno 111] Connection refused")

    monkeypatch.setattr(demo_run, "run_demo", unreachable)
    src = "synthetic:city_intersection?duration=60&width=640&height=360&fps=10&seed=1"
    assert main(["demo", "--source", src, "--out", str(tmp_path / "out")]) == 1
    assert "cannot reach broker" in capsys.readouterr().err
    running = [t.name for t in threading.enumerate() if t.name.startswith("demo-") and t.is_alive()]
    assert running == []


@pytest.mark.parametrize("flag, value", [("--source", "clip.mp4"), ("--detector-model", "det.onnx"),
                                         ("--ocr-model", "ocr.onnx")])
def test_camera_options_with_synthetic_reads_are_refused_not_ignored(capsys, flag, value):
    assert main(["demo", "--synthetic-reads", "3", flag, value]) == 2
    assert f"--synthetic-reads runs no cameras: {flag} would not be used" in capsys.readouterr().err
