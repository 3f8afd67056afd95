"""Two edge nodes on one outbox (two cameras run from one folder share edge-data/outbox.db): the
second is refused with one clear line, instead of draining, counting and bounding the other's reads."""

import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("edge.synth.scene")

SMALL = "synthetic:highway_gantry?seed=1&duration={d}&width=320&height=180"


def _run(out, camera, *extra, d=1, **kw):
    args = [sys.executable, "-m", "edge.cli", "run", "--source", SMALL.format(d=d), "--camera-id", camera,
            "--agency-id", "sac-pd", "--vision", "labels", "--output-dir", str(out), "--no-progress", "--no-crops", *extra]
    if kw.get("background"):
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_a_second_node_on_the_same_outbox_is_refused(tmp_path):
    out = tmp_path / "edge-data"
    first = _run(out, "cam-1", "--realtime", d=30, background=True)
    try:
        end = time.monotonic() + 30
        while not (out / "outbox.db").exists() and time.monotonic() < end:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        r = _run(out, "cam-2")
        assert r.returncode == 2, r.stderr[-2000:]
        lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
        assert len(lines) == 1 and "Traceback" not in r.stderr
        assert f"outbox {out / 'outbox.db'} is in use by another edge node (pid {first.pid}" in lines[0]
        assert "--output-dir" in lines[0]
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    # Once the first node is gone, the outbox is free again.
    r = _run(out, "cam-2")
    assert r.returncode == 0, r.stderr[-2000:]


def test_exclusive_outbox_is_held_until_closed(tmp_path):
    from edge.transport.outbox import Outbox, OutboxInUse

    a = Outbox(tmp_path / "o.db", exclusive=True)
    with pytest.raises(OutboxInUse, match=r"in use by another edge node \(pid \d+"):
        Outbox(tmp_path / "o.db", exclusive=True)
    a.close()
    Outbox(tmp_path / "o.db", exclusive=True).close()
    Outbox(tmp_path / "o.db").close()  # not asked for: no lock taken (benches, tests, readers)


def test_a_file_system_without_locks_still_runs(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from edge.transport.outbox import Outbox

    def no_locks(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ob = Outbox(tmp_path / "o.db", exclusive=True)
    ob.put("alpr/raw/cam-1", b"{}", "r1")
    assert len(ob) == 1 and "cannot lock" in caplog.text and "No locks available" in caplog.text
    ob.close()
