"""`alpr-edge run` and `alpr-edge sim` as processes against a real Mosquitto: kill -9 loses no read,
a restarted edge sends what was left and not what was acknowledged; N cameras as N processes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from edge_node_helpers import Collector

pytest.importorskip("edge.synth.scene")

SMALL = "synthetic:highway_gantry?seed={seed}&duration={d}&width=320&height=180"


def alpr(*args):
    return [sys.executable, "-m", "edge.cli", *args]


def outbox_ids(path):
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT read_id FROM outbox ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def wait(cond, timeout=60, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def test_run_killed_and_restarted_loses_nothing(tmp_path, mosquitto):
    col = Collector(mosquitto.url("gate"))
    out = tmp_path / "edge"
    db = str(out / "outbox.db")
    common = ["--camera-id", "cam-1", "--agency-id", "sac-pd", "--broker", mosquitto.url("cam-1"),
              "--vision", "labels", "--min-plate-height", "4", "--output-dir", str(out), "--no-progress", "--metrics-interval", "0.5"]  # fmt: skip
    p = subprocess.Popen(alpr("run", "--source", SMALL.format(seed=1, d=40), "--realtime", "--speed", "2", *common),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert wait(lambda: len(set(col.read_ids())) >= 2), "no reads arrived from the running edge"
        before_outage = set(col.read_ids())
        mosquitto.stop()
        assert wait(lambda: len(outbox_ids(db)) >= 3), "reads did not accumulate in the outbox"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        pending = outbox_ids(db)
        mosquitto.start()
        # A restarted edge (a short source of its own) first drains what the killed one stored.
        r = subprocess.run(alpr("run", "--source", SMALL.format(seed=9, d=1), "--json", *common),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        assert summary["outbox_waiting"] == 0 and summary["acked"] >= len(pending)
        got = col.wait_for(len(before_outage) + len(pending))
        assert set(pending) <= got, "reads stored before the kill were lost"
        # (A read can be both delivered and still pending: its PUBACK was lost when the broker went
        # down. QoS 1 re-sends it; the gate drops the repeat by read id.)
        # Publications, not deliveries: the broker itself may re-deliver to the collector (DUP)
        # when the collector's own PUBACK died with it; that is not the edge sending again.
        received = col.read_ids(fresh_only=True)
        dupes = {i for i in received if received.count(i) > 1}
        assert dupes <= set(pending), f"acknowledged reads were sent again: {dupes - set(pending)}"
        assert outbox_ids(db) == []
        crops = list((out / "crops").rglob("*.jpg"))
        assert crops, "best crops were not saved"
    finally:
        if p.poll() is None:
            p.kill()
        col.close()


def test_sim_runs_cameras_as_processes(tmp_path, mosquitto):
    col = Collector(mosquitto.url("gate"))
    cams = ["cam-1", "cam-2", "cam-3"]
    pw = tmp_path / "pw.yaml"
    pw.write_text(yaml.safe_dump({c: mosquitto.credentials(c)[1] for c in cams}))
    url = f"mqtt://{{camera}}:{{password}}@127.0.0.1:{mosquitto.port}"
    r = subprocess.run(
        alpr("sim", "--cameras", "3", "--broker", url, "--passwords", str(pw), "--agency-id", "sac-pd",
             "--source", "synthetic:highway_gantry?duration=6&width=320&height=180",
             "--output-dir", str(tmp_path / "sim"), "--json", "--", "--vision", "labels", "--min-plate-height", "4"),
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["cameras"] == 3 and summary["reads"] > 0
    assert summary["acked"] == summary["reads"]
    col.wait_for(summary["reads"])
    by_topic = {t for t in col.topics}
    assert by_topic == {f"alpr/raw/{c}" for c in cams}  # each camera on its own topic, all accepted
    for c in cams:
        cam = summary["per_camera"][c]
        assert cam["exit"] == 0 and cam["reads"] == sum(1 for m in col.messages if m.get("camera_id") == c)
    # Different seeds per camera: different traffic.
    plates = {c: {m["plate"] for m in col.messages if m.get("camera_id") == c} for c in cams}
    assert plates["cam-1"] != plates["cam-2"]


def test_run_refuses_an_unwritable_outbox(tmp_path):
    r = subprocess.run(
        alpr("run", "--source", SMALL.format(seed=1, d=1), "--camera-id", "cam-1", "--agency-id", "sac-pd",
             "--vision", "labels", "--outbox", "/proc/alpr-edge-no/outbox.db", "--no-progress"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "cannot open outbox /proc/alpr-edge-no/outbox.db" in r.stderr and "Refusing to take frames" in r.stderr


def test_run_without_models_says_which_file(tmp_path):
    r = subprocess.run(
        alpr("run", "--source", SMALL.format(seed=1, d=1), "--camera-id", "cam-1", "--agency-id", "sac-pd",
             "--detector-model", str(tmp_path / "none.onnx"), "--output-dir", str(tmp_path)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "none.onnx" in r.stderr


def test_sim_from_the_registry(tmp_path, mosquitto):
    from conftest import TEST_REGISTRY

    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(TEST_REGISTRY))
    col = Collector(mosquitto.url("gate"))
    r = subprocess.run(
        alpr("sim", "--registry", str(reg), "--secrets", str(mosquitto.directory / "secrets"),
             "--broker", f"mqtt://127.0.0.1:{mosquitto.port}",
             "--source", "synthetic:highway_gantry?duration=4&width=320&height=180",
             "--output-dir", str(tmp_path / "sim"), "--json", "--", "--vision", "labels", "--min-plate-height", "4"),
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["cameras"] == 3 and summary["acked"] == summary["reads"] > 0
    col.wait_for(summary["reads"])
    agencies = {m["camera_id"]: m["agency_id"] for m in col.messages}
    assert agencies == {"cam-1": "sac-pd", "cam-2": "sac-pd", "cam-3": "sac-so"}
    assert mosquitto.credentials("cam-1")[1] not in r.stdout + r.stderr  # no password in the output


def run_json(*args):
    """`alpr-edge run ... --json`: the summary (its last stdout line) and stderr."""
    r = subprocess.run(alpr("run", *args, "--vision", "labels", "--min-plate-height", "4", "--no-progress", "--json"),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_run_fps_leaves_out_the_wait_for_an_unreachable_broker(tmp_path):
    """A closed port: stopping the publisher waits for paho between connection attempts (up to
    2 s). That wait is `drain_s`, apart; `fps` is the processing rate the metrics log line gave."""
    from edge.transport.mosquitto import free_port

    summary, stderr = run_json("--source", SMALL.format(seed=3, d=2), "--camera-id", "cam-1", "--agency-id", "sac-pd",
                               "--broker", f"mqtt://127.0.0.1:{free_port()}", "--output-dir", str(tmp_path / "e"))  # fmt: skip
    logged = [float(line.split(": ")[-1].split(" fps")[0]) for line in stderr.splitlines() if " fps (recent " in line]
    assert summary["fps"] == pytest.approx(logged[-1], abs=0.06)  # the final line, at the end of processing
    assert summary["fps"] == pytest.approx(summary["frames"] / summary["elapsed_s"], rel=0.01)
    assert summary["drain_s"] >= 0 and summary["frames"] == 60


def test_run_counts_every_frame_a_truncated_video_lacks_in_one_warning(tmp_path):
    from test_sources_files import write_video

    data = write_video(tmp_path / "v.avi", n=48).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    summary, stderr = run_json("--source", str(cut), "--camera-id", "cam-1", "--agency-id", "sac-pd",
                               "--output-dir", str(tmp_path / "e"))  # fmt: skip
    assert 5 < summary["frames"] < 48 and summary["source_skipped"] == 48 - summary["frames"]
    warned = [line for line in stderr.splitlines() if " WARNING " in line and str(cut) in line]
    assert len(warned) == 1 and "truncated" in warned[0], warned
