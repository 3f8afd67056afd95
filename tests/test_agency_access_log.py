"""`alpr-edge agency search` and `agency access-log`: an agency searches its inbox only as a named
user for a purpose the policy allows, and every search, answered or refused, is on a hash-chained
access log (SB 34, Civil Code 1798.90.52). Through the CLI, on an inbox the receiver's own store
wrote."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tamper_sqlite
from edge.agency.receiver import AgencyInbox

ROOT = Path(__file__).resolve().parents[1]
# (read id, plate, captured_at)
READS = [("r1", "7ABC123", "2026-11-20T10:00:00+00:00"), ("r2", "7ABC123", "2026-11-27T10:00:00+00:00"),
         ("r3", "7ABD999", "2026-11-27T11:00:00+00:00"), ("r4", "5XYZ001", "2026-11-27T12:00:00+00:00")]


@pytest.fixture
def inbox(tmp_path) -> Path:
    path = tmp_path / "inbox-oakland-pd.db"
    box = AgencyInbox(path)
    box.add([(rid, plate, "oak-cam-1", "oakland-pd", t, t, "ca-sb34@1", "allow:in-jurisdiction-public-agency", b"{}")
              for rid, plate, t in READS], [])
    box.close()
    return path


def agency(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "agency", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def search(inbox: Path, *args: str) -> tuple[int, dict]:
    r = agency("search", str(inbox), "--user", "sgt-doe", "--json", *args)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout.splitlines()[-1])


def log_entries(inbox: Path) -> list[dict]:
    r = agency("access-log", str(inbox), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()[:-1]]


def test_allowed_searches_answer_and_are_logged_with_who_why_and_what(inbox):
    rc, out = search(inbox, "--plate", "7abc-123", "--purpose", "stolen-vehicle-recovery", "--reference", "CASE-42")
    assert rc == 0 and [r["read_id"] for r in out["reads"]] == ["r1", "r2"]
    rc, out = search(inbox, "--plate", "7AB*", "--purpose", "criminal-investigation", "--since", "2026-11-27")
    assert rc == 0 and [r["read_id"] for r in out["reads"]] == ["r2", "r3"]
    rc, out = search(inbox, "--plate", "9NONE00", "--purpose", "missing-person")
    assert rc == 0 and out["reads"] == []  # a search that finds nothing is an access too
    entries = log_entries(inbox)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    first = entries[0]
    assert (first["user"], first["purpose"], first["reference"], first["outcome"]) == (
        "sgt-doe", "stolen-vehicle-recovery", "CASE-42", "answered")
    assert json.loads(first["query"])["plate"] == "7ABC123" and json.loads(first["read_ids"]) == ["r1", "r2"]
    assert entries[2]["results"] == 0


@pytest.mark.parametrize("args, reason", [
    (["--purpose", "immigration-enforcement"], "California Values Act"),
    (["--purpose", "curiosity"], "not one the policy ca-sb34@1 allows"),
    (["--purpose", "criminal-investigation", "--on-behalf-of", "ice", "--registry", "demo"], "ice is a federal agency"),
    (["--purpose", "criminal-investigation", "--on-behalf-of", "reno-pd", "--registry", "demo"], "reno-pd is in NV"),
    (["--purpose", "criminal-investigation", "--on-behalf-of", "dea", "--registry", "demo"], "not an agency in the registry"),
])
def test_refused_searches_return_nothing_exit_1_and_are_logged(inbox, args, reason):
    rc, out = search(inbox, "--plate", "7ABC123", *args)
    assert rc == 1 and not out["allowed"] and out["reads"] == [] and reason in out["reason"]
    (entry,) = log_entries(inbox)
    assert entry["outcome"] == "refused" and reason in entry["detail"] and entry["results"] == 0
    assert json.loads(entry["read_ids"]) == []


def test_on_behalf_of_a_california_agency_is_answered(inbox):
    rc, out = search(inbox, "--plate", "7ABC123", "--purpose", "criminal-investigation",
                     "--on-behalf-of", "alameda-so", "--registry", "demo")
    assert rc == 0 and len(out["reads"]) == 2
    assert log_entries(inbox)[0]["on_behalf_of"] == "alameda-so"


@pytest.mark.parametrize("sql, problem", [
    (["UPDATE access_log SET purpose = 'criminal-investigation' WHERE seq = 1"], "entry 1: edited"),
    (["DELETE FROM access_log WHERE seq = 1"], "entry 1: missing"),
    (["DELETE FROM access_log WHERE seq = 2"], "the chain ends at entry 1 but the head says 2"),
    (["DELETE FROM access_log"], "the chain ends at entry 0 but the head says 2"),
])
def test_the_access_log_is_append_only_and_tampering_shows(inbox, sql, problem):
    search(inbox, "--plate", "7ABC123", "--purpose", "immigration-enforcement")
    search(inbox, "--plate", "7ABC123", "--purpose", "criminal-investigation")
    c = sqlite3.connect(inbox)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        c.execute("DELETE FROM access_log WHERE seq = 1")
    c.close()
    tamper_sqlite(inbox, "access_log", *sql)
    r = agency("access-log", str(inbox), "--json")
    check = json.loads(r.stdout.splitlines()[-1])
    assert r.returncode == 1 and not check["ok"] and any(problem in p for p in check["problems"]), check


@pytest.mark.parametrize("args, named", [
    (["--plate", "*", "--user", "x", "--purpose", "criminal-investigation"], "--plate '*'"),
    (["--plate", "7ABC;1", "--user", "x", "--purpose", "criminal-investigation"], "--plate '7ABC;1'"),
    (["--plate", "7ABC123", "--user", " ", "--purpose", "criminal-investigation"], "--user: required"),
    (["--plate", "7ABC123", "--user", "x", "--purpose", "criminal-investigation", "--on-behalf-of", "ice"],
     "--on-behalf-of needs --registry"),
    (["--plate", "7ABC123", "--user", "x", "--purpose", "criminal-investigation", "--since", "last week"], "--since"),
])
def test_bad_input_exits_2_naming_it_and_logs_nothing(inbox, args, named):
    r = agency("search", str(inbox), *args)
    assert r.returncode == 2 and named in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert log_entries(inbox) == []


def test_no_inbox_is_named_and_not_created(tmp_path):
    missing = tmp_path / "nope.db"
    r = agency("search", str(missing), "--plate", "7ABC123", "--user", "x", "--purpose", "criminal-investigation")
    assert r.returncode == 2 and f"{missing}: no agency inbox" in r.stderr
    assert not missing.exists()
