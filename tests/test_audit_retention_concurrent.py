"""`alpr-edge retention` on a large audit log while a gate keeps appending to it (SQLite and PostgreSQL).

A run read every record into memory and emptied the expired ones in one transaction, holding SQLite's
write lock (PostgreSQL's head row lock) for the whole run: on a log of a few million records that is
past the gate's 30 s busy timeout and the gate stopped with 'database is locked'; memory grew with
the log (300,000 records: 609 MB, 5.4 s under the lock). A run now empties 5,000 records per
transaction, each chunk with its own retention record, reading only the candidates: the gate waits
for one chunk at a time. Here the gate's connection gives up after 1 s instead of 30 s, on a log
whose old-style run took longer than that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from edge.policy.audit import AuditRecord, PostgresAuditStore, open_audit
from edge.policy.retention import enforce_retention
from test_gate_retention_replay import PG_DSN, fake_gate, handle, require_postgres
from test_security_hostile import base_read

DECISIONS = json.dumps([["sac-pd", "forward", "allow:x", "criminal-investigation", "sac-pd"],
                        ["ice", "refuse", "refuse:recipient-kind", "immigration-enforcement", "ice"]])


def fill(store, n: int) -> None:
    """n decided records captured 90 to 31 days ago, as the gate writes them."""
    now = datetime.now(timezone.utc)
    for start in range(0, n, 5000):
        recs = []
        for i in range(start, min(n, start + 5000)):
            t = (now - timedelta(days=90 - 59 * i / n)).isoformat()
            recs.append(AuditRecord(t, "g1", f"cam-1/{i:016x}", f"{i:016x}", "cam-1", "sac-pd", "7ABC123", t,
                                    "alpr/raw/cam-1", "ca-sb34@1", "decided", DECISIONS))
        store.append(recs)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def big_log(request, tmp_path):
    """(target, gate's store whose lock waits give up after 1 s, records in the log)."""
    if request.param == "sqlite":
        target, n = str(tmp_path / "audit.db"), 150_000
    else:
        require_postgres()
        target, n = f"{PG_DSN}?table_prefix=rc{uuid.uuid4().hex[:8]}_", 60_000
    filler = open_audit(target)
    fill(filler, n)
    filler.close()
    store = open_audit(target)
    if request.param == "sqlite":
        store.conn.execute("PRAGMA busy_timeout = 1000")
    else:
        store.conn.execute("SET lock_timeout = '1s'")
        store.conn.commit()
    yield target, store, n
    store.close()
    if request.param == "postgres":
        s = PostgresAuditStore(PG_DSN, table_prefix=target.rsplit("=", 1)[1])
        s.drop()
        s.close()


def test_a_gate_keeps_appending_while_retention_runs_on_a_large_log(big_log):
    target, store, n = big_log
    gate = fake_gate(store)
    errors: list[BaseException] = []
    forwarded: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def keep_appending():
        i = 0
        while not stop.is_set():
            reads = [base_read(read_id=f"live{i:06d}{j:06d}") for j in range(20)]
            sent.extend(r["read_id"] for r in reads)
            try:
                forwarded.extend(handle(gate, *reads))
            except BaseException as err:  # noqa: BLE001 - the test reports it
                errors.append(err)
                return
            i += 1

    appender = threading.Thread(target=keep_appending)
    appender.start()
    try:
        time.sleep(0.3)
        r = subprocess.run([sys.executable, "-m", "edge.cli", "retention", target, "--max-age-days", "30", "--json"],
                           capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        appender.join(60)
    assert not errors, f"the gate's append failed while retention ran: {errors[0]!r}"
    assert gate.error is None
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["redacted"] == n and result["records"] == n // 5000
    assert sorted(forwarded) == sorted(sent * 2) and len(sent) >= 20
    verified = store.verify()
    assert verified.ok, verified.problems[:3]
    assert verified.records == n + result["records"] + len(sent)


def test_retention_in_chunks_lists_holds_and_every_record_once(tmp_path):
    store = open_audit(str(tmp_path / "audit.db"))
    fill(store, 23)
    from edge.policy.retention import Hold, Holds

    holds = Holds(holds=[Hold(read_id=f"{i:016x}", reason="case 7") for i in (0, 4, 22)])
    res = enforce_retention(store, 30, holds, chunk_size=5)
    assert (res.redacted, res.records, res.held) == (20, 4, {"case 7": 3})
    runs = [json.loads(r["detail"]) for r in store.records() if r["outcome"] == "retention"]
    assert [r["count"] for r in runs] == [5, 5, 5, 5] and [r["chunk"] for r in runs] == [1, 2, 3, 4]
    assert len({r["recorded_at"] for r in store.records() if r["outcome"] == "retention"}) == 1  # one run
    assert sum(sum(h.values()) for h in (r["held"] for r in runs)) == 3
    listed = [s for r in runs for a, b in r["redacted"] for s in range(a, b + 1)]
    assert sorted(listed) == [s for s in range(1, 24) if s not in (1, 5, 23)]
    assert store.verify().ok
    again = enforce_retention(store, 30, holds, chunk_size=5)
    assert (again.redacted, again.records, again.already_redacted) == (0, 0, 20)
    store.close()


@pytest.mark.postgres
def test_a_run_after_many_emptied_records_stays_fast_on_postgres():
    """The candidates left out the emptied records with NOT IN (subquery), which PostgreSQL hashes
    only while they fit in work_mem: past that it rescanned them per row (30,000 emptied records
    at work_mem 64kB: 42 s per page of candidates; NOT EXISTS: 0.04 s)."""
    require_postgres()
    prefix = f"rf{uuid.uuid4().hex[:8]}_"
    store = open_audit(f"{PG_DSN}?table_prefix={prefix}")
    try:
        fill(store, 40_000)  # captured 90 to 31 days ago
        first = enforce_retention(store, 60)
        assert first.redacted > 15_000
        store.conn.execute("SET work_mem = '64kB'")  # a large log's emptied records no longer fit
        store.conn.commit()
        started = time.monotonic()
        second = enforce_retention(store, 30)
        took = time.monotonic() - started
        assert second.redacted == 40_000 - first.redacted and second.already_redacted == first.redacted
        assert took < 15, f"{took:.1f} s"
        assert store.verify().ok
    finally:
        store.drop()
        store.close()


def test_a_read_held_for_several_reasons_is_counted_under_all_of_them(tmp_path):
    from edge.policy.retention import Hold, Holds

    store = open_audit(str(tmp_path / "audit.db"))
    fill(store, 4)  # plate 7ABC123, read ids 0000000000000000-...03
    holds = Holds(holds=[Hold(plate="7ABC123", reason="case 1"), Hold(plate="7ABC123", reason="case 2"),
                         Hold(read_id=f"{2:016x}", reason="subpoena 9"), Hold(plate="7ABC123", reason="case 1")])
    res = enforce_retention(store, 30, holds)
    assert res.redacted == 0 and res.held == {"case 1; case 2": 3, "subpoena 9; case 1; case 2": 1}
    store.close()
