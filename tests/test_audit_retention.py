"""Retention of read data in the audit log, and tamper detection by `alpr-edge audit verify`, on SQLite
and PostgreSQL alike (PostgreSQL: 127.0.0.1:5432, database `test`, tables with a unique prefix per
test, dropped after it; skipped with the reason when the server is not reachable).

Retention removes the read data (plate, read id, capture time) of records older than the limit
unless a hold names them, appends a `retention` record that accounts for it, and leaves a chain
that still verifies; emptying, editing or un-marking any record afterwards is still detected.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from edge.policy.audit import AuditRecord, PostgresAuditStore, SQLiteAuditStore, open_audit
from edge.policy.retention import Hold, Holds, RetentionError, enforce_retention, load_holds

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def rec(i: int, days_old: float, plate: str | None = None, outcome: str = "decided") -> AuditRecord:
    captured = (NOW - timedelta(days=days_old)).isoformat()
    return AuditRecord(
        recorded_at=captured, gate_id="g1", read_key=f"cam-1/read{i:08d}", read_id=f"read{i:08d}", camera_id="cam-1",
        operating_agency="sac-pd", plate=plate or f"7ABC{i % 1000:03d}", captured_at=captured, topic="alpr/raw/cam-1",
        policy="ca-sb34@1", outcome=outcome,
        decisions=json.dumps([["sac-pd", "forward", "allow:x", "criminal-investigation", "sac-pd"],
                              ["ice", "refuse", "refuse:recipient-kind", "immigration-enforcement", "ice"]]),
        detail=None if outcome == "decided" else "refuse:malformed: field 'plate'")


def fill(store) -> None:
    # 1-10: 100 days old (3 of them: held plate 7HOLD01), 11-15: 10 days old, 16: 45 days old and rejected
    store.append([rec(i, 100, plate="7HOLD01" if i in (2, 5, 7) else None) for i in range(1, 11)])
    store.append([rec(i, 10) for i in range(11, 16)])
    store.append([rec(16, 45, outcome="rejected")], done_keys=["cam-1/read00000001"])


HOLDS = Holds(holds=[Hold(plate="7HOLD01", reason="case 2026-00042"), Hold(read_id="read00000015", reason="subpoena")])


# -- backends -----------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_store(tmp_path):
    s = SQLiteAuditStore(tmp_path / "audit.db")
    yield s
    s.close()


@pytest.fixture
def pg_target():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN}: {err}")
    prefix = f"ret{uuid.uuid4().hex[:8]}_"
    yield f"{PG_DSN}?table_prefix={prefix}", prefix
    s = PostgresAuditStore(PG_DSN, table_prefix=prefix)
    s.drop()
    s.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    """(target for the CLI, open store, function running SQL as an attacker with table access)."""
    if request.param == "sqlite":
        path = str(tmp_path / "audit.db")
        store = SQLiteAuditStore(path)

        def attack(*sql):
            c = sqlite3.connect(path)
            c.execute("DROP TRIGGER IF EXISTS audit_no_update")
            c.execute("DROP TRIGGER IF EXISTS audit_no_delete")
            for q in sql:
                c.execute(q.replace("{t}", ""))
            c.commit()
            c.close()

        yield path, store, attack
        store.close()
    else:
        target, prefix = request.getfixturevalue("pg_target")
        store = open_audit(target)

        def attack(*sql):
            import psycopg

            with psycopg.connect(PG_DSN) as c:
                for q in sql:
                    c.execute(q.replace("{t}", prefix))

        yield target, store, attack
        store.close()


def verify_cli(target: str) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", target, "--json"],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


# -- tamper detection through the CLI, both backends --------------------------------------------------

@pytest.mark.parametrize("sql, expect", [
    (["UPDATE {t}audit SET plate = 'EDITED1' WHERE seq = 4"], "record 4: content"),
    (["UPDATE {t}audit SET decisions = replace(decisions, 'refuse', 'forward') WHERE seq = 12"], "record 12: content"),
    (["DELETE FROM {t}audit WHERE seq = 8"], "record 9"),
    (["DELETE FROM {t}audit WHERE seq = 16"], "removed at the end"),
    (["UPDATE {t}audit SET seq = -1 WHERE seq = 3", "UPDATE {t}audit SET seq = 3 WHERE seq = 6",
      "UPDATE {t}audit SET seq = 6 WHERE seq = -1"], "record 3"),
    (["UPDATE {t}audit SET recorded_at = '2026-01-01T00:00:00+00:00' WHERE seq = 1"], "record 1: content"),
])
def test_edit_delete_reorder_detected_by_audit_verify(backend, sql, expect):
    target, store, attack = backend
    fill(store)
    code, out = verify_cli(target)
    assert code == 0 and out["ok"] and out["records"] == 16
    attack(*sql)
    code, out = verify_cli(target)
    assert code == 1 and not out["ok"]
    assert any(expect in p for p in out["problems"]), out["problems"]


# -- retention ---------------------------------------------------------------------------------------

def test_retention_removes_old_read_data_keeps_held_and_recent_and_is_audited(backend):
    target, store, _attack = backend
    fill(store)
    res = enforce_retention(store, 30, HOLDS, now=NOW)
    assert res.redacted == 8  # 7 old decided (10 minus 3 held) + the 45-day-old rejected one
    assert res.held == {"case 2026-00042": 3}
    assert res.record_seq == 17
    rows = {r["seq"]: r for r in store.records()}
    for s in (1, 3, 4, 6, 8, 9, 10, 16):
        r = rows[s]
        assert r["plate"] is None and r["read_id"] is None and r["captured_at"] is None and r["read_key"] is None
        assert r["camera_id"] == "cam-1" and "forward" in r["decisions"]  # the access-log skeleton stays
    for s in (2, 5, 7):
        assert rows[s]["plate"] == "7HOLD01"
    for s in range(11, 16):
        assert rows[s]["plate"] is not None
    run = rows[17]
    assert run["outcome"] == "retention"
    detail = json.loads(run["detail"])
    assert detail["redacted"] == [[1, 1], [3, 4], [6, 6], [8, 10], [16, 16]] and detail["count"] == 8
    assert detail["held"] == {"case 2026-00042": 3} and "plate" in detail["fields_removed"]
    code, out = verify_cli(target)
    assert code == 0 and out["ok"] and out["records"] == 17, out
    # A second run finds nothing more to do and appends nothing; the gate keeps appending after it.
    again = enforce_retention(store, 30, HOLDS, now=NOW)
    assert again.redacted == 0 and again.record_seq is None and again.already_redacted == 8
    store.append([rec(20, 0)])
    assert store.verify().ok and store.verify().records == 18


@pytest.mark.parametrize("sql, expect", [
    # what is left of a redacted record edited afterwards
    (["UPDATE {t}audit SET decisions = replace(decisions, 'refuse', 'forward') WHERE seq = 3"], "was edited"),
    # a record emptied by hand and marked as if retention had done it
    (["UPDATE {t}audit SET plate = NULL, read_id = NULL WHERE seq = 12", "INSERT INTO {t}audit_redacted VALUES (12, 17)"],
     "record 12: content removed without a retention record"),
    # a redacted record un-marked
    (["DELETE FROM {t}audit_redacted WHERE seq = 4"], "record 4: content does not match"),
    # the retention record itself edited (e.g. to hide what it removed)
    (["UPDATE {t}audit SET detail = replace(detail, '\"count\":8', '\"count\":7') WHERE seq = 17"], "record 17: content"),
])
def test_tampering_after_retention_is_detected(backend, sql, expect):
    target, store, attack = backend
    fill(store)
    enforce_retention(store, 30, HOLDS, now=NOW)
    attack(*sql)
    code, out = verify_cli(target)
    assert code == 1, out
    assert any(expect in p for p in out["problems"]), out["problems"]


def test_retention_cli_with_holds_file(tmp_path):
    path = tmp_path / "audit.db"
    store = SQLiteAuditStore(path)
    fill(store)
    store.close()
    holds = tmp_path / "holds.yaml"
    holds.write_text(yaml.safe_dump({"holds": [{"plate": "7HOLD01", "reason": "case 2026-00042"}]}))
    base = [sys.executable, "-m", "edge.cli", "retention", str(path), "--max-age-days", "30", "--now", NOW.isoformat()]
    r = subprocess.run(base + ["--holds", str(holds), "--dry-run", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["redacted"] == 8 and json.loads(r.stdout)["record_seq"] is None
    r = subprocess.run(base + ["--holds", str(holds)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "removed the read data of 8 record(s)" in r.stdout and "case 2026-00042: 3" in r.stdout
    assert verify_cli(str(path))[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"holds": [{"plate": "7HOLD01"}]}))  # no reason given
    r = subprocess.run(base + ["--holds", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "reason" in r.stderr


def test_holds_validation():
    with pytest.raises(RetentionError, match="exactly one"):
        load_holds_from({"holds": [{"plate": "7ABC123", "read_id": "read00000001", "reason": "both named"}]})
    with pytest.raises(RetentionError, match="plate"):
        load_holds_from({"holds": [{"plate": "7abc/#", "reason": "bad plate"}]})
    with pytest.raises(RetentionError, match="unknown field"):
        load_holds_from({"holds": [{"plate": "7ABC123", "reason": "x" * 5, "expires": "never"}]})
    with pytest.raises(RetentionError, match="positive"):
        enforce_retention(None, 0)


def load_holds_from(data, _tmp=[]):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "h.yaml"
        p.write_text(yaml.safe_dump(data))
        return load_holds(p)


# -- verify on a live log, and on what is not (or no longer) an audit log -----------------------------

def test_verify_while_a_gate_appends_is_not_a_false_alarm(backend):
    """Before: verify read the rows, then the head in another transaction; whatever a gate appended
    in between showed up as 'records removed at the end' (every run on a live log)."""
    import threading
    import time

    target, store, _attack = backend
    store.append([rec(i, 1) for i in range(1, 1501)])
    writer = open_audit(target)
    stop = threading.Event()
    appended = []

    def gate():
        i = 100_000
        while not stop.is_set():
            writer.append([rec(i, 0)])
            appended.append(i)
            i += 1

    t = threading.Thread(target=gate)
    t.start()
    try:
        results = []
        deadline = time.monotonic() + 30
        while (len(results) < 5 or len(appended) < 50) and time.monotonic() < deadline:
            results.append(store.verify())
        assert len(appended) >= 50  # the gate kept appending while verify ran
    finally:
        stop.set()
        t.join()
        writer.close()
    assert all(r.ok for r in results), [r.problems[:2] for r in results]
    assert results[-1].records > 1500


@pytest.mark.parametrize("sql", [
    ["DELETE FROM {t}audit", "DELETE FROM {t}audit_head"],  # everything removed, head included
    ["DROP TABLE {t}audit", "DROP TABLE {t}audit_head"],
])
def test_a_wiped_audit_log_does_not_verify(backend, sql):
    """Before: verify created the missing tables and head row (genesis) and said 'intact: 0 records'."""
    target, store, attack = backend
    fill(store)
    attack(*sql)
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", target],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout
    assert "intact" not in r.stdout
    assert "head row is missing" in r.stdout or "not an audit log" in r.stderr or "no audit log" in r.stderr


def test_verify_show_and_retention_change_nothing_in_a_file_that_is_not_an_audit_log(tmp_path):
    """Before: `audit verify other.db` added the audit tables to it and said 'intact: 0 records'
    (exit 0); `audit show missing.db` created an empty audit log."""
    other = tmp_path / "outbox.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    for cmd in (["audit", "verify", str(other)], ["audit", "show", str(other)],
                ["retention", str(other), "--max-age-days", "30"]):
        r = subprocess.run([sys.executable, "-m", "edge.cli", *cmd], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "intact" not in r.stdout, (cmd, r.stdout)
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(f"alpr-edge {cmd[0]}") and ": error: " in line and "not an audit log" in line
        assert "Traceback" not in r.stderr
    c = sqlite3.connect(other)
    assert [n for (n,) in c.execute("SELECT name FROM sqlite_master")] == ["t"]
    c.close()
    missing = tmp_path / "missing.db"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "show", str(missing)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "missing.db" in r.stderr and not missing.exists()


@pytest.mark.parametrize("args", [["--max-age-days", "inf"], ["--max-age-days", "nan"], ["--max-age-days", "1e10"],
                                  ["--max-age-days", "1", "--now", "0001-01-01T00:00:00+00:00"]])
def test_retention_out_of_range_ages_are_one_error_line(tmp_path, args):
    """Before: inf, 1e10 and a cut-off before year 1 ended in an OverflowError traceback, nan in
    'cannot convert float NaN to integer'."""
    path = tmp_path / "audit.db"
    store = SQLiteAuditStore(path)
    fill(store)
    store.close()
    r = subprocess.run([sys.executable, "-m", "edge.cli", "retention", str(path), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alpr-edge retention") and "max_age_days" in lines[0]
    code, out = verify_cli(str(path))  # nothing changed
    assert code == 0 and out["records"] == 16


def _rewrite_from(store, first: int, plate: str, last: int | None = None) -> list[str]:
    """An attacker's SQL: edit record `first`, recompute every later hash (dropping records after
    `last`) and update the head, so that the chain alone verifies."""
    from edge.policy.audit import _FIELDS, record_hash

    rows = [r for r in store.records() if last is None or r["seq"] <= last]
    sql, prev = [], None
    for r in rows:
        if r["seq"] < first:
            prev = r["hash"]
            continue
        if r["seq"] == first:
            r["plate"] = plate
        h = record_hash(prev, r["seq"], [r[f] for f in _FIELDS])
        sql.append(f"UPDATE {{t}}audit SET plate = '{r['plate']}', prev_hash = '{prev}', hash = '{h}' WHERE seq = {r['seq']}")
        prev = h
    if last is not None:
        sql.append(f"DELETE FROM {{t}}audit WHERE seq > {last}")
    sql.append(f"UPDATE {{t}}audit_head SET seq = {rows[-1]['seq']}, hash = '{prev}' WHERE id = 1")
    return sql


def test_an_anchored_head_catches_a_rewritten_chain(backend):
    """The chain alone cannot show a rewrite from an edited record onwards; a head noted earlier can.
    Before, `audit verify` had no way to check one (the docs say: publish the head elsewhere)."""
    target, store, attack = backend
    fill(store)
    code, out = verify_cli(target)
    assert code == 0
    anchor = f"{out['records']}:{out['head']}"
    attack(*_rewrite_from(store, 5, "7EDITED"))
    assert verify_cli(target)[0] == 0  # undetectable without an anchor
    for a in (anchor, f"{out['records']}:{out['head'][:16]}"):
        r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", target, "--anchor", a],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "record 16" in r.stdout and "rewritten" in r.stdout, r.stdout + r.stderr


def test_an_anchored_record_cut_off_is_caught(backend):
    target, store, attack = backend
    fill(store)
    head = store.head()
    attack(*_rewrite_from(store, 12, "7EDITED", last=12))  # records 13-16 dropped, chain re-sealed at 12
    assert verify_cli(target)[0] == 0
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", target, "--json",
                        "--anchor", f"{head[0]}:{head[1]}"], capture_output=True, text=True, timeout=60)
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["problems"] == ["record 16: anchored but not in the chain (removed)"]


@pytest.mark.parametrize("anchor", ["16", "x:abc", "0:" + "a" * 64, "16:" + "a" * 15, "16:" + "g" * 64])
def test_a_malformed_anchor_is_one_error_line(tmp_path, anchor):
    path = tmp_path / "audit.db"
    SQLiteAuditStore(path).close()
    r = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", str(path), "--anchor", anchor],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--anchor" in r.stderr
