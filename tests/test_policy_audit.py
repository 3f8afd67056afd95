"""The hash-chained audit log: any edited, removed, inserted or reordered record is detected."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid

import pytest

from conftest import tamper_sqlite
from edge.policy.audit import AuditRecord, PostgresAuditStore, SQLiteAuditStore


def rec(i: int, key: str | None = "auto") -> AuditRecord:
    if key == "auto":
        key = f"cam-1/read{i:08d}"
    return AuditRecord(
        recorded_at=f"2026-11-26T12:00:{i % 60:02d}+00:00", gate_id="g1", read_key=key, read_id=f"read{i:08d}",
        camera_id="cam-1", operating_agency="sac-pd", plate=f"7ABC{i % 1000:03d}",
        captured_at="2026-11-26T11:59:59+00:00", topic="alpr/raw/cam-1", policy="ca-sb34@1", outcome="decided",
        decisions=json.dumps([["sac-pd", "forward", "allow:x", "criminal-investigation", "sac-pd"],
                              ["ice", "refuse", "refuse:recipient-kind", "immigration-enforcement", "ice"]]),
    )


@pytest.fixture
def store(tmp_path):
    s = SQLiteAuditStore(tmp_path / "audit.db")
    s.append([rec(i) for i in range(1, 11)])
    s.append([rec(i) for i in range(11, 21)])
    yield s
    s.close()


def tamper(path, *sql):
    tamper_sqlite(path, "audit", *sql)


def test_intact_chain_verifies(store):
    r = store.verify()
    assert r.ok and r.records == 20 and store.head() == (20, r.head)


def test_append_only_at_the_database(store):
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("UPDATE audit SET plate = 'X' WHERE seq = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("DELETE FROM audit WHERE seq = 3")


@pytest.mark.parametrize(
    "sql, expect",
    [
        (["UPDATE audit SET plate = 'EDITED1' WHERE seq = 5"], "record 5: content does not match"),
        (["UPDATE audit SET decisions = replace(decisions, 'refuse', 'forward') WHERE seq = 7"], "record 7: content"),
        (["DELETE FROM audit WHERE seq = 9"], "record 10"),
        (["DELETE FROM audit WHERE seq = 20"], "records removed at the end"),
        # reorder: swap the contents of two records (keeping each one's own hash)
        (["UPDATE audit SET seq = -1 WHERE seq = 3", "UPDATE audit SET seq = 3 WHERE seq = 4",
          "UPDATE audit SET seq = 4 WHERE seq = -1"], "record 3"),
    ],
)
def test_tampering_is_detected(store, sql, expect):
    tamper(store.path, *sql)
    r = store.verify()
    assert not r.ok
    assert any(expect in p for p in r.problems), r.problems


def test_rehashing_one_record_still_breaks_the_link(store):
    """An editor who recomputes the edited record's own hash breaks the next record's link."""
    from edge.policy.audit import _FIELDS, record_hash

    c = sqlite3.connect(store.path)
    row = c.execute(f"SELECT prev_hash, {', '.join(_FIELDS)} FROM audit WHERE seq = 5").fetchone()
    values = list(row[1:])
    values[_FIELDS.index("plate")] = "EDITED1"
    new_hash = record_hash(row[0], 5, values)
    c.close()
    tamper(store.path, f"UPDATE audit SET plate = 'EDITED1', hash = '{new_hash}' WHERE seq = 5")
    r = store.verify()
    assert not r.ok and any("record 6: previous-hash link" in p for p in r.problems)


def test_dedup_and_forward_bookkeeping(store):
    res = store.append([rec(5), rec(21)], done_keys=["cam-1/read00000003"])
    assert res.inserted == 1
    assert set(res.already) == {"cam-1/read00000005"}
    assert res.already["cam-1/read00000005"][1] is False
    res = store.append([rec(3), rec(4)])
    assert res.inserted == 0 and res.already["cam-1/read00000003"][1] is True
    # Records without a key (unparseable messages) are never deduplicated.
    res = store.append([rec(0, key=None), rec(0, key=None)])
    assert res.inserted == 2
    assert store.verify().ok and store.verify().records == 23


def test_cli_verify(store, tmp_path):
    cmd = [sys.executable, "-m", "edge.cli", "audit", "verify", store.path, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["records"] == 20
    tamper(store.path, "UPDATE audit SET plate = 'EDITED1' WHERE seq = 2")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and not json.loads(r.stdout)["ok"]
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", str(tmp_path / "none.db")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no audit database" in r.stderr


PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_store():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_DSN, connect_timeout=2).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"no PostgreSQL at {PG_DSN}: {err}")
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    s = PostgresAuditStore(PG_DSN, table_prefix=prefix)
    yield s
    s.drop()  # every table of the log (a list here missed those added since)
    s.close()


@pytest.mark.postgres
def test_postgres_store_chain_dedup_and_tamper(pg_store):
    other = PostgresAuditStore(PG_DSN, table_prefix=pg_store.t)  # a second gate on the same chain
    try:
        pg_store.append([rec(i) for i in range(1, 6)])
        res = other.append([rec(4), rec(6), rec(7)], done_keys=["cam-1/read00000001"])
        assert res.inserted == 2 and set(res.already) == {"cam-1/read00000004"}
        r = pg_store.verify()
        assert r.ok and r.records == 7
        with pg_store.conn.transaction():
            pg_store.conn.execute(f"UPDATE {pg_store.t}audit SET plate = 'EDITED1' WHERE seq = 6")
        r = other.verify()
        assert not r.ok and any("record 6" in p for p in r.problems)
    finally:
        other.close()


@pytest.mark.postgres
def test_open_audit_postgres_table_prefix(pg_store):
    from edge.policy.audit import open_audit

    pg_store.append([rec(1), rec(2)])
    store = open_audit(f"{PG_DSN}?table_prefix={pg_store.t}")
    try:
        assert isinstance(store, PostgresAuditStore) and store.t == pg_store.t
        assert store.verify().records == 2
    finally:
        store.close()
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", f"{PG_DSN}?table_prefix={pg_store.t}"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "intact: 2 records" in r.stdout
    with pytest.raises(ValueError, match="table_prefix"):
        open_audit(f"{PG_DSN}?table_prefix=x;drop")
