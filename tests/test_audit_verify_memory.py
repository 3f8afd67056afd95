"""`alpr-edge audit verify` on a large audit log holds a bounded amount in memory (SQLite and PostgreSQL).

Before, on PostgreSQL it fetched every record at once (200,000 records: 463 MB peak), and on both
backends it kept the fields of every record retention had emptied until the end to digest them
(SQLite, 150,000 of 200,000 emptied: 208 MB): a few million records did not fit a gate's machine.
Then it still read the marks of every emptied record into a dict (SQLite: +38 MB over an empty log
for those 200,000). Now the rows and the marks stream (PostgreSQL through server-side cursors), each
retention run's digest is computed as its records go by and the marks are kept as ranges: verify's
peak is that of an empty log (53 MB through the command line, the interpreter and libraries).
"""

from __future__ import annotations

import subprocess
import sys

from edge.policy.audit import open_audit
from edge.policy.retention import enforce_retention
from test_audit_retention_concurrent import big_log, fill  # noqa: F401 - big_log is a fixture

GROWTH_MB = 5  # this code: 0 MB; the marks in a dict: 11 MB for the SQLite log


def verify_peak_mb(target: str) -> tuple[str, int]:
    """`audit verify TARGET` in a fresh interpreter: its summary line and peak memory (MB)."""
    code = ("import resource, sys\nfrom edge.cli import main\nstatus = main(['audit', 'verify', sys.argv[1]])\n"
            "print('peak_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\nsys.exit(status)")
    r = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    summary, peak = r.stdout.strip().splitlines()[-2:]
    return summary, int(peak.split()[1])


def test_verify_streams_a_large_log(big_log, tmp_path):  # noqa: F811 - the fixture
    target, store, n = big_log
    res = enforce_retention(store, 45)
    assert res.redacted > n // 2
    summary, peak = verify_peak_mb(target)
    assert summary.startswith(f"audit chain intact: {n + res.records} records"), summary
    if target.startswith("postgresql://"):
        empty = f"{target}x"  # another table prefix: an empty log, same libraries loaded
        open_audit(empty).close()
    else:
        empty = str(tmp_path / "empty.db")
        open_audit(empty).close()
    try:
        _summary, baseline = verify_peak_mb(empty)
    finally:
        if target.startswith("postgresql://"):
            s = open_audit(empty)
            s.drop()
            s.close()
    assert peak - baseline < GROWTH_MB, f"{peak} MB for {n} records, {baseline} MB for none"


def test_an_edit_after_retention_is_still_caught_when_digests_stream(tmp_path):
    target = str(tmp_path / "audit.db")
    store = open_audit(target)
    fill(store, 30)
    enforce_retention(store, 45, chunk_size=7)
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("UPDATE audit SET gate_id = 'g9' WHERE seq = 3")
    problems = store.verify().problems
    store.close()
    assert any("what is left of the records it redacted was edited" in p for p in problems), problems


def test_marks_that_do_not_match_their_runs_are_caught_when_marks_stream(tmp_path):
    store = open_audit(str(tmp_path / "audit.db"))
    fill(store, 30)
    first = enforce_retention(store, 60, chunk_size=100)  # the 15 or so oldest: one run
    second = enforce_retention(store, 45, chunk_size=100)
    assert first.records == second.records == 1
    c = store.conn
    moved = c.execute("SELECT min(seq) FROM audit_redacted WHERE run_seq = ?", (first.record_seq,)).fetchone()[0]
    c.execute("UPDATE audit_redacted SET run_seq = ? WHERE seq = ?", (second.record_seq, moved))
    c.execute("INSERT INTO audit_redacted VALUES (999, ?)", (second.record_seq,))  # after the last record
    problems = store.verify().problems
    store.close()
    assert any(p.startswith(f"record {moved}: content removed without a retention record") for p in problems), problems
    assert any(p.startswith("record 999: content removed without a retention record") for p in problems), problems
