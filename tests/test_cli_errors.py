"""Bad input on the command line: one line naming the problem and a non-zero exit, never a traceback.

Each case is something a user plausibly types: a registry with a typo'd field, a policy name that
does not exist, a file that is not an ONNX model or not a database, a folder of the wrong layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "examples" / "registry.yaml"


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.err


def assert_one_clear_line(err: str, command: str, *names: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if f"alpr-edge {command}: error:" in line]
    assert len(lines) == 1, err
    for name in names:
        assert name in err, (name, err)


def test_registry_with_a_typo_names_the_field(tmp_path, capsys):
    bad = tmp_path / "registry.yaml"
    bad.write_text(REGISTRY.read_text().replace("jurisdiction:", "jursidiction:", 1))
    status, err = run_cli(capsys, "policy", bad)
    assert status == 2
    assert_one_clear_line(err, "policy", str(bad), "jursidiction", "unknown field")


def test_unknown_policy_name_is_named(capsys):
    status, err = run_cli(capsys, "policy", REGISTRY, "--policy", "ca-sb35")
    assert status == 2
    assert_one_clear_line(err, "policy", "ca-sb35")


def test_verify_acl_without_secrets_names_the_missing_file(tmp_path, capsys):
    status, err = run_cli(capsys, "verify-acl", "--registry", REGISTRY, "--secrets", tmp_path / "nope",
                          "--broker", "mqtt://127.0.0.1:9")
    assert status == 2
    assert_one_clear_line(err, "verify-acl", str(tmp_path / "nope"), "does not exist")


def test_verify_acl_names_a_policy_file_it_cannot_read(tmp_path, capsys):
    """verify-acl takes the policy broker-config was given (agencies it refuses must get nothing); a bad
    one is refused before any login is tried."""
    missing = tmp_path / "whatever.yaml"
    status, err = run_cli(capsys, "verify-acl", "--registry", REGISTRY, "--policy", missing, "--broker", "mqtt://127.0.0.1:9")
    assert status == 2
    assert_one_clear_line(err, "verify-acl", "whatever.yaml")


def test_audit_verify_on_a_file_that_is_not_a_database(tmp_path, capsys):
    junk = tmp_path / "audit.db"
    junk.write_text("this is not sqlite\n" * 100)
    status, err = run_cli(capsys, "audit", "verify", junk)
    assert status == 1
    assert_one_clear_line(err, "audit verify", str(junk), "not a database")


def test_gate_with_an_audit_file_in_a_missing_folder(tmp_path, capsys):
    (tmp_path / "secrets").mkdir()
    where = tmp_path / "no" / "such" / "audit.db"
    status, err = run_cli(capsys, "gate", "--registry", REGISTRY, "--broker", "mqtt://gate:pw@127.0.0.1:9",
                          "--audit", where, "--run-for", "1")
    assert status == 1
    assert_one_clear_line(err, "gate", str(where))


def test_gate_with_an_unreachable_broker_exits_1_in_one_line(tmp_path, capsys):
    from edge.transport.mosquitto import free_port

    status, err = run_cli(capsys, "gate", "--registry", REGISTRY, "--audit", tmp_path / "audit.db",
                          "--broker", f"mqtt://gate:pw@127.0.0.1:{free_port()}", "--run-for", "1")
    assert status == 1
    assert_one_clear_line(err, "gate", "127.0.0.1")


def test_agency_receive_names_an_unknown_agency_and_the_known_ones(tmp_path, capsys):
    status, err = run_cli(capsys, "agency", "receive", "ice-ero", "--registry", REGISTRY,
                          "--broker", "mqtt://x:y@127.0.0.1:9", "--inbox", tmp_path / "inbox.db")
    assert status == 2
    assert_one_clear_line(err, "agency receive", "'ice-ero'", "sacramento-pd")
    assert not (tmp_path / "inbox.db").exists()  # refused before anything was created


@pytest.mark.parametrize("now, named", [("2026-01-01T00:00:00", "UTC offset"), ("yesterday", "'yesterday'")])
def test_retention_names_a_bad_now(tmp_path, capsys, now, named):
    status, err = run_cli(capsys, "retention", tmp_path / "audit.db", "--max-age-days", "30", "--now", now)
    assert status == 2
    assert_one_clear_line(err, "retention", "--now", named)


@pytest.mark.parametrize("flag", ["--ocr-model", "--detector-model"])
def test_a_model_that_is_not_onnx(tmp_path, capsys, flag):
    fake = tmp_path / "model.onnx"
    fake.write_text("# not a model\n")
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(frames / "a.jpg"), np.zeros((64, 64, 3), np.uint8))
    status, err = run_cli(capsys, "run", "--source", frames, "--camera-id", "c1", "--agency-id", "a1",
                          "--broker", "mqtt://u:p@127.0.0.1:9", "--outbox", tmp_path / "outbox.db", flag, fake)
    assert status == 2
    assert_one_clear_line(err, "run", "model")


def test_second_ocr_model_missing_names_the_file(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(frames / "a.jpg"), np.zeros((64, 64, 3), np.uint8))
    missing = tmp_path / "nope.onnx"
    status, err = run_cli(capsys, "run", "--source", frames, "--camera-id", "c1", "--agency-id", "a1",
                          "--broker", "mqtt://u:p@127.0.0.1:9", "--outbox", tmp_path / "outbox.db",
                          "--ocr-model", f"{ROOT / 'models' / 'ocr.onnx'},{missing}")
    assert status == 2
    assert "pydantic.dev" not in err
    assert_one_clear_line(err, "run", str(missing))


def test_bench_ocr_on_a_frames_folder_points_to_bench_frames(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("file,x,y,w,h,plate\na.jpg,1,2,30,15,ABC123\n")
    status, err = run_cli(capsys, "bench", "ocr", tmp_path)
    assert status == 2 and "Traceback" not in err
    assert "alpr-edge bench ocr:" in err and "bench frames" in err


def test_bench_detect_on_a_missing_folder(tmp_path, capsys):
    status, err = run_cli(capsys, "bench", "detect", tmp_path / "nope")
    assert status == 2
    assert_one_clear_line(err, "bench detect", str(tmp_path / "nope"))


@pytest.mark.parametrize("duration", ["-1", "0"])
def test_synth_scene_duration_is_validated(tmp_path, capsys, duration):
    status, err = run_cli(capsys, "synth", "scene", ROOT / "examples" / "scenarios" / "parking_entrance.yaml",
                          "--duration", duration, "--out", tmp_path / "out")
    assert status == 2
    assert "--duration" in err and "duration_s" in err and "greater than 0" in err
    assert not (tmp_path / "out" / "video.mp4").exists()


def _frames_folder(tmp_path, labels: str, images=("a.jpg", "b.jpg")):
    import cv2
    import numpy as np

    folder = tmp_path / "frames"
    folder.mkdir()
    for name in images:
        cv2.imwrite(str(folder / name), np.full((120, 200, 3), 90, np.uint8))
    (folder / "labels.csv").write_text(labels)
    return folder


@pytest.mark.parametrize("labels, named", [
    ("file,x,y,w,h,plate\na.jpg,10,10,40,20,ABC123\nb.jpg,5,5\n", "line 3"),  # a short row
    ("file,x,y,w,h,plate\na.jpg,ten,10,40,20,ABC123\n", "line 2"),  # not a number
    ("file,x,y,w,h,plate\nzzz.jpg,10,10,40,20,ABC123\n", "zzz.jpg"),  # labels an image not there
])
def test_bench_frames_names_the_bad_label(tmp_path, capsys, labels, named):
    folder = _frames_folder(tmp_path, labels)
    status, err = run_cli(capsys, "bench", "frames", folder)
    assert status == 2
    assert_one_clear_line(err, "bench frames", named)  # on stderr, as every command's errors


def test_bench_frames_refuses_a_bad_limit_and_an_unusable_misses_folder(tmp_path, capsys):
    folder = _frames_folder(tmp_path, "file,x,y,w,h,plate\na.jpg,10,10,40,20,ABC123\n")
    status, err = run_cli(capsys, "bench", "frames", folder, "--limit", "-2")
    assert status == 2
    assert_one_clear_line(err, "bench frames", "--limit")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, err = run_cli(capsys, "bench", "frames", folder, "--save-misses", blocker / "sub")
    assert status == 2
    assert_one_clear_line(err, "bench frames", "--save-misses")


def test_bench_frames_and_video_name_a_missing_folder_and_a_folder_given_as_video(tmp_path, capsys):
    status, err = run_cli(capsys, "bench", "frames", tmp_path / "nope")
    assert status == 2
    assert_one_clear_line(err, "bench frames", "folder not found", str(tmp_path / "nope"))
    status, err = run_cli(capsys, "bench", "video", tmp_path)
    assert status == 2  # bad input, as `run --source` says of the same path
    assert_one_clear_line(err, "bench video", f"{tmp_path} is a folder, not a video file")


def test_bench_detect_names_a_short_row(tmp_path, capsys):
    folder = _frames_folder(tmp_path, "file,x,y,w,h,plate\na.jpg,10,10\n")
    status, err = run_cli(capsys, "bench", "detect", folder)
    assert status == 2
    assert_one_clear_line(err, "bench detect", "line 2")


def test_audit_show_into_a_closed_pipe_is_quiet(tmp_path):
    import subprocess
    import sys

    from edge.policy.audit import SQLiteAuditStore

    db = tmp_path / "audit.db"
    SQLiteAuditStore(db).close()
    r = subprocess.run(f"{sys.executable} -m edge.cli demo --synthetic-reads 200 --no-forgeries --audit {db} "
                       f"> /dev/null && {sys.executable} -m edge.cli audit show {db} --limit 200 | head -1",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert r.stdout.count("\n") == 1 and '"seq": 1' in r.stdout
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_a_bug_still_shows_its_traceback(monkeypatch):
    """Only errors about the user's input are turned into one line; a programming error is not hidden."""
    import edge.policy.commands as commands

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(commands, "_policy_table", broken)
    with pytest.raises(KeyError):
        main(["policy", str(REGISTRY)])


