"""`alpr-edge run`: a stop request that arrives from two senders at once (systemd signals every
process of a unit, and `sim` its cameras as well) is one graceful stop, not "again: stop now", which
exited 130 without the final drain or the --json summary."""

import json
import signal
import subprocess
import sys
import time

SOURCE = "synthetic:default?duration=600&width=320&height=180&fps=10"


def start_node(tmp_path):
    node = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--camera-id", "cam-1", "--agency-id", "sac-pd", "--source", SOURCE,
         "--vision", "labels", "--realtime", "--no-crops", "--output-dir", str(tmp_path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "outbox.db").exists():  # the handlers are installed right after the outbox opens
        assert time.monotonic() < deadline and node.poll() is None, "the node did not start"
        time.sleep(0.1)
    time.sleep(1.0)
    return node


def test_two_signals_at_once_are_one_graceful_stop(tmp_path):
    node = start_node(tmp_path)
    node.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    node.send_signal(signal.SIGINT)
    out, err = node.communicate(timeout=30)
    assert node.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["camera_id"] == "cam-1"
    assert err.count("finishing the vehicles in view") == 1

