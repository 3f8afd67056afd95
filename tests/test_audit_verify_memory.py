"""`alpr-edge audit verify` on a large audit log holds a bounded amount in memory (SQLite and PostgreSQL).

Before, on PostgreSQL it fetched every record at once (200,000 records: 463 MB peak), and on both
backends it kept the fields of every record retention had emptied until the end to digest them
(SQLite, 150,000 of 200,000 emptied: 208 MB): a few million records did not fit a gate's machine.
Now PostgreSQL rows stream through a server-side cursor and each retention run's digest is computed
as its records go by (84 and 73 MB for the same logs, most of it the interpreter and libraries).
"""

from __future__ import annotations

import subprocess
import sys

from edge.policy.audit import open_audit
from edge.policy.retention import enforce_retention
from test_audit_retention_concurrent import big_log, fill  # noqa: F401 - big_log is a fixture

PEAK_MB = 100


def test_verify_streams_a_large_log(big_log):  # noqa: F811 - the fixture
    target, store, n = big_log
    res = enforce_retention(store, 45)
    assert res.redacted > n // 2
    code = ("import resource, sys\nfrom edge.cli import main\nstatus = main(['audit', 'verify', sys.argv[1]])\n"
            "print('peak_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\nsys.exit(status)")
    r = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    summary, peak = r.stdout.strip().splitlines()[-2:]
    assert summary.startswith(f"audit chain intact: {n + res.records} records"), summary
    assert int(peak.split()[1]) < PEAK_MB, f"{peak} MB for {n} records"


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
