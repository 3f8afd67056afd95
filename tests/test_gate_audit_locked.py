"""The gate waits while another writer holds its audit log, instead of stopping (SQLite and PostgreSQL).

A retention run, a second gate or an operator's sqlite3 shell can hold the audit log's write lock;
past SQLite's busy timeout (30 s; PostgreSQL: a lock_timeout, when the DSN or role sets one) the
append failed and the gate stopped with 'database is locked'. An append is one transaction, so a
locked one changed nothing: the gate now tries it again, forwarding and acknowledging nothing until
it is audited. Here the gate's wait gives up after 0.3 s and the lock is held for 2 s.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES
from edge.policy.audit import SQLiteAuditStore, open_audit
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.transport import mqtt as transport
from test_gate_mosquitto import Agencies, make_read, publish, url
from test_gate_retention_replay import PG_DSN, audit_target  # noqa: F401 - audit_target is a fixture


def hold_the_write_lock(target: str, store, seconds: float, held: threading.Event) -> None:
    """Another writer: an open write transaction on the log for `seconds`."""
    if isinstance(store, SQLiteAuditStore):
        c = sqlite3.connect(target, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        c.execute("ROLLBACK")
        c.close()
        return
    with psycopg.connect(PG_DSN) as c:
        c.execute(f"SELECT seq FROM {store.t}audit_head WHERE id = 1 FOR UPDATE")
        held.set()
        time.sleep(seconds)
        c.rollback()


def assert_each_read_reached_each_allowed_agency_once(agencies: Agencies, reads, store, records: int) -> None:
    """After the gate is idle: every allowed agency holds exactly these reads, once each, the refused
    ones nothing, and the audit log verifies with `records` records."""
    time.sleep(0.3)  # anything more (a duplicate, a leak) would have arrived by now
    for a in ALLOWED_AGENCIES:
        assert sorted(agencies.read_ids(a)) == sorted(r.read_id for r in reads), a
    for a in REFUSED_AGENCIES:
        assert agencies.leaks(a) == 0, a
    verified = store.verify()
    assert verified.ok and verified.records == records, verified.problems[:3]


def test_the_gate_waits_out_a_locked_audit_log_and_forwards_every_read_once(mosquitto, audit_target):  # noqa: F811
    store = open_audit(audit_target)
    if isinstance(store, SQLiteAuditStore):
        store.conn.execute("PRAGMA busy_timeout = 300")
    else:
        store.conn.execute("SET lock_timeout = '300ms'")
        store.conn.commit()
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), store, GateConfig(batch_wait_s=0.01)).start()
    agencies = Agencies(mosquitto)
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    try:
        before = [make_read() for _ in range(5)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in before])
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, {r.read_id for r in before}), a
        held = threading.Event()
        locker = threading.Thread(target=hold_the_write_lock, args=(audit_target, store, 2.0, held))
        locker.start()
        assert held.wait(10)
        during = [make_read() for _ in range(20)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in during])
        time.sleep(1.0)
        assert gate.error is None
        assert all(len(agencies.read_ids(a)) == 5 for a in ALLOWED_AGENCIES)  # nothing unaudited goes out
        locker.join()
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, {r.read_id for r in during}), a
        assert gate.wait_idle(25)
        assert_each_read_reached_each_allowed_agency_once(agencies, before + during, store, 25)
        assert gate.error is None
    finally:
        transport.close(cam)
        agencies.stop()
        gate.stop()
        store.close()