def test_a_stream_password_never_appears_in_the_source_error(tmp_path, capsys):
    from edge.transport.mosquitto import free_port

    url = f"rtsp://viewer:s3cretpw@127.0.0.1:{free_port()}/stream1"  # nothing listens there
    status, err = run_cli(capsys, "run", "--source", url, "--camera-id", "c1", "--agency-id", "a1",
                          "--outbox", tmp_path / "outbox.db")
    assert status == 2
    assert "s3cretpw" not in err and "viewer:***@" in err
    assert_one_clear_line(err, "run", "cannot open stream")


def test_training_commands_name_the_missing_extra(monkeypatch):
    """On a runtime-only install, `python -m edge.training.X` says what to install (one line)."""
    import importlib.util

    from edge.training import require_train_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        require_train_extra("python -m edge.training.ocr")
    message = str(exc.value.code)
    assert message.startswith("python -m edge.training.ocr: torch")  # "torch" or "torch and onnx" (CI has neither)
    assert "not installed" in message and "pip install -e '.[train]'" in message


def test_synthetic_source_bad_seed_and_a_missing_folder_are_named(tmp_path, capsys):
    status, err = run_cli(capsys, "run", "--source", "synthetic:night_ir?seed=abc", "--camera-id", "c1",
                          "--agency-id", "a1", "--outbox", tmp_path / "o.db")
    assert status == 2 and "seed='abc' is not a whole number" in err
    status, err = run_cli(capsys, "run", "--source", f"{tmp_path}/none/", "--camera-id", "c1",
                          "--agency-id", "a1", "--outbox", tmp_path / "o.db")
    assert status == 2 and "image folder not found" in err


