"""`alpr-edge audit show` filters and `alpr-edge audit summary`: an auditor's questions (was anything
ever shared with ICE? who got this plate? what was refused, by which rule?) answered from a log the
real gate wrote, through the CLI, on SQLite and PostgreSQL. The expected figures come from the
messages the test fed the gate, not from the log."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES, postgres_or_skip
from edge.policy.audit import PostgresAuditStore, SQLiteAuditStore, open_audit
from edge.policy.audit_query import AuditQueryError, RecordFilter, normalize_plate, parse_time
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.policy.retention import enforce_retention
from edge.transport import mqtt as transport
from test_security_hostile import REGISTRY, FakeClient, base_read

# (camera, plate, days ago): cam-1/cam-2 belong to sac-pd, cam-3 to sac-so (tests/conftest.py)
READS = [("cam-1", "7ABC123", 40), ("cam-2", "6ENX049", 2), ("cam-3", "8XYZ777", 1), ("cam-1", "7ABC123", 0.5)]
FORGED = 2  # a read published on another camera's topic, and a message that is not JSON


def feed(store) -> None:
    """What a gate decides for READS and FORGED, audited in `store` (its forwards go nowhere)."""
    gate = Gate(REGISTRY, load_policy(), transport.parse_broker_url("mqtt://127.0.0.1:9"), store,
                GateConfig(status_every_s=0))
    gate._client = gate._fwd = FakeClient()  # noqa: SLF001 - the gate's handler without a broker
    now = datetime.now(timezone.utc)
    batch = [(i + 1, 1, f"alpr/raw/{cam}", json.dumps(base_read(
        read_id=f"{i:016x}", camera_id=cam, agency_id="sac-so" if cam == "cam-3" else "sac-pd", plate=plate,
        captured_at=(now - timedelta(days=days)).isoformat())).encode()) for i, (cam, plate, days) in enumerate(READS)]
    batch.append((90, 1, "alpr/raw/cam-2", json.dumps(base_read(read_id="f" * 16, camera_id="cam-1", plate="7FAKE00")).encode()))
    batch.append((91, 1, "alpr/raw/cam-1", b'{"plate": '))
    gate.process_batch(batch)
    assert gate.error is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audit_target(request, tmp_path):
    """(CLI target, open store) of an audit log holding what the gate decided for READS and FORGED."""
    if request.param == "sqlite":
        target = str(tmp_path / "audit.db")
        store = SQLiteAuditStore(target, synchronous="OFF")
    else:
        prefix = f"q{uuid.uuid4().hex[:8]}_"
        target = f"{postgres_or_skip()}?table_prefix={prefix}"
        store = open_audit(target)
    feed(store)
    yield target, store
    if isinstance(store, PostgresAuditStore):
        store.drop()
    store.close()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "audit", *args], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])


def shown(*args: str) -> list[dict]:
    r = cli("show", *args, "--limit", "0")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_the_auditors_questions_on_a_log_the_gate_wrote(audit_target):
    target, _store = audit_target
    # Was any read ever shared with a refused agency? No record says so.
    for agency in REFUSED_AGENCIES:
        assert shown(target, "--agency", agency, "--decision", "forward") == []
        assert len(shown(target, "--agency", agency, "--decision", "refuse")) == len(READS) + FORGED
    # Every read went to each allowed agency, by the in-jurisdiction rule.
    for agency in ALLOWED_AGENCIES:
        got = shown(target, "--agency", agency, "--decision", "forward")
        assert [r["plate"] for r in got] == [p for _c, p, _d in READS]
    # A plate typed as people type it; both passes of 7ABC123, oldest first; --last: the newest.
    assert [r["camera_id"] for r in shown(target, "--plate", "7abc-123")] == ["cam-1", "cam-1"]
    newest = shown(target, "--plate", "7ABC 123", "--last", "1")
    assert len(newest) == 1 and newest[0]["read_id"] == f"{3:016x}"
    assert {r["plate"] for r in shown(target, "--owner", "sac-so")} == {"8XYZ777"}
    assert len(shown(target, "--camera", "cam-1", "--outcome", "decided")) == 2
    # Refused whole: the forgery and the broken message, each with its rule.
    rejected = shown(target, "--outcome", "rejected")
    assert sorted(r["detail"].split(": ", 1)[0] for r in rejected) == ["refuse:camera-topic-mismatch", "refuse:malformed"]
    assert len(shown(target, "--rule", "refuse:recipient-kind")) == len(READS)
    assert shown(target, "--since", "1h") != [] and shown(target, "--until", "1h") == []

    r = cli("show", target, "--plate", "8XYZ777", "--brief")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    line = r.stdout.strip()
    assert "cam-3 8XYZ777" in line and "forwarded to sac-pd, sac-so" in line
    assert "ice (refuse:recipient-kind)" in line and "reno-pd (refuse:out-of-jurisdiction)" in line

    r = cli("summary", target, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.splitlines()[-1])
    total = len(READS) + FORGED
    assert (s["records"], s["reads_decided"], s["messages_rejected"]) == (total, len(READS), FORGED)
    assert s["rejected_by_rule"] == {"refuse:camera-topic-mismatch": 1, "refuse:malformed": 1}
    for agency in ALLOWED_AGENCIES:
        assert (s["agencies"][agency]["forwarded"], s["agencies"][agency]["refused"]) == (len(READS), FORGED)
    for agency in REFUSED_AGENCIES:
        assert (s["agencies"][agency]["forwarded"], s["agencies"][agency]["refused"]) == (0, total)
    assert s["agencies"]["ice"]["rules"]["refuse:recipient-kind"] == len(READS)
    assert "ice" in r.stdout.split("\n{")[0]  # the table for people comes before the JSON line


def test_after_retention_a_plate_is_no_longer_found_and_the_summary_says_why(audit_target):
    target, store = audit_target
    enforce_retention(store, max_age_days=30)  # READS[0] was captured 40 days ago
    enforce_retention(store, max_age_days=30)  # a second run empties nothing new
    assert len(shown(target, "--plate", "7ABC123")) == 1  # only the recent pass is left
    s = json.loads(cli("summary", target, "--json").stdout.splitlines()[-1])
    assert s["records_redacted_by_retention"] == 1
    assert s["retention_runs"] == len({r["recorded_at"] for r in shown(target, "--outcome", "retention")}) >= 1
    # the emptied record's decisions stay: what ICE was refused is still on the log
    assert s["agencies"]["ice"]["refused"] == len(READS) + FORGED


@pytest.mark.parametrize("args, named", [
    (["--since", "yesterday"], "--since 'yesterday'"),
    (["--until", "2026-11-28T09:00:00"], "needs a UTC offset"),
    (["--since", "2h", "--until", "3h"], "is not before --until"),
    (["--plate=-"], "--plate '-': no letters or digits"),
    (["--last", "0"], "--last must be 1 or more"),
    (["--decision", "maybe"], "invalid choice"),
])
def test_bad_filters_exit_2_naming_the_option(tmp_path, args, named):
    target = str(tmp_path / "audit.db")
    SQLiteAuditStore(target).close()
    r = cli("show", target, *args)
    assert r.returncode == 2 and named in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_no_database_is_named_and_nothing_is_created(tmp_path):
    missing = tmp_path / "nope.db"
    for verb in ("show", "summary"):
        r = cli(verb, str(missing))
        assert r.returncode == 2 and f"no audit database {missing}" in r.stderr
    assert not missing.exists()


def test_time_forms_and_plate_normalisation():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    assert parse_time("--since", "90m", now) == now - timedelta(minutes=90)
    assert parse_time("--since", "7d", now) == now - timedelta(days=7)
    assert parse_time("--since", "2026-11-27", now) == datetime(2026, 11, 27, tzinfo=timezone.utc)
    assert parse_time("--since", "2026-11-27T10:00Z", now) == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert parse_time("--since", "2026-11-27T10:00-08:00", now) == datetime(2026, 11, 27, 18, tzinfo=timezone.utc)
    with pytest.raises(AuditQueryError, match="--until"):
        parse_time("--until", "tomorrow", now)
    assert normalize_plate(" 7abc-123 ") == "7ABC123"
    with pytest.raises(AuditQueryError, match="--outcome"):
        RecordFilter(outcome="forwarded")


def test_summary_html_report_from_the_log_alone(audit_target, tmp_path):
    import yaml

    from conftest import TEST_REGISTRY

    target, _store = audit_target
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(TEST_REGISTRY))
    page = tmp_path / "report.html"
    r = cli("summary", target, "--html", str(page), "--registry", str(reg))
    assert r.returncode == 0, r.stderr
    html = page.read_text()
    assert "U.S. Immigration and Customs Enforcement" in html and "refuse:recipient-kind x" in html
    assert "not measured" in html and 'id="audit" class="ok"' in html  # no delivery count; chain verified
    assert html.count("<circle") == len(READS)  # one dot per decided read
    assert "Sample frames" not in html
    r = cli("summary", target, "--html", str(tmp_path / "no-such-folder" / "r.html"))
    assert r.returncode == 2 and "--html" in r.stderr and "No such file or directory" in r.stderr


def test_a_retention_run_written_in_chunks_counts_once():
    from edge.policy.audit_query import summarize

    chunk = {"outcome": "retention", "decisions": "[]", "plate": None}
    runs = [dict(chunk, recorded_at="2026-11-28T01:00:00+00:00"), dict(chunk, recorded_at="2026-11-28T01:00:00+00:00"),
            dict(chunk, recorded_at="2026-11-29T01:00:00+00:00")]
    assert summarize(runs)["retention_runs"] == 2
