"""Fail closed, one message at a time: a message the gate cannot decide is refused and audited, and
the reads around it are decided as usual. Before, a read whose capture time fell outside the years
1-9999 once converted to UTC raised OverflowError out of the schema, which stopped the gate; the
broker handed the same message to the next gate process, which stopped again (one camera blocked
every camera's reads)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from conftest import ALLOWED_AGENCIES
from edge.policy import gate as gate_module
from edge.policy.audit import SQLiteAuditStore
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.schema import SchemaError, parse_read
from edge.transport import mqtt as transport
from test_security_hostile import REGISTRY, FakeClient, base_read


@pytest.fixture
def gate():
    tmp = tempfile.TemporaryDirectory()
    store = SQLiteAuditStore(Path(tmp.name) / "audit.db", synchronous="OFF")
    g = Gate(REGISTRY, load_policy(), transport.parse_broker_url("mqtt://127.0.0.1:9"), store,
             GateConfig(status_every_s=0))
    g._client = g._fwd = FakeClient()  # noqa: SLF001 - the handler without a broker
    yield g
    store.close()
    tmp.cleanup()


@pytest.mark.parametrize("captured_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_capture_time_out_of_range_in_utc_is_a_schema_error(captured_at):
    with pytest.raises(SchemaError, match="captured_at"):
        parse_read(json.dumps(base_read(captured_at=captured_at)))


def test_a_read_out_of_range_in_utc_is_refused_and_the_batch_goes_on(gate):
    bad = base_read(read_id="badbadbadbad0001", captured_at="0001-01-01T00:00:00+01:00")
    good = base_read(read_id="goodgoodgood0001")
    gate.process_batch([(1, 1, "alpr/raw/cam-1", json.dumps(bad).encode()),
                        (2, 1, "alpr/raw/cam-1", json.dumps(good).encode())])
    assert gate.error is None
    client: FakeClient = gate._client  # noqa: SLF001
    assert sorted(client.acked) == [1, 2]
    assert {t.split("/")[2] for t, _p in client.published} == ALLOWED_AGENCIES
    assert all(json.loads(p)["read"]["read_id"] == "goodgoodgood0001" for _t, p in client.published)
    recs = gate.audit.records()
    assert [r["outcome"] for r in recs] == ["rejected", "decided"]
    assert recs[0]["detail"].startswith("refuse:malformed") and "captured_at" in recs[0]["detail"]
    assert gate.audit.verify().ok


def test_an_exception_while_deciding_refuses_and_audits_that_message_only(gate, monkeypatch):
    real = gate_module.parse_read

    def flaky(payload, *a, **kw):
        if b"boomboomboom" in payload:
            raise RuntimeError("a bug in a check")
        return real(payload, *a, **kw)

    monkeypatch.setattr(gate_module, "parse_read", flaky)
    gate.process_batch([(1, 1, "alpr/raw/cam-1", json.dumps(base_read(read_id="boomboomboom0001")).encode()),
                        (2, 1, "alpr/raw/cam-3", json.dumps(base_read(read_id="fine0000fine0001", camera_id="cam-3",
                                                                       agency_id="sac-so")).encode())])
    assert gate.error is None
    client: FakeClient = gate._client  # noqa: SLF001
    assert sorted(client.acked) == [1, 2]
    assert [json.loads(p)["read"]["read_id"] for _t, p in client.published] == ["fine0000fine0001"] * 2
    recs = gate.audit.records()
    refused = [r for r in recs if r["outcome"] == "rejected"]
    assert len(refused) == 1 and refused[0]["detail"].startswith("refuse:gate-error") and "a bug" in refused[0]["detail"]
    assert all(row[1] == "refuse" for row in json.loads(refused[0]["decisions"]))
    assert gate.snapshot()["rules"] == {"refuse:gate-error": 1}