@pytest.mark.parametrize("args, named", [
    (["--broker-restart-at", "9999"], "--broker-restart-at 9999"),
    (["--gate-kill-at", "0"], "--gate-kill-at 0"),
    (["--audit", "notadsn"], "postgresql://"),
])
def test_bench_soak_refuses_faults_outside_the_run_and_a_non_postgres_audit(tmp_path, capsys, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    status, err = run_cli(capsys, "bench", "soak", "--minutes", "0.05", *args)
    assert status == 2 and named in err
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_bench_ocr_names_a_row_without_plate_and_a_bad_plate_width(tmp_path, capsys):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 120, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("file,state,plate\na.png,ca\n")
    status, err = run_cli(capsys, "bench", "ocr", tmp_path, "--split", "all")
    assert status == 2 and "line 2" in err
    (tmp_path / "labels.csv").write_text("file,state,plate\na.png,ca,ABC123\n")
    status, err = run_cli(capsys, "bench", "ocr", tmp_path, "--split", "all", "--plate-width", "-5")
    assert status == 2 and "--plate-width -5" in err


def test_a_config_file_written_with_flag_names_says_the_field_name(tmp_path, capsys):
    from edge.node.commands import RUN_FLAGS
    from edge.node.config import FLAG_FIELDS, EdgeNodeConfig

    # every flag whose setting has another name is covered, and each hint names a real field
    for flag, (field, _) in RUN_FLAGS.items():
        name = flag[2:].replace("-", "_")
        assert name == field or FLAG_FIELDS.get(name) == field, flag
    assert all(v.split(":")[0] in EdgeNodeConfig.model_fields for v in FLAG_FIELDS.values())
    config = tmp_path / "edge.yaml"
    config.write_text("camera_id: c1\ntrack-timeout: 3\n")
    status, err = run_cli(capsys, "run", "--config", config)
    assert status == 2
    assert_one_clear_line(err, "run", "'track-timeout'", "track_timeout_s")


def test_ffmpeg_own_lines_are_kept_for_verbose(tmp_path):
    """A damaged video is one warning from the source; FFmpeg's own per-frame lines ("[mjpeg @ 0x..]
    overread") only with -v, where they also give a stream's reason for not opening."""
    import os
    import re
    import subprocess
    import sys

    import cv2
    import numpy as np

    w = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 96))
    for i in range(20):
        w.write(np.random.default_rng(i).integers(0, 255, (96, 160, 3), np.uint8))
    w.release()
    data = (tmp_path / "v.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 6 // 10])  # ends inside a frame
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    ffmpeg_line = re.compile(r"^\[\w+ @ 0x[0-9a-f]+\]", re.M)

    def run(*verbose):
        r = subprocess.run([sys.executable, "-m", "edge.cli", *verbose, "run", "--source", str(tmp_path / "cut.avi"),
                            "--camera-id", "c1", "--agency-id", "a1", "--output-dir", str(tmp_path / "out"),
                            "--no-crops"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert "decoding stopped at frame" in r.stderr  # the source's own warning, either way
        return r.stderr

    assert not ffmpeg_line.search(run()), "FFmpeg's own lines without -v"
    assert ffmpeg_line.search(run("-v")), "-v should keep FFmpeg's diagnostics"
