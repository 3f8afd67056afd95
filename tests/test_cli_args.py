"""Commands (the benches, audit show) refuse arguments that would crash them or measure nothing, in
one line naming the flag, before anything starts (no broker, no gate, no worker, no file written)."""

import pytest

from edge.cli import main


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("args, named", [
    (["--reads", "0"], "--reads must be at least 1, got 0"),  # was ZeroDivisionError
    (["--reads", "-5"], "--reads must be at least 1, got -5"),
    (["--latency-rate", "0"], "--latency-rate must be more than 0"),  # was ZeroDivisionError
    (["--latency-rate", "nan"], "--latency-rate must be more than 0"),
    (["--latency-reads", "-1"], "--latency-reads must be 0 or more"),
])
def test_bench_gate_refuses_counts_it_cannot_measure(tmp_path, capsys, monkeypatch, args, named):
    import edge.bench.gate as bench_gate

    monkeypatch.setattr(bench_gate, "run_bench", lambda *a, **k: pytest.fail("the bench started"))
    monkeypatch.chdir(tmp_path)
    status, err = run_cli(capsys, "bench", "gate", *args)
    assert status == 2 and f"alpr-edge bench gate: error: {named}" in err and "Traceback" not in err


def test_bench_gate_says_why_the_gate_did_not_start(tmp_path, capsys):
    # a real Mosquitto and a real gate process, whose audit file cannot be created
    status, err = run_cli(capsys, "bench", "gate", "--reads", "10", "--latency-reads", "0",
                          "--audit", tmp_path / "no-such-folder" / "audit.db")
    assert status == 2 and "Traceback" not in err
    line = [x for x in err.splitlines() if "error:" in x]
    assert len(line) == 1 and line[0].startswith("alpr-edge bench gate: error: the gate did not start: audit database")
    assert str(tmp_path / "no-such-folder" / "audit.db") in line[0]


@pytest.mark.parametrize("args, named", [
    (["--camera-procs", "0"], "--camera-procs must be at least 1, got 0"),  # ran no camera and passed
    (["--outage-s", "-1", "--gate-kill-at", "1"], "--outage-s must be 0 or more seconds, got -1"),  # failed mid-run
    (["--rate", "inf"], "--cameras, --rate and --minutes must be positive"),
    (["--gate-kill-at", "0"], "--gate-kill-at 0: must fall inside the run"),
])
def test_bench_soak_refuses_settings_before_starting(tmp_path, capsys, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    status, err = run_cli(capsys, "bench", "soak", "--minutes", "0.05", *args)
    assert status == 2 and f"alpr-edge bench soak: error: {named}" in err
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("repeats", ["0", "-3"])
def test_bench_detect_refuses_no_timed_run(tmp_path, capsys, monkeypatch, repeats):
    import edge.bench.detect as bench_detect

    monkeypatch.setattr(bench_detect, "run_bench", lambda *a, **k: pytest.fail("the bench started"))
    status, err = run_cli(capsys, "bench", "detect", tmp_path, "--repeats", repeats)
    assert status == 2 and f"alpr-edge bench detect: error: --repeats must be at least 1, got {repeats}" in err


@pytest.mark.parametrize("max_frames", ["0", "-2"])
def test_bench_video_refuses_no_frames(tmp_path, capsys, max_frames):
    status, err = run_cli(capsys, "bench", "video", tmp_path / "v.mp4", "--max-frames", max_frames)
    assert status == 2 and f"alpr-edge bench video: error: --max-frames must be at least 1, got {max_frames}" in err


def test_audit_show_limit_zero_is_all_and_negative_is_refused(tmp_path, capsys):
    import json

    from edge.policy.audit import AuditRecord, SQLiteAuditStore

    db = tmp_path / "audit.db"
    store = SQLiteAuditStore(db)
    store.append([AuditRecord(recorded_at="2026-11-27T00:00:00+00:00", gate_id="g", read_key=f"cam-1/r{i}",
                              read_id=f"r{i}", camera_id="cam-1", operating_agency="sac-pd", plate="7ABC123",
                              captured_at="2026-11-27T00:00:00+00:00", topic="alpr/raw/cam-1", policy="ca-sb34@1",
                              outcome="decided", decisions="[]") for i in range(25)])
    store.close()
    status = main(["audit", "show", str(db), "--limit", "0"])
    seqs = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and seqs == list(range(1, 26))  # 0: every record (the default shows 20)
    status, err = run_cli(capsys, "audit", "show", db, "--limit", "-1")
    assert status == 2 and "alpr-edge audit show: error: --limit must be 0 (all) or more, got -1" in err
