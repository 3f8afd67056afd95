"""--outbox naming another program's SQLite database is refused at start, and the file left as it was.

An audit log or agency inbox given as the outbox got an outbox table (and WAL mode) added to it;
a database with a table named `outbox` of its own opened, then every read failed ('table outbox
has no column named read_id') while the node blocked the camera as if its disk were full.
"""

from __future__ import annotations

import sqlite3

import pytest

from edge.cli import main
from edge.transport.outbox import Outbox, OutboxError


def _db(path, sql):
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()
    return path


def _tables_and_mode(path):
    db = sqlite3.connect(path)
    try:
        tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return tables, db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()


def test_another_database_is_refused_untouched(tmp_path):
    path = _db(tmp_path / "audit.db", "CREATE TABLE records (seq INTEGER PRIMARY KEY, body TEXT)")
    with pytest.raises(OutboxError, match=r"audit\.db is another database \(tables: records\)"):
        Outbox(path, exclusive=True)
    assert _tables_and_mode(path) == (["records"], "delete")
    Outbox(tmp_path / "mine.db", exclusive=True).close()  # and the lock was given back: a new file opens


def test_a_foreign_outbox_table_is_refused_at_open_not_at_each_read(tmp_path):
    path = _db(tmp_path / "other.db", "CREATE TABLE outbox (x INTEGER)")
    with pytest.raises(OutboxError, match=r"outbox table lacks column\(s\) created, payload, read_id, seq, topic"):
        Outbox(path)


def test_an_outbox_of_our_own_reopens(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.put("alpr/raw/c", b"{}", "r1")
    ob.close()
    again = Outbox(tmp_path / "o.db", exclusive=True)
    assert len(again) == 1
    again.close()


def test_run_exits_2_naming_the_file(tmp_path, capsys):
    path = _db(tmp_path / "inbox.db", "CREATE TABLE reads (read_id TEXT)")
    rc = main(["run", "--source", "synthetic:default?duration=0.2&width=320&height=180", "--camera-id", "c",
               "--agency-id", "a", "--vision", "labels", "--outbox", str(path), "--output-dir", str(tmp_path / "o")])
    assert rc == 2 and "inbox.db is another database (tables: reads)" in capsys.readouterr().err
    assert _tables_and_mode(path) == (["reads"], "delete")
