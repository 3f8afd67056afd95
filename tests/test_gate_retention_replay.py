"""A read replayed after `alpr-edge retention` removed its key from the audit log is refused, not
forwarded again (SQLite and PostgreSQL).

The gate drops a redelivered read through its audit store (the read's key, camera/read id). Retention
empties the keys of old records, after which the gate could no longer tell that a camera replaying an
old read (same read id, captured long ago, delivered live) had been decided and forwarded already: it
forwarded it a second time. Now each retention run raises the audit log's expiry cut-off and a read
captured before it that is not in the log is refused as `refuse:expired` (audited, counted), decided
in the same transaction as the append so that a retention run committing while the gate decides a
batch is seen. An outage backlog newer than the cut-off is still forwarded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES
from edge.policy.audit import PostgresAuditStore, open_audit
from edge.policy.gate import REJECT_EXPIRED, Gate, GateConfig
from edge.policy.policy import load_policy
from edge.policy.retention import enforce_retention
from edge.transport import mqtt as transport
from test_security_hostile import REGISTRY, FakeClient, base_read

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def days_ago(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


def require_postgres() -> None:
    """Skip the test, saying why, where the test PostgreSQL is not reachable."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN}: {err}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audit_target(request, tmp_path):
    """An audit target (file or DSN) for the CLI and open_audit; PostgreSQL tables dropped after."""
    if request.param == "sqlite":
        yield str(tmp_path / "audit.db")
        return
    require_postgres()
    prefix = f"rp{uuid.uuid4().hex[:8]}_"
    yield f"{PG_DSN}?table_prefix={prefix}"
    s = PostgresAuditStore(PG_DSN, table_prefix=prefix)
    s.drop()
    s.close()


def fake_gate(store) -> Gate:
    g = Gate(REGISTRY, load_policy(), transport.parse_broker_url("mqtt://127.0.0.1:9"), store,
             GateConfig(status_every_s=0))
    g._client = g._fwd = FakeClient()  # noqa: SLF001 - the handler without a broker
    return g


def handle(gate: Gate, *reads: dict) -> list[str]:
    """Process these raw reads as one batch; the read ids forwarded (one per allowed agency)."""
    client: FakeClient = gate._fwd  # noqa: SLF001
    before = len(client.published)
    gate.process_batch([(i + 1, 1, f"alpr/raw/{r['camera_id']}", json.dumps(r).encode()) for i, r in enumerate(reads)])
    assert gate.error is None
    got = [json.loads(p)["read"]["read_id"] for _t, p in client.published[before:]]
    assert {t.split("/")[2] for t, _p in client.published[before:]} <= ALLOWED_AGENCIES
    return got


def read(read_id: str, age_days: float) -> dict:
    return base_read(read_id=read_id, captured_at=days_ago(age_days))


def test_a_replay_of_a_read_retention_emptied_is_refused_and_a_newer_backlog_still_forwarded(audit_target):
    store = open_audit(audit_target)
    gate = fake_gate(store)
    try:
        old, recent = read("old0old0old0old1", 100), read("recent0recent001", 10)
        assert sorted(handle(gate, old, recent)) == sorted([old["read_id"], recent["read_id"]] * 2)
        res = enforce_retention(store, 30)
        assert res.redacted == 1
        # The same old read again (a camera replaying its history): refused, not forwarded again.
        assert handle(gate, old) == []
        refusal = store.records()[-1]
        assert refusal["outcome"] == "rejected" and refusal["detail"].startswith(REJECT_EXPIRED)
        assert refusal["read_key"] == f"cam-1/{old['read_id']}"
        assert all(row[1] == "refuse" and row[2] == REJECT_EXPIRED for row in json.loads(refusal["decisions"]))
        # Newer than the cut-off: a repeat is still a duplicate, a new read of a long outage still goes out.
        assert handle(gate, recent) == []
        backlog = read("backlog0backlog1", 29)
        assert handle(gate, backlog) == [backlog["read_id"]] * 2
        # Never seen, but older than the cut-off: cannot be told from a replay either.
        assert handle(gate, read("never0never0nev1", 31)) == []
        snap = gate.snapshot()
        assert snap["rules"] == {REJECT_EXPIRED: 2}
        assert snap["forwarded"] == {"sac-pd": 3, "sac-so": 3} and snap["duplicates"] == 1
        assert snap["rejected"] == 2 and all(snap["refused"][a] == 5 for a in REFUSED_AGENCIES)
        assert len(gate._client.acked) == 6  # noqa: SLF001 - every message acknowledged
        assert store.verify().ok
    finally:
        store.close()


