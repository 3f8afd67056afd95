"""The agency receiver against a real Mosquitto and the real gate: each shared read stored once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES
from edge.agency.receiver import AgencyInbox, AgencyReceiver
from edge.policy.audit import SQLiteAuditStore
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from test_gate_mosquitto import make_read, publish, url
from edge.transport import mqtt as transport


def _forward(read, recipient="sac-pd") -> bytes:
    return json.dumps({"schema_version": 1, "policy": "ca-sb34@1", "recipient": recipient,
                       "rule": "allow:in-jurisdiction-public-agency",
                       "read": json.loads(read.to_json())}).encode()


def _wait(pred, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def receivers(mosquitto, tmp_path):
    made = []

    def make(agency, name=None):
        inbox = AgencyInbox(tmp_path / f"{name or agency}.db")
        r = AgencyReceiver(agency, url(mosquitto, agency), inbox).start()  # its bound client id, agency-<id>
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()
        r.inbox.close()


def test_gate_to_receivers_each_allowed_agency_stores_each_read_once(mosquitto, receivers, tmp_path):
    rx = {a: receivers(a) for a in ALLOWED_AGENCIES | REFUSED_AGENCIES}
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), audit, GateConfig(batch_wait_s=0.01)).start()
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    try:
        reads = [make_read() for _ in range(50)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in reads])
        ids = {r.read_id for r in reads}
        for a in ALLOWED_AGENCIES:
            assert _wait(lambda a=a: set(rx[a].inbox.read_ids()) == ids), a
        time.sleep(0.3)
        for a in ALLOWED_AGENCIES:
            assert rx[a].inbox.count() == 50 and rx[a].snapshot()["duplicates"] == 0
        for a in REFUSED_AGENCIES:
            assert rx[a].inbox.count() == 0 and rx[a].snapshot()["received"] == 0, a
    finally:
        transport.close(cam)
        gate.stop()
        audit.close()


def test_a_read_delivered_twice_is_stored_once(mosquitto, receivers):
    """What a gate killed between forwarding and noting it does: a new MQTT packet, same read."""
    rx = receivers("sac-pd")
    gate = transport.connect(url(mosquitto, "gate"), "t-gate-twice")
    try:
        read = make_read()
        for _ in range(2):
            transport.wait_published([gate.publish("alpr/share/sac-pd/reads", _forward(read), qos=2)])
        assert rx.wait_received(2)
        assert rx.inbox.read_ids() == [read.read_id]
        assert rx.snapshot() == {"received": 2, "stored": 1, "duplicates": 1, "rejected": 0}
    finally:
        transport.close(gate)


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "forwarded read"),
    (b'{"schema_version": 1}', "forwarded read"),
    (b"x" * 40000, "over the 17408-byte limit"),
    (None, "addressed to 'sac-so'"),
])
def test_bad_messages_are_rejected_with_a_reason_and_do_not_block_the_next_read(mosquitto, receivers, payload,
                                                                                  reason):
    rx = receivers("sac-pd")
    gate = transport.connect(url(mosquitto, "gate"), "t-gate-bad")
    try:
        bad = payload if payload is not None else _forward(make_read(), recipient="sac-so")
        good = make_read()
        transport.wait_published([gate.publish("alpr/share/sac-pd/reads", bad, qos=2),
                                  gate.publish("alpr/share/sac-pd/reads", _forward(good), qos=2)])
        assert rx.wait_received(2)
        assert rx.inbox.read_ids() == [good.read_id]
        rejected = rx.inbox.rejected()
        assert len(rejected) == 1 and reason in rejected[0]["reason"], rejected
        assert rejected[0]["size"] == len(bad)
    finally:
        transport.close(gate)


def test_reads_are_acknowledged_only_after_they_are_stored(mosquitto, tmp_path):
    """An inbox that cannot be written stops the receiver without acknowledging; the broker keeps
    the reads for the agency's session and a receiver with a working inbox gets them all."""
    broken_path = tmp_path / "broken.db"
    broken = AgencyInbox(broken_path)
    broken.db.execute("CREATE TRIGGER no_reads BEFORE INSERT ON reads BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    rx = AgencyReceiver("sac-pd", url(mosquitto, "sac-pd"), broken).start()
    gate = transport.connect(url(mosquitto, "gate"), "t-gate-ack")
    reads = [make_read() for _ in range(5)]
    try:
        transport.wait_published([gate.publish("alpr/share/sac-pd/reads", _forward(r), qos=2) for r in reads])
        assert _wait(lambda: rx.error is not None)
        assert isinstance(rx.error, sqlite3.Error)
        rx.stop()
        broken.close()
        good = AgencyInbox(tmp_path / "good.db")
        rx2 = AgencyReceiver("sac-pd", url(mosquitto, "sac-pd"), good).start()
        try:
            assert _wait(lambda: set(good.read_ids()) == {r.read_id for r in reads})
        finally:
            rx2.stop()
            good.close()
    finally:
        transport.close(gate)


def test_reads_shared_while_the_receiver_is_away_or_the_broker_restarts_arrive_once(mosquitto, tmp_path):
    inbox = AgencyInbox(tmp_path / "inbox.db")
    rx = AgencyReceiver("sac-so", url(mosquitto, "sac-so"), inbox).start()
    rx.stop()  # the session stays (persistent, QoS 2 subscription)
    gate = transport.connect(url(mosquitto, "gate"), "t-gate-away", clean_start=False, session_expiry_s=600)
    try:
        away = [make_read(agency_id="sac-so", camera_id="cam-3") for _ in range(10)]
        transport.wait_published([gate.publish("alpr/share/sac-so/reads", _forward(r, "sac-so"), qos=2) for r in away])
        mosquitto.restart()
        rx = AgencyReceiver("sac-so", url(mosquitto, "sac-so"), inbox).start()
        assert _wait(lambda: set(inbox.read_ids()) == {r.read_id for r in away})
        time.sleep(0.3)
        assert inbox.count() == 10 and rx.snapshot()["duplicates"] == 0
    finally:
        rx.stop()
        inbox.close()
        transport.close(gate)


def test_cli_refuses_an_unknown_agency_naming_it(tmp_path):
    import yaml

    from conftest import TEST_REGISTRY

    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(TEST_REGISTRY))
    r = subprocess.run([sys.executable, "-m", "edge.cli", "agency", "receive", "fbi", "--registry",
                        str(tmp_path / "registry.yaml"), "--inbox", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "'fbi' is not in the registry" in r.stderr and "sac-pd" in r.stderr


def test_a_full_inbox_names_the_real_cause_and_keeps_what_was_stored(tmp_path):
    """Before: SQLite had already rolled back on SQLITE_FULL, the receiver's second ROLLBACK raised
    'cannot rollback - no transaction is active', and that is what the agency was told."""
    inbox = AgencyInbox(tmp_path / "in.db")
    try:
        first = ("read00000000", "7ABC123", "cam-1", "sac-pd", "t", "t", "ca-sb34@1", "allow:x", b"{}")
        assert inbox.add([first], []).stored == 1
        inbox.db.execute(f"PRAGMA max_page_count = {inbox.db.execute('PRAGMA page_count').fetchone()[0]}")
        rows = [(f"read{i:08d}", "7ABC123", "cam-1", "sac-pd", "t", "t", "ca-sb34@1", "allow:x", b"x" * 3000)
                for i in range(1, 50)]
        with pytest.raises(sqlite3.OperationalError, match="full"):
            inbox.add(rows, [])
        assert not inbox.db.in_transaction and inbox.read_ids() == ["read00000000"]
    finally:
        inbox.close()


def test_a_message_that_cannot_be_checked_is_rejected_and_the_rest_stored(tmp_path, monkeypatch):
    """Before: any exception other than SchemaError while checking one message stopped the receiver,
    and the broker handed that message to the next receiver process, which stopped again."""
    from edge.agency import receiver as receiver_module

    real = receiver_module.parse_forwarded

    def flaky(payload, *a, **kw):
        if b"boomboomboom" in payload:
            raise OverflowError("a check that blew up")
        return real(payload, *a, **kw)

    monkeypatch.setattr(receiver_module, "parse_forwarded", flaky)

    class Acks:
        def __init__(self):
            self.acked = []

        def ack(self, mid, qos):
            self.acked.append(mid)

    def read(read_id):
        return make_read("cam-1", "sac-pd", read_id=read_id)

    inbox = AgencyInbox(tmp_path / "in.db")
    rx = AgencyReceiver("sac-pd", transport.parse_broker_url("mqtt://127.0.0.1:9"), inbox)
    rx._client = Acks()  # noqa: SLF001 - the store step without a broker
    try:
        rx._store([(1, 1, "alpr/share/sac-pd/reads", _forward(read("boomboomboom0001"))),  # noqa: SLF001
                   (2, 1, "alpr/share/sac-pd/reads", _forward(read("fine0000fine0001")))])
        assert rx._client.acked == [1, 2]  # noqa: SLF001
        assert inbox.read_ids() == ["fine0000fine0001"]
        assert len(inbox.rejected()) == 1 and "could not be checked" in inbox.rejected()[0]["reason"]
    finally:
        inbox.close()
