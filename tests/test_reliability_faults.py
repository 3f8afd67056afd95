"""Faults on the real path (Mosquitto with persistence, the gate process, camera outboxes): nothing lost,
nothing shared twice or with a refused agency, and a broken audit store stops the gate instead of
letting an unaudited read through.

Every wait polls a condition against a generous deadline: the machine may be busy.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES, TEST_REGISTRY
from edge.policy.audit import SQLiteAuditStore
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.schema import ReadEvent, new_read_id
from edge.transport import mqtt as transport


def make_read(camera_id="cam-1", agency_id="sac-pd") -> ReadEvent:
    return ReadEvent(read_id=new_read_id(), camera_id=camera_id, agency_id=agency_id,
                     captured_at=datetime.now(timezone.utc), plate="7ABC123", confidence=0.9,
                     char_confidence=[0.9] * 7, box={"x": 1, "y": 2, "w": 30, "h": 10})


def url(broker, who):
    return transport.parse_broker_url(broker.url(who))


def wait_until(cond, timeout=30.0, step=0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


class AgencyLogins:
    """Each agency logged in with a persistent session (its bound client id), on its own topic and on
    '#' (refused at SUBACK by the dynamic-security plugin)."""

    def __init__(self, broker):
        self.logins = {}
        for a in ALLOWED_AGENCIES | REFUSED_AGENCIES:
            msgs: list = []
            client = transport.connect(url(broker, a), f"agency-{a}", clean_start=False, session_expiry_s=600,
                                       subscriptions=[(f"alpr/share/{a}/#", 1), ("#", 1)],
                                       on_message=lambda c, u, m, msgs=msgs: msgs.append((m.topic, m.payload)))
            self.logins[a] = (client, msgs)

    def ids(self, agency) -> list[str]:
        _c, msgs = self.logins[agency]
        return [json.loads(p)["read"]["read_id"] for t, p in list(msgs) if t == f"alpr/share/{agency}/reads"]

    def leaks(self) -> int:
        n = 0
        for a, (_c, msgs) in self.logins.items():
            for topic, _p in list(msgs):
                if a in REFUSED_AGENCIES or topic != f"alpr/share/{a}/reads":
                    n += 1
        return n

    def close(self):
        for c, _m in self.logins.values():
            transport.close(c)


# -- MQTT wrapper ------------------------------------------------------------------------------------

def test_a_publish_made_while_the_broker_is_down_is_acknowledged_after_it_returns(mosquitto):
    """Regression: wait_published raised RuntimeError for it (paho keeps rc NO_CONN), which crashed
    a gate that published forwards at the moment the broker went away."""
    agency = transport.connect(url(mosquitto, "sac-pd"), "agency-sac-pd", clean_start=False, session_expiry_s=600,
                               subscriptions=[("alpr/share/sac-pd/#", 1)])
    got: list = []
    agency.on_message = lambda c, u, m: got.append(m.payload)
    gate = transport.connect(url(mosquitto, "gate"), "rel-gate-pub", clean_start=False, session_expiry_s=600)
    try:
        mosquitto.stop()
        assert wait_until(lambda: not gate.is_connected(), 10)
        info = gate.publish("alpr/share/sac-pd/reads", b"while-down", qos=1)
        assert info.rc == 4  # MQTT_ERR_NO_CONN: paho queued it
        mosquitto.start()
        assert transport.wait_published([info], timeout=30)
        assert wait_until(lambda: got == [b"while-down"], 20), got
    finally:
        transport.close(gate)
        transport.close(agency)


# -- the gate process -------------------------------------------------------------------------------

def write_registry(tmp_path: Path) -> Path:
    p = tmp_path / "registry.yaml"
    p.write_text(yaml.safe_dump(TEST_REGISTRY))
    return p


def start_gate(broker, tmp_path, *extra, gate_id="g1") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge.cli", "gate", "--registry", str(write_registry(tmp_path)),
           "--broker", broker.url(), "--secrets", str(broker.directory / "secrets"),
           "--audit", str(tmp_path / "audit.db"), "--gate-id", gate_id, "--batch-ms", "10", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith(f"gate {gate_id}:"), line + proc.stderr.read()
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_reads_published_after_a_broker_restart_wait_for_the_gate(mosquitto, tmp_path):
    """The gate is away while the broker restarts; a camera publishes before the gate is back.

    Mosquitto 2.0 does not restore a *shared* subscription ($share/...) from its persistence file, so
    with one the camera's read (PUBACKed, deleted from its outbox) was dropped: the gate's default is
    a plain subscription, which the broker restores and queues for.
    """
    gate = start_gate(mosquitto, tmp_path)
    agencies = None
    try:  # from here on: the gate process is stopped whatever fails (it outlived failing runs)
        agencies = AgencyLogins(mosquitto)
        first = make_read()
        cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
        transport.wait_published([cam.publish("alpr/raw/cam-1", first.to_json(), qos=1)])
        assert wait_until(lambda: first.read_id in agencies.ids("sac-pd"))
        stop(gate)
        mosquitto.restart()
        assert wait_until(cam.is_connected, 30)
        later = [make_read() for _ in range(5)]
        assert transport.wait_published([cam.publish("alpr/raw/cam-1", r.to_json(), qos=1) for r in later], 30)
        transport.close(cam)
        gate = start_gate(mosquitto, tmp_path)
        want = {r.read_id for r in later} | {first.read_id}
        for a in ALLOWED_AGENCIES:
            assert wait_until(lambda: want <= set(agencies.ids(a)), 30), f"{a}: lost {want - set(agencies.ids(a))}"
        assert agencies.leaks() == 0
    finally:
        stop(gate)
        if agencies is not None:
            agencies.close()


# -- audit store full or read-only: the gate stops, forwards nothing unaudited, loses nothing --------

def _break_store(store: SQLiteAuditStore, how: str) -> None:
    if how == "disk-full":
        # SQLite's page limit fails exactly like a full disk (SQLITE_FULL), without filling one.
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    else:
        # Writes fail like on a file system remounted read-only (SQLITE_READONLY); as root a chmod
        # would not stop anything.
        store.conn.execute("PRAGMA query_only = 1")


@pytest.mark.parametrize("how, message", [("disk-full", "full"), ("read-only", "readonly")])
def test_a_broken_audit_store_stops_the_gate_and_nothing_unaudited_is_forwarded(mosquitto, tmp_path, caplog, how, message):
    agencies = AgencyLogins(mosquitto)
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    store = SQLiteAuditStore(tmp_path / "audit.db")
    cfg = GateConfig(gate_id="g-full", shared_group=None, batch_wait_s=0.01, status_every_s=0)
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), store, cfg).start()
    try:
        before = [make_read() for _ in range(10)]
        transport.wait_published([cam.publish("alpr/raw/cam-1", r.to_json(), qos=1) for r in before])
        assert wait_until(lambda: {r.read_id for r in before} <= set(agencies.ids("sac-pd")))
        _break_store(store, how)
        after = [make_read() for _ in range(300)]
        for r in after:
            cam.publish("alpr/raw/cam-1", r.to_json(), qos=1)
            if gate.error is not None:
                break
        assert wait_until(lambda: gate.error is not None, 30), "the gate kept going without an audit store"
        assert message in str(gate.error)
        # gate.error is set just before the gate thread logs it: wait for the line, don't race it
        assert wait_until(lambda: any("stopped on error" in rec.message for rec in caplog.records), 10)
        time.sleep(0.5)
        audited = {r["read_id"] for r in store.records()}
        for a in ALLOWED_AGENCIES:
            forwarded = set(agencies.ids(a))
            assert forwarded <= audited, f"{a} got reads that are not in the audit log"
        assert agencies.leaks() == 0
    finally:
        gate.stop()
        store.close()
    # A gate with a working store (same persistent session) gets every read that was not acknowledged.
    published = {r.read_id for r in before + after}
    store2 = SQLiteAuditStore(tmp_path / "audit2.db")
    gate2 = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), store2, cfg).start()
    try:
        transport.wait_published([cam.publish("alpr/raw/cam-1", r.to_json(), qos=1) for r in after], 30)
        for a in ALLOWED_AGENCIES:
            assert wait_until(lambda: published <= set(agencies.ids(a)), 60), \
                f"{a}: lost {len(published - set(agencies.ids(a)))}"
        assert agencies.leaks() == 0
    finally:
        gate2.stop()
        store2.close()
        transport.close(cam)
        agencies.close()


# -- camera outbox full or read-only: intake stops, nothing dropped, intake resumes ------------------

@pytest.mark.parametrize("how, message", [("disk-full", "full"), ("read-only", "readonly")])
def test_an_unwritable_outbox_holds_the_camera_and_resumes_without_dropping(tmp_path, caplog, how, message):
    from edge.node.sink import OutboxSink
    from edge.transport.outbox import Outbox

    ob = Outbox(tmp_path / "o.db")
    sink = OutboxSink(ob, "alpr/raw/cam-1", retry_s=0.02, warn_every_s=0.1)
    sink.emit(make_read())
    if how == "disk-full":
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]  # noqa: SLF001
        ob._db.execute(f"PRAGMA max_page_count = {pages}")  # noqa: SLF001
    else:
        ob._db.execute("PRAGMA query_only = 1")  # noqa: SLF001 - like a file system remounted read-only
    blocked = [make_read() for _ in range(400)]  # enough to fill the pages the file still has
    done = threading.Event()
    t = threading.Thread(target=lambda: ([sink.emit(r) for r in blocked], done.set()), daemon=True)
    t.start()
    assert wait_until(lambda: message in caplog.text, 10), caplog.text
    assert "stops taking new frames" in caplog.text and not done.is_set()
    stored_while_blocked = len(ob)
    time.sleep(0.3)
    assert len(ob) == stored_while_blocked < 401  # held, not dropping: nothing more stored, nothing lost
    # Space freed / file system writable again: the camera goes on by itself, every read stored in order.
    if how == "disk-full":
        ob._db.execute("PRAGMA max_page_count = 1073741823")  # noqa: SLF001
    else:
        ob._db.execute("PRAGMA query_only = 0")  # noqa: SLF001
    assert done.wait(10)
    assert ob.read_ids()[1:] == [r.read_id for r in blocked] and sink.stored == 401
