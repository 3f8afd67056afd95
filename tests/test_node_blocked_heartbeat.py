"""A node blocked on a full outbox keeps its metrics lines and status coming, and says it is blocked.

While the sink waited for the broker to free a row, the node's loop was stuck inside emit: no
metrics line, no alpr/status message, for as long as the broker stayed away (the one moment an
operator most needs to see the camera's state). Now the sink calls the node back while it waits.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, crop_axis_aligned
from edge.node.sink import OutboxSink, ReadNotStored
from edge.transport.outbox import Outbox
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource


class _NeverDrains:
    last_error = None

    def notify(self) -> None:
        pass


@pytest.mark.parametrize("overlap", [True, False])
def test_metrics_keep_coming_while_blocked_on_a_full_outbox(tmp_path, caplog, overlap):
    caplog.set_level(logging.INFO, logger="edge")
    src = ScriptedSource(n_vehicles=6, gap=6)
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path / "out"),
                       save_crops=False, overlap_stages=overlap, metrics_interval_s=0.1)  # fmt: skip
    ob = Outbox(tmp_path / "o.db", max_rows=1)
    stop = threading.Event()
    sink = OutboxSink(ob, cfg.topic, publisher=_NeverDrains(), stop_event=stop, retry_s=0.02)
    snaps: list[dict] = []
    node = EdgeNode(cfg, src, ColourKeyedDetector(), ColourKeyedOCR(src.vehicles), sink,
                    cropper=crop_axis_aligned, on_metrics=snaps.append)
    node.stop_event = stop
    t = threading.Thread(target=lambda: pytest.raises(ReadNotStored, node.run))
    t.start()
    try:
        end = time.monotonic() + 10
        while sink.full_events == 0 and time.monotonic() < end:
            time.sleep(0.01)
        assert sink.full_events and t.is_alive()
        n0 = len(snaps)
        time.sleep(0.8)  # blocked all along: about 8 metrics intervals
        blocked = [s for s in snaps[n0:] if s.get("outbox_full")]
        assert len(blocked) >= 3, snaps[n0:]
        assert blocked[-1]["blocked_for_s"] >= 0.3 and blocked[-1]["blocked_s"] >= 0.3
        assert not blocked[-1]["outbox_unwritable"]
        assert any("BLOCKED" in r.getMessage() and "outbox is full" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.WARNING)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert snaps[-1]["outbox_full"] is False  # the last (final) snapshot: no longer waiting


def test_sink_state_says_when_and_why_it_waits(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_rows=1)
    stop = threading.Event()
    sink = OutboxSink(ob, "alpr/raw/cam-1", publisher=_NeverDrains(), stop_event=stop, retry_s=0.02)
    from test_outbox_backpressure import event

    sink.emit(event())
    assert sink.state()["outbox_full"] is False and sink.state()["blocked_for_s"] == 0.0
    calls = []
    sink.on_blocked = lambda: calls.append(sink.state())
    t = threading.Thread(target=lambda: pytest.raises(ReadNotStored, sink.emit, event()))
    t.start()
    time.sleep(0.3)
    stop.set()
    t.join(5)
    assert len(calls) >= 5 and all(c["outbox_full"] for c in calls)
    assert calls[-1]["blocked_for_s"] >= 0.2
    assert sink.state()["outbox_full"] is False  # not waiting any more


def test_a_failing_heartbeat_does_not_lose_the_read(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.db", max_rows=1)
    sink = OutboxSink(ob, "alpr/raw/cam-1", publisher=_NeverDrains(), retry_s=0.02)
    from test_outbox_backpressure import event

    sink.emit(event())

    def boom():
        raise RuntimeError("status publish failed")

    sink.on_blocked = boom
    done = threading.Event()
    t = threading.Thread(target=lambda: (sink.emit(event("XYZ789")), done.set()))
    t.start()
    time.sleep(0.1)
    ob.delete(ob.after(0, 1)[0][0])
    assert done.wait(5)
    t.join()
    assert sink.stored == 2 and "status publish failed" in caplog.text


def test_run_publishes_a_blocked_status_while_the_broker_refuses_reads(tmp_path):
    """alpr-edge run against a broker whose ACL refuses the camera's reads (but lets it write its
    status): the outbox (1 row) fills, the node blocks, and alpr/status says so while it waits."""
    import getpass
    import json
    import signal
    import subprocess
    import sys

    import paho.mqtt.client as mqtt

    from edge.transport.mosquitto import find_mosquitto, free_port

    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: scripts/test installs it (Debian package 'mosquitto')")
    port = free_port()
    (tmp_path / "acl").write_text("topic readwrite alpr/status/#\n")  # anonymous: status only, no alpr/raw
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {tmp_path / 'acl'}\n"
                    f"user {getpass.getuser()}\n")
    broker = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: list[dict] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("alpr/status/#")
    node = None
    try:
        time.sleep(0.3)
        c.connect("127.0.0.1", port)
        c.loop_start()
        node = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--source", "synthetic:default?duration=30&width=320&height=180",
             "--camera-id", "cam-7", "--agency-id", "sac-pd", "--broker", f"mqtt://127.0.0.1:{port}",
             "--vision", "labels", "--min-plate-height", "4", "--output-dir", str(tmp_path / "e"),
             "--outbox", str(tmp_path / "o.db"), "--outbox-max", "1", "--metrics-interval", "0.2",
             "--track-timeout", "0.2", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        end = time.monotonic() + 90
        while time.monotonic() < end and node.poll() is None:
            blocked = [s for s in got if s.get("state") == "blocked"]
            if len(blocked) >= 3:
                break
            time.sleep(0.1)
        assert node.poll() is None, node.communicate()[1][-2000:]
        assert len(blocked) >= 3, got[-3:]
        last = blocked[-1]
        assert last["outbox_full"] is True and last["outbox_depth"] == 1 and last["blocked_for_s"] > 0
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=30)
        assert "BLOCKED" in err
    finally:
        if node is not None and node.poll() is None:
            node.kill()
            node.wait()
        c.loop_stop()
        broker.terminate()
        broker.wait(5)