def test_a_retention_run_committing_while_the_gate_decides_is_seen(audit_target, monkeypatch):
    """Retention commits after the gate decided the replay and before it audits it: the check is in
    the audit transaction, so the replay is still refused."""
    store = open_audit(audit_target)
    gate = fake_gate(store)
    try:
        old = read("race0race0race01", 100)
        assert handle(gate, old) == [old["read_id"]] * 2
        decide = gate.decide

        def decide_then_retention(*args, **kw):
            pending = decide(*args, **kw)
            other = open_audit(audit_target)  # another process's connection, as `alpr-edge retention`
            try:
                assert enforce_retention(other, 30).redacted == 1
            finally:
                other.close()
            return pending

        monkeypatch.setattr(gate, "decide", decide_then_retention)
        assert handle(gate, old) == []
        assert gate.snapshot()["rules"] == {REJECT_EXPIRED: 1}
        assert store.verify().ok
    finally:
        store.close()


def test_a_later_run_with_a_longer_limit_does_not_lower_the_cutoff(audit_target):
    store = open_audit(audit_target)
    gate = fake_gate(store)
    try:
        reads = [read(f"lower0lower0low{i}", 100 - i * 20) for i in range(4)]  # 100, 80, 60, 40 days old
        handle(gate, *reads)
        assert enforce_retention(store, 50).redacted == 3
        handle(gate, read("filler0filler001", 0))
        # 70 days: nothing left to empty beyond 50; and a run with --now in the past
        enforce_retention(store, 70)
        enforce_retention(store, 1, now=datetime.now(timezone.utc) - timedelta(days=200))
        assert handle(gate, reads[2]) == []  # 60 days old, emptied by the 50-day run
        assert gate.snapshot()["rules"] == {REJECT_EXPIRED: 1}
    finally:
        store.close()


def test_an_audit_log_from_before_the_expiry_table_gets_its_cutoff_from_its_retention_records(audit_target):
    """A log whose retention ran before this version: the gate opening it takes the latest cut-off
    from the chain's retention records."""
    store = open_audit(audit_target)
    gate = fake_gate(store)
    old = read("legacy0legacy001", 100)
    handle(gate, old)
    enforce_retention(store, 30)
    prefix = getattr(store, "t", "")
    conn = store.conn
    conn.execute(f"DROP TABLE {prefix}audit_expiry")
    if isinstance(store, PostgresAuditStore):
        conn.commit()
    store.close()
    store = open_audit(audit_target)  # the gate's open (create=True)
    try:
        gate = fake_gate(store)
        assert handle(gate, old) == []
        assert gate.snapshot()["rules"] == {REJECT_EXPIRED: 1}
        assert store.verify().ok
    finally:
        store.close()


def verify_cli(target: str) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", target, "--json"],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def test_audit_verify_catches_a_lowered_or_removed_cutoff(audit_target):
    store = open_audit(audit_target)
    gate = fake_gate(store)
    handle(gate, read("lowered0lowered1", 100))
    enforce_retention(store, 30)
    prefix = getattr(store, "t", "")
    store.close()
    assert verify_cli(audit_target)[0] == 0

    def sql(q):
        s = open_audit(audit_target)
        s.conn.execute(q)
        if isinstance(s, PostgresAuditStore):
            s.conn.commit()
        s.close()

    sql(f"UPDATE {prefix}audit_expiry SET cutoff = '2000-01-01T00:00:00.000000+00:00'")
    code, out = verify_cli(audit_target)
    assert code == 1 and any("expiry cut-off 2000-01-01" in p and "lowered" in p for p in out["problems"]), out
    sql(f"DELETE FROM {prefix}audit_expiry")
    code, out = verify_cli(audit_target)
    assert code == 1 and any("audit_expiry) is missing" in p for p in out["problems"]), out


