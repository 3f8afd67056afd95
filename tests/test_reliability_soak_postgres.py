"""The short soak with the gate auditing to PostgreSQL (127.0.0.1:5432, database `test`, tables of
the run's own, dropped after it), a gate kill in the middle: nothing lost, each read audited once,
chain intact. Skipped, with the reason, when PostgreSQL is not reachable."""

from __future__ import annotations

import pytest

from edge.bench.soak import SoakConfig, run_soak

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.postgres
def test_short_soak_with_a_postgresql_audit_and_a_gate_kill(tmp_path):
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN}: {err}")
    cfg = SoakConfig(cameras=3, seconds=15, gate_kill_at=[7.0], outage_s=2.0, camera_procs=1, audit_dsn=PG_DSN)
    r = run_soak(cfg, tmp_path / "soak", log=lambda m: None)
    assert r["produced"] >= 30
    assert r["lost"] == 0 and r["leaked"] == 0, r["per_agency"]
    assert r["audit_ok"] and r["audit_records"] == r["produced"] == r["audited"], r
    with psycopg.connect(PG_DSN) as c:  # the run's tables are gone
        left = c.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'soak%%'").fetchone()[0]
    assert left == 0
