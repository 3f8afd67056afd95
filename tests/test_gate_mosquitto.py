"""The gate against a real Mosquitto (free loopback port, logins and ACL generated from the registry)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES, TEST_REGISTRY
from edge.policy.audit import SQLiteAuditStore
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.schema import ReadEvent, new_read_id, parse_forwarded
from edge.transport import mqtt as transport


def make_read(camera_id="cam-1", agency_id="sac-pd", plate="7ABC123", **over) -> ReadEvent:
    d = dict(read_id=new_read_id(), camera_id=camera_id, agency_id=agency_id, captured_at=datetime.now(timezone.utc),
             plate=plate, confidence=0.93, char_confidence=[0.95] * len(plate), box={"x": 10, "y": 20, "w": 120, "h": 40})
    d.update(over)
    return ReadEvent(**d)


def url(broker, who):
    return transport.parse_broker_url(broker.url(who))


class Agencies:
    """Per agency, its one login (the client id the broker binds to it), subscribed to its own topic and
    to '#' (which the dynamic-security plugin refuses at SUBACK: anything arriving off its topic is a leak)."""

    def __init__(self, broker):
        everyone = ALLOWED_AGENCIES | REFUSED_AGENCIES
        self.cols = {a: transport.Collector(url(broker, a), [f"alpr/share/{a}/#", "#"], client_id=f"agency-{a}").start()
                     for a in everyone}
        for a, c in self.cols.items():
            assert transport.suback_refused(c.suback_codes["#"]), a

    def leaks(self, agency) -> int:
        """Messages the agency got that were not for it, or any message at all for a refused agency."""
        got = self.cols[agency].snapshot()
        if agency in REFUSED_AGENCIES:
            return len(got)
        return sum(1 for t, _p in got if t != f"alpr/share/{agency}/reads")

    def read_ids(self, agency) -> list[str]:
        out = []
        for _t, p in self.cols[agency].snapshot():
            msg = json.loads(p)
            out.append(msg["read"]["read_id"])
        return out

    def wait_ids(self, agency, ids: set[str], timeout=20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= set(self.read_ids(agency)):
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        for c in self.cols.values():
            c.stop()


@pytest.fixture
def gate_env(mosquitto, tmp_path):
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), audit, GateConfig(batch_wait_s=0.01)).start()
    agencies = Agencies(mosquitto)
    cam = {c: transport.connect(url(mosquitto, c), f"edge-{c}") for c in ("cam-1", "cam-3")}
    yield mosquitto, gate, audit, agencies, cam
    for c in cam.values():
        transport.close(c)
    agencies.stop()
    gate.stop()
    audit.close()


def publish(client, topic, payloads):
    transport.wait_published([client.publish(topic, p, qos=1) for p in payloads])


def test_in_state_receive_refused_receive_nothing(gate_env):
    broker, gate, audit, agencies, cam = gate_env
    reads_1 = [make_read() for _ in range(30)]
    reads_3 = [make_read("cam-3", "sac-so") for _ in range(20)]
    publish(cam["cam-1"], "alpr/raw/cam-1", [r.to_json() for r in reads_1])
    publish(cam["cam-3"], "alpr/raw/cam-3", [r.to_json() for r in reads_3])
    ids = {r.read_id for r in reads_1 + reads_3}
    for a in ALLOWED_AGENCIES:
        assert agencies.wait_ids(a, ids), a
    assert gate.wait_idle(50)
    time.sleep(0.3)  # anything leaking would have arrived by now
    for a in REFUSED_AGENCIES:
        assert agencies.leaks(a) == 0, a
    # Each allowed agency receives only on its own topic, with the read re-serialized and the rule named.
    for a in ALLOWED_AGENCIES:
        assert agencies.leaks(a) == 0
        assert len(agencies.cols[a].snapshot()) == 50  # each read once ('#' was refused at SUBACK)
        sent = {r.read_id: r for r in reads_1 + reads_3}
        for topic, payload in agencies.cols[a].snapshot():
            assert topic == f"alpr/share/{a}/reads"
            msg = parse_forwarded(payload)  # the gate's template is a valid ForwardedRead
            assert msg.recipient == a and msg.policy == "ca-sb34@1" and msg.rule.startswith("allow:")
            assert msg.read == sent[msg.read.read_id]
    snap = gate.snapshot()
    assert snap["forwarded"] == {"sac-pd": 50, "sac-so": 50}
    assert snap["refused"] == {a: 50 for a in REFUSED_AGENCIES}
    rec = audit.records()
    assert len(rec) == 50 and all(r["outcome"] == "decided" for r in rec)
    decisions = {row[0]: row[1:] for row in json.loads(rec[0]["decisions"])}
    assert decisions["ice"][:2] == ["refuse", "refuse:recipient-kind"]
    assert decisions["task-force"][:2] == ["refuse", "refuse:on-behalf-of"]
    assert decisions["reno-pd"][:2] == ["refuse", "refuse:out-of-jurisdiction"]
    assert decisions["sac-pd"][0] == "forward" and decisions["sac-pd"][2] == "criminal-investigation"
    assert audit.verify().ok


def test_forged_fields_change_nothing_and_bad_messages_are_refused(gate_env):
    broker, gate, audit, agencies, cam = gate_env
    good = make_read(region="NV", location={"lat": 39.53, "lon": -119.81})  # valid fields that hint "Nevada"
    base = json.loads(good.to_json())
    forged_extra = dict(base, read_id=new_read_id(), share_with=["ice"], recipients=["ice"])  # unknown fields
    wrong_camera = make_read("cam-2")  # published on cam-1's topic
    wrong_owner = make_read("cam-1", "ice")  # claims another operating agency
    payloads = [
        json.dumps(forged_extra).encode(),
        wrong_camera.to_json(),
        wrong_owner.to_json(),
        b"\x00\xff not json",
        b"{}",
        b"x" * 20_000,  # over the read schema's 16 KiB limit
        good.to_json(),
    ]
    publish(cam["cam-1"], "alpr/raw/cam-1", payloads)
    assert agencies.wait_ids("sac-pd", {good.read_id})
    assert gate.wait_idle(7)
    time.sleep(0.3)
    for a in ALLOWED_AGENCIES:
        assert agencies.read_ids(a) == [good.read_id], a
    for a in REFUSED_AGENCIES:
        assert agencies.leaks(a) == 0
    snap = gate.snapshot()
    assert snap["rules"] == {"refuse:malformed": 4, "refuse:camera-topic-mismatch": 1, "refuse:agency-mismatch": 1}
    rejected = [r for r in audit.records() if r["outcome"] == "rejected"]
    assert len(rejected) == 6
    assert any("share_with" in r["detail"] for r in rejected)
    assert all(all(d[1] == "refuse" for d in json.loads(r["decisions"])) for r in rejected)
    assert gate.error is None and audit.verify().ok
    # ... and the gate keeps going.
    later = make_read()
    publish(cam["cam-1"], "alpr/raw/cam-1", [later.to_json()])
    assert agencies.wait_ids("sac-so", {later.read_id})


def test_duplicate_read_ids_are_forwarded_once(gate_env):
    broker, gate, audit, agencies, cam = gate_env
    reads = [make_read() for _ in range(20)]
    payloads = [r.to_json() for r in reads]
    publish(cam["cam-1"], "alpr/raw/cam-1", payloads + payloads)  # same batch, likely
    assert gate.wait_idle(40)
    publish(cam["cam-1"], "alpr/raw/cam-1", payloads[:5])  # a later batch: dedup through the audit store
    assert gate.wait_idle(45)
    time.sleep(0.3)
    for a in ALLOWED_AGENCIES:
        ids = agencies.read_ids(a)
        assert sorted(ids) == sorted(r.read_id for r in reads), a
    assert gate.snapshot()["duplicates"] == 25
    assert len(audit.records()) == 20


def test_redelivery_after_a_crash_forwards_what_was_not_acknowledged(gate_env):
    """A gate died after auditing r1 (forwards not acknowledged) and after finishing r2; the broker
    redelivers both to the next gate: r1 is forwarded, r2 is not, neither is audited twice."""
    broker, gate, audit, agencies, cam = gate_env
    r1, r2 = make_read(), make_read()
    left = [gate.decide("alpr/raw/cam-1", r.to_json()).record for r in (r1, r2)]
    audit.append(left)
    audit.append([], done_keys=[f"cam-1/{r2.read_id}"])
    publish(cam["cam-1"], "alpr/raw/cam-1", [r1.to_json(), r2.to_json()])
    for a in ALLOWED_AGENCIES:
        assert agencies.wait_ids(a, {r1.read_id}), a
    assert gate.wait_idle(2)
    time.sleep(0.3)
    for a in ALLOWED_AGENCIES:
        assert agencies.read_ids(a) == [r1.read_id], a
    for a in REFUSED_AGENCIES:
        assert agencies.leaks(a) == 0
    assert audit.head()[0] == 2 and gate.snapshot()["duplicates"] == 2 and audit.verify().ok


def test_unregistered_camera_login_is_refused_by_the_broker(mosquitto):
    bad = transport.parse_broker_url(mosquitto.url()).with_login("cam-9", "guess")
    with pytest.raises(transport.MQTTError, match="refused"):
        transport.connect(bad, "t-cam-9")


def _write_registry(tmp_path: Path) -> Path:
    p = tmp_path / "registry.yaml"
    p.write_text(yaml.safe_dump(TEST_REGISTRY))
    return p


def _start_gate_process(broker, tmp_path, gate_id="g1", extra=()):
    cmd = [sys.executable, "-m", "edge.cli", "gate", "--registry", str(_write_registry(tmp_path)),
           "--broker", broker.url(), "--secrets", str(broker.directory / "secrets"),
           "--audit", str(tmp_path / "audit.db"), "--gate-id", gate_id, "--batch-ms", "10", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # printed once subscribed
    assert line.startswith(f"gate {gate_id}:"), line + proc.stderr.read()
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
    return proc


def test_killed_gate_loses_nothing_and_leaks_nothing(mosquitto, tmp_path):
    gate = _start_gate_process(mosquitto, tmp_path)
    agencies = cam = None
    try:  # from here on: the gate process is stopped whatever fails (it outlived failing runs)
        agencies = Agencies(mosquitto)
        cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
        reads = [make_read() for _ in range(3000)]
        infos = []
        for i, r in enumerate(reads):
            infos.append(cam.publish("alpr/raw/cam-1", r.to_json(), qos=1))
            if i == 1000:
                gate.send_signal(signal.SIGKILL)  # mid-stream: batches decided, audited, forwarded, unacked
                gate.wait()
            if i == 2000:
                gate = _start_gate_process(mosquitto, tmp_path)  # same gate id: same persistent session
            if i % 100 == 0:
                time.sleep(0.02)
        assert transport.wait_published(infos, 20)
        ids = {r.read_id for r in reads}
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, ids, timeout=40), f"{a}: {len(ids - set(agencies.read_ids(a)))} reads lost"
        time.sleep(0.3)
        for a in REFUSED_AGENCIES:
            assert agencies.leaks(a) == 0, a
        # Forwarded again only if killed between publishing forwards and recording them done: at
        # most the batches in flight at the kill.
        for a in ALLOWED_AGENCIES:
            got = agencies.read_ids(a)
            print(f"{a}: {len(got) - len(set(got))} forwarded twice")
            assert len(got) - len(set(got)) <= 1000, a
    finally:
        gate.send_signal(signal.SIGTERM)
        try:
            gate.wait(10)
        except subprocess.TimeoutExpired:
            gate.kill()
            gate.wait()
        if cam is not None:
            transport.close(cam)
        if agencies is not None:
            agencies.stop()
    store = SQLiteAuditStore(tmp_path / "audit.db")
    assert store.verify().ok
    assert store.head()[0] == 3000  # each read audited exactly once despite redeliveries
    store.close()


def _pg_stores(n):
    psycopg = pytest.importorskip("psycopg")
    from edge.policy.audit import PostgresAuditStore

    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"no PostgreSQL at {dsn}: {err}")
    prefix = f"g{uuid.uuid4().hex[:8]}_"
    return [PostgresAuditStore(dsn, table_prefix=prefix) for _ in range(n)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_gates_share_the_load_and_forward_each_read_once(mosquitto, tmp_path, backend):
    if backend == "sqlite":
        stores = [SQLiteAuditStore(tmp_path / "audit.db"), SQLiteAuditStore(tmp_path / "audit.db")]
    else:
        stores = _pg_stores(2)
    gates = [Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), s,
                  GateConfig(gate_id=f"g{i}", shared_group="gates", batch_wait_s=0.01)).start()
             for i, s in enumerate(stores)]
    agencies = Agencies(mosquitto)
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    try:
        reads = [make_read() for _ in range(400)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in reads])
        ids = {r.read_id for r in reads}
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, ids)
        time.sleep(0.3)
        for a in ALLOWED_AGENCIES:
            assert len(agencies.read_ids(a)) == 400
        received = [g.snapshot()["received"] for g in gates]
        assert sum(received) == 400 and min(received) > 0, received
        for a in REFUSED_AGENCIES:
            assert agencies.leaks(a) == 0
        assert stores[0].verify().ok and stores[0].head()[0] == 400
    finally:
        transport.close(cam)
        agencies.stop()
        for g in gates:
            g.stop()
        if backend == "postgres":
            stores[0].drop()  # every table of the log (a list here missed those added since)
        for s in stores:
            s.close()


def test_gate_survives_a_broker_restart(gate_env):
    broker, gate, audit, agencies, cam = gate_env
    before = make_read()
    publish(cam["cam-1"], "alpr/raw/cam-1", [before.to_json()])
    assert agencies.wait_ids("sac-pd", {before.read_id})
    broker.restart()
    after = make_read()
    deadline = time.monotonic() + 15
    while not cam["cam-1"].is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    publish(cam["cam-1"], "alpr/raw/cam-1", [after.to_json()])
    assert agencies.wait_ids("sac-so", {after.read_id}, timeout=15)


def test_verify_acl_reports_every_attempt_refused(mosquitto_factory, tmp_path):
    # acl-file mode: its acl can be edited and reloaded (SIGHUP) under the running broker. The
    # default mode's checks: tests/test_security_dynsec.py.
    mosquitto = mosquitto_factory(auth="acl-file")
    reg = _write_registry(tmp_path)
    cmd = [sys.executable, "-m", "edge.cli", "verify-acl", "--registry", str(reg), "--broker", mosquitto.url(),
           "--secrets", str(mosquitto.directory / "secrets"), "--json", "--policy", "none"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and result["failed"] == 0, result
    assert result["checks"] > 40
    # A broken ACL (the federal agency may read an in-state agency's topic) must be caught.
    acl = mosquitto.directory / "acl"
    acl.write_text(acl.read_text() + "\nuser ice\ntopic read alpr/share/sac-pd/#\n")
    mosquitto.process.send_signal(signal.SIGHUP)  # mosquitto reloads the ACL
    time.sleep(0.5)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1
    assert any(f["principal"] == "ice" and "alpr/share/sac-pd/#" in f["attempt"] for f in result["failures"]), result


def test_gate_status_is_retained_and_says_offline_after_stop(mosquitto, tmp_path):
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), audit,
                GateConfig(gate_id="gs", status_every_s=0.2)).start()
    time.sleep(0.5)
    watcher = transport.Collector(url(mosquitto, "gate"), ["alpr/gate/status/#"], client_id="t-watch").start()
    assert watcher.wait_for(1)
    first = json.loads(watcher.snapshot()[0][1])
    assert first["online"] is True and first["policy"] == "ca-sb34@1" and first["gate_id"] == "gs"
    # An agency cannot read gate status, a camera cannot fake it.
    spy = transport.Collector(url(mosquitto, "sac-pd"), ["alpr/gate/status/#"], client_id="agency-sac-pd").start()
    gate.stop()
    time.sleep(0.3)
    last = json.loads(watcher.snapshot()[-1][1])
    assert last["online"] is False
    assert spy.count() == 0
    watcher.stop()
    spy.stop()
    audit.close()


def test_gate_refuses_to_start_on_a_bad_registry_policy_or_login(mosquitto, tmp_path):
    good = _write_registry(tmp_path)
    base = [sys.executable, "-m", "edge.cli", "gate", "--broker", mosquitto.url(),
            "--secrets", str(mosquitto.directory / "secrets"), "--audit", str(tmp_path / "a.db"), "--run-for", "1"]
    bad_registry = tmp_path / "bad.yaml"
    bad_registry.write_text(yaml.safe_dump({**TEST_REGISTRY, "agencies": [{**TEST_REGISTRY["agencies"][0], "kind": "cartel"}]}))
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("format: 1\npolicy: lax\nversion: 1\nrecipients: {kinds: [everyone], jurisdictions: [CA]}\n")
    wrong_pw = tmp_path / "wrong"
    wrong_pw.mkdir()
    (wrong_pw / "alpr-gate.pw").write_text("not-the-password\n")
    os.chmod(wrong_pw / "alpr-gate.pw", 0o600)  # a secret readable by every user is refused before login
    cases = [
        (["--registry", str(bad_registry)], 2, "agencies.0.kind"),
        (["--registry", str(good), "--policy", str(bad_policy)], 2, "recipients.kinds.0"),
        (["--registry", str(good), "--policy", "no-such-policy"], 2, "no shipped policy"),
        (["--registry", str(good), "--secrets", str(wrong_pw)], 1, "refused login"),
    ]
    for args, code, message in cases:
        r = subprocess.run(base + args, capture_output=True, text=True, timeout=60)
        assert r.returncode == code and message in r.stderr, (args, r.returncode, r.stderr[-1000:])


class _FailingAudit(SQLiteAuditStore):
    def append(self, records, done_keys=(), expire=None):
        raise sqlite3.OperationalError("disk I/O error")


def test_gate_fails_closed_when_the_audit_log_cannot_be_written(mosquitto, tmp_path):
    """No audit, no forward and no acknowledgement: the next gate gets the reads and shares them."""
    agencies = Agencies(mosquitto)
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    broken = _FailingAudit(tmp_path / "broken.db")
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), broken, GateConfig(gate_id="g1")).start()
    try:
        reads = [make_read() for _ in range(20)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in reads])
        deadline = time.monotonic() + 10
        while gate.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert isinstance(gate.error, sqlite3.OperationalError)
        time.sleep(0.3)
        for a in ALLOWED_AGENCIES | REFUSED_AGENCIES:
            assert agencies.cols[a].count() == 0 and agencies.leaks(a) == 0, a
        gate.stop()
        good = SQLiteAuditStore(tmp_path / "audit.db")
        gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), good, GateConfig(gate_id="g1")).start()
        ids = {r.read_id for r in reads}
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, ids), a
        time.sleep(0.3)
        for a in ALLOWED_AGENCIES:
            assert sorted(agencies.read_ids(a)) == sorted(ids)
        for a in REFUSED_AGENCIES:
            assert agencies.leaks(a) == 0
        assert good.verify().records == 20
    finally:
        gate.stop()
        transport.close(cam)
        agencies.stop()


def test_qos2_forwards_stay_under_the_brokers_receive_maximum(test_registry, tmp_path):
    """Mosquitto announces Receive Maximum (its max_inflight_messages) and refuses QoS 2 publishes
    beyond it; paho does not enforce it. A gate batching 500 reads x 2 agencies x 2 batches in
    flight hung here until it sized its batches from the CONNACK."""
    from edge.transport.mosquitto import MosquittoBroker

    broker = MosquittoBroker(test_registry, tmp_path / "small-window",
                             extra_conf={"conf.d/60-small-window.conf": "max_inflight_messages 16\n"}).start()
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(broker.registry, load_policy(), url(broker, "gate"), audit,
                GateConfig(batch_size=500, batch_wait_s=0.05, forward_qos=2)).start()
    agencies = Agencies(broker)
    cam = transport.connect(url(broker, "cam-1"), "edge-cam-1")
    try:
        assert gate._fwd.server_receive_maximum == 16
        assert gate.batch_limit() == (16 - 8) // (2 * len(ALLOWED_AGENCIES))
        reads = [make_read() for _ in range(300)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in reads])
        ids = {r.read_id for r in reads}
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, ids, timeout=60), a
        time.sleep(0.3)
        for a in ALLOWED_AGENCIES:
            assert len(agencies.read_ids(a)) == len(ids), a  # each once
        for a in ALLOWED_AGENCIES | REFUSED_AGENCIES:
            assert agencies.leaks(a) == 0, a
    finally:
        transport.close(cam)
        agencies.stop()
        gate.stop()
        audit.close()
        broker.stop()


def test_gate_config_refuses_a_forward_qos_other_than_1_or_2():
    with pytest.raises(ValueError, match="forward_qos"):
        GateConfig(forward_qos=0)
