"""Several gates started at once on a PostgreSQL audit log that does not exist yet (the first start of a
deployment with `--shared-group`, or a gate and `bench gate` on one database).

CREATE TABLE IF NOT EXISTS is not atomic in PostgreSQL: of gates creating the tables together, all
but one stopped at start with 'duplicate key value violates unique constraint
"pg_type_typname_nsp_index"' (every one of 10 tries with 4 gates). The creation is now serialized by
an advisory lock per table prefix.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from edge.policy.audit import PostgresAuditStore, open_audit
from test_gate_retention_replay import PG_DSN, require_postgres


@pytest.mark.postgres
def test_gates_opening_a_new_postgres_audit_log_together_all_start():
    require_postgres()
    for _try in range(3):
        prefix = f"st{uuid.uuid4().hex[:8]}_"
        start = threading.Barrier(4)
        stores, errors = [], []

        def open_as_a_gate():
            start.wait()
            try:
                stores.append(open_audit(f"{PG_DSN}?table_prefix={prefix}"))
            except Exception as err:  # noqa: BLE001 - the test reports it
                errors.append(err)

        threads = [threading.Thread(target=open_as_a_gate) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert not errors, errors[0]
            assert len(stores) == 4 and stores[0].head()[0] == 0 and stores[0].verify().ok
        finally:
            for s in stores:
                s.close()
            cleanup = PostgresAuditStore(PG_DSN, table_prefix=prefix)
            cleanup.drop()
            cleanup.close()
