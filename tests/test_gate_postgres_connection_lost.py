"""The gate's PostgreSQL connection lost mid-run (the server restarted, the backend terminated): the gate
fails closed. It stops with the database's error, forwards and acknowledges nothing it could not
audit, and the next gate process, on a new connection, forwards every one of those reads once.
(Found holding when probed; kept as a regression test.)"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from conftest import ALLOWED_AGENCIES
from edge.policy.audit import open_audit
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.transport import mqtt as transport
from test_gate_audit_locked import assert_each_read_reached_each_allowed_agency_once
from test_gate_mosquitto import Agencies, make_read, publish, url
from test_gate_retention_replay import PG_DSN, require_postgres


@pytest.mark.postgres
def test_a_lost_postgres_connection_stops_the_gate_and_the_next_gate_forwards_its_reads(mosquitto):
    require_postgres()
    target = f"{PG_DSN}?table_prefix=cl{uuid.uuid4().hex[:8]}_"
    store = open_audit(target)
    gate = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), store, GateConfig(batch_wait_s=0.01)).start()
    agencies = Agencies(mosquitto)
    cam = transport.connect(url(mosquitto, "cam-1"), "edge-cam-1")
    successor = None
    try:
        before = [make_read() for _ in range(10)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in before])
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, {r.read_id for r in before}), a
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.info.backend_pid,))
        after = [make_read() for _ in range(10)]
        publish(cam, "alpr/raw/cam-1", [r.to_json() for r in after])
        deadline = time.monotonic() + 10
        while gate.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert isinstance(gate.error, psycopg.OperationalError), gate.error
        time.sleep(0.5)
        for a in ALLOWED_AGENCIES:
            assert sorted(agencies.read_ids(a)) == sorted(r.read_id for r in before), a  # nothing unaudited
        gate.stop()
        store.close()
        store = open_audit(target)
        successor = Gate(mosquitto.registry, load_policy(), url(mosquitto, "gate"), store,
                         GateConfig(batch_wait_s=0.01)).start()
        for a in ALLOWED_AGENCIES:
            assert agencies.wait_ids(a, {r.read_id for r in after}), a
        assert_each_read_reached_each_allowed_agency_once(agencies, before + after, store, 20)
    finally:
        if successor is not None:
            successor.stop()
        gate.stop()
        transport.close(cam)
        agencies.stop()
        store.drop()
        store.close()