# -- end to end: real Mosquitto, the retention command run while the gate is up ---------------------------

def test_replay_after_the_retention_command_reaches_no_agency_again(mosquitto, audit_target):
    from test_gate_mosquitto import Agencies, make_read, publish, url

    store = open_audit(audit_target)
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), store, GateConfig(batch_wait_s=0.01)).start()
    agencies = Agencies(mosquitto)
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    try:
        old = make_read(captured_at=datetime.now(timezone.utc) - timedelta(days=90))
        backlog = make_read(captured_at=datetime.now(timezone.utc) - timedelta(days=20))
        publish(cam, "alpr/raw/cam-1", [old.to_json(), backlog.to_json()])
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, {old.read_id, backlog.read_id}), a
        r = subprocess.run([sys.executable, "-m", "edge.cli", "retention", audit_target, "--max-age-days", "60",
                            "--json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout)["redacted"] == 1, r.stderr
        fresh = make_read()
        publish(cam, "alpr/raw/cam-1", [old.to_json(), backlog.to_json(), fresh.to_json()])
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, {fresh.read_id}), a
        assert gate.wait_idle(5)
        time.sleep(0.3)
        for a in ALLOWED_AGENCIES:
            assert sorted(agencies.read_ids(a)) == sorted([old.read_id, backlog.read_id, fresh.read_id]), a
        for a in REFUSED_AGENCIES:
            assert agencies.leaks(a) == 0, a
        snap = gate.snapshot()
        assert snap["rules"] == {REJECT_EXPIRED: 1} and snap["duplicates"] == 1
    finally:
        transport.close(cam)
        agencies.stop()
        gate.stop()
    assert verify_cli(audit_target)[0] == 0
    store.close()


def test_retention_as_of_a_future_now_is_refused_and_changes_nothing(audit_target):
    """`--now` a year ahead (a typo) emptied every read younger than the limit and, through the expiry
    cut-off, would make the gate refuse every live read as refuse:expired for that year."""
    store = open_audit(audit_target)
    gate = fake_gate(store)
    try:
        recent = read("future0future001", 1)
        handle(gate, recent)
        later = (datetime.now(timezone.utc) + timedelta(days=365)).isoformat()
        r = subprocess.run([sys.executable, "-m", "edge.cli", "retention", audit_target, "--max-age-days", "30",
                            "--now", later], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and "--now" in line and "after this machine's clock" in line, line
        live = base_read(read_id="live0live0live01")
        assert handle(gate, live) == [live["read_id"]] * 2
        assert [x["plate"] for x in store.records()] == ["7ABC123", "7ABC123"]
    finally:
        store.close()


def test_a_read_emptied_while_its_forwards_were_in_flight_leaves_no_key_behind(audit_target):
    """The gate notes a read's forwards as done in its next transaction; a retention run in between
    emptied the read (and its `forwarded` row, none yet), after which the note kept the read's key in
    `forwarded` for good: read data past the retention limit, in no retention record."""
    store = open_audit(audit_target)
    gate = fake_gate(store)
    try:
        old = read("inflight0inflig1", 100)
        assert handle(gate, old) == [old["read_id"]] * 2  # forwards acknowledged; noted as done next time
        assert enforce_retention(store, 30).redacted == 1
        handle(gate, read("next0next0next01", 0))
        prefix = getattr(store, "t", "")
        keys = [k for (k,) in store.conn.execute(f"SELECT read_key FROM {prefix}forwarded").fetchall()]
        if isinstance(store, PostgresAuditStore):
            store.conn.commit()
        assert f"cam-1/{old['read_id']}" not in keys, keys
        assert handle(gate, old) == []  # still refused as expired
    finally:
        store.close()
