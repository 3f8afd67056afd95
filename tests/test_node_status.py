"""Metrics on the retained status topic alpr/status/<camera> (QoS 0)."""

import getpass
import json
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from edge.transport.mosquitto import find_mosquitto, free_port

pytest.importorskip("edge.synth.scene")


@pytest.fixture
def open_broker(tmp_path):
    """A Mosquitto without logins (the registry's ACL lets no one read status topics in tests)."""
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n")
    p = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    yield port
    p.terminate()
    p.wait(5)


def test_status_is_retained_with_metrics(tmp_path, open_broker):
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--source", "synthetic:default?duration=3&width=320&height=180",
         "--camera-id", "cam-7", "--agency-id", "sac-pd", "--broker", f"mqtt://127.0.0.1:{open_broker}",
         "--vision", "labels", "--min-plate-height", "4", "--output-dir", str(tmp_path / "e"), "--metrics-interval", "0.2", "--realtime", "--speed", "4"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fps" in r.stderr and "ms/frame" in r.stderr  # periodic metrics log lines
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.retain, json.loads(m.payload)))
    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("alpr/status/#")
    c.connect("127.0.0.1", open_broker)
    c.loop_start()
    end = time.monotonic() + 5
    while not got and time.monotonic() < end:
        time.sleep(0.05)
    c.loop_stop()
    assert got, "no retained status"
    topic, retained, status = got[0]
    assert topic == "alpr/status/cam-7" and retained
    assert status["state"] == "stopped" and status["camera_id"] == "cam-7"
    assert status["frames"] == 45 and "stage_ms_per_frame" in status and "queue_depth" in status
    # the same fields as the running status's (a dashboard reading active_tracks failed on this one)
    assert status["active_tracks"] == 0 and status["outbox_depth"] == 0 and status["broker_connected"]
