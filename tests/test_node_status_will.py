"""alpr/status/<camera> is retained: a camera killed (or its machine gone) said "running" there for
good. The camera's connection carries a will, so the broker replaces it with "offline"."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt


def test_a_killed_camera_is_offline_on_its_status_topic(tmp_path, mosquitto):
    states, changed = [], threading.Event()

    def on_message(client, userdata, msg):
        states.append(json.loads(msg.payload)["state"])
        changed.set()

    user, password = mosquitto.credentials("gate")  # operators read camera status with the gate's login
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="alpr-gate", protocol=mqtt.MQTTv5)
    watcher.username_pw_set(user, password)
    watcher.on_message = on_message
    watcher.on_connect = lambda c, u, f, rc, p=None: c.subscribe("alpr/status/cam-1", qos=1)
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()
    node = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--camera-id", "cam-1", "--agency-id", "sac-pd",
         "--source", "synthetic:default?duration=600&width=320&height=180&fps=10", "--vision", "labels",
         "--realtime", "--no-crops", "--metrics-interval", "0.3", "--output-dir", str(tmp_path)],
        env={**os.environ, "ALPR_EDGE_BROKER_URL": mosquitto.url("cam-1")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "running" not in states:
            assert time.monotonic() < deadline and node.poll() is None, "no running status"
            changed.wait(0.2)
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        deadline = time.monotonic() + 10
        while states[-1] != "offline":
            assert time.monotonic() < deadline, f"the status stayed {states[-1]!r}"
            changed.clear()
            changed.wait(0.2)
    finally:
        if node.poll() is None:
            node.kill()
        watcher.loop_stop()
        watcher.disconnect()
