"""Shared fixtures.

MQTT: tests run against a real Mosquitto started on a free loopback port (never the system broker's
1883), configured by `broker-config` from a test registry, with its own logins and ACL.

    def test_x(mosquitto):                   # one broker for the test, stopped after it
        user, pw = mosquitto.credentials("sac-pd")   # agency/camera id, username or "gate"
        url = mosquitto.url("gate")          # mqtt://alpr-gate:...@127.0.0.1:PORT
        mosquitto.restart()                  # same port, persistence kept (sessions, queued QoS 1)

    def test_y(mosquitto_factory, tmp_path):  # several brokers, or another registry
        broker = mosquitto_factory(registry=my_registry)
        broker = mosquitto_factory(name="b2", auth="acl-file")  # passwd + acl instead of the plugin
        broker = mosquitto_factory(name="b3", policy=load_policy())  # agencies the policy refuses: no rights
    (Without a policy every agency may read its own share topic: the gate alone refuses, as tested.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.policy.registry import Registry, parse_registry

TEST_REGISTRY = {
    "version": 1,
    "gate": {"username": "alpr-gate", "credentials": "file:alpr-gate.pw", "client_id": "alpr-gate"},
    "cameras": [
        {"id": "cam-1", "agency": "sac-pd", "username": "cam-1", "credentials": "file:cam-1.pw"},
        {"id": "cam-2", "agency": "sac-pd", "username": "cam-2", "credentials": "file:cam-2.pw"},
        {"id": "cam-3", "agency": "sac-so", "username": "cam-3", "credentials": "file:cam-3.pw"},
    ],
    "agencies": [
        {"id": "sac-pd", "name": "Sacramento Police Department", "kind": "local", "jurisdiction": "CA",
         "purpose": "criminal-investigation", "username": "sac-pd", "credentials": "file:sac-pd.pw"},
        {"id": "sac-so", "name": "Sacramento County Sheriff", "kind": "local", "jurisdiction": "CA",
         "purpose": "stolen-vehicle-recovery", "username": "sac-so", "credentials": "file:sac-so.pw"},
        {"id": "reno-pd", "name": "Reno Police Department", "kind": "local", "jurisdiction": "NV",
         "purpose": "criminal-investigation", "username": "reno-pd", "credentials": "file:reno-pd.pw"},
        {"id": "ice", "name": "U.S. Immigration and Customs Enforcement", "kind": "federal", "jurisdiction": "DC",
         "purpose": "immigration-enforcement", "username": "ice", "credentials": "file:ice.pw"},
        {"id": "task-force", "name": "State task force (for ICE)", "kind": "state", "jurisdiction": "CA",
         "purpose": "criminal-investigation", "on_behalf_of": "ice", "username": "task-force",
         "credentials": "file:task-force.pw"},
    ],
}
ALLOWED_AGENCIES = {"sac-pd", "sac-so"}
REFUSED_AGENCIES = {"reno-pd", "ice", "task-force"}


@pytest.fixture
def test_registry() -> Registry:
    return parse_registry(TEST_REGISTRY, "tests/conftest.py")


@pytest.fixture
def mosquitto_factory(tmp_path: Path, test_registry: Registry):
    """`factory(registry=None, name="broker") -> MosquittoBroker` (started); all stopped after the test."""
    from edge.transport.mosquitto import MosquittoBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: scripts/test installs it (Debian package 'mosquitto')")
    started: list[MosquittoBroker] = []

    def factory(registry: Registry | None = None, name: str = "broker", auth: str = "dynsec",
                policy=None) -> MosquittoBroker:
        broker = MosquittoBroker(registry or test_registry, tmp_path / name, auth=auth, policy=policy)
        started.append(broker)
        return broker.start()

    yield factory
    for b in started:
        b.stop()


@pytest.fixture
def mosquitto(mosquitto_factory):
    return mosquitto_factory()


PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"  # the PostgreSQL beside this machine's tests


def postgres_or_skip(dsn: str = PG_DSN) -> str:
    """`dsn`, once a connection to it works; otherwise the test is skipped with the reason (no psycopg,
    or no server: PostgreSQL is optional, SQLite is the default audit store)."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL not reachable at {dsn}: {err}")
    return dsn


def tamper_sqlite(path, table: str, *sql: str) -> None:
    """Run `sql` on the SQLite file as someone with write access to it would: first dropping the
    triggers that make `table` append-only (<table>_no_update, <table>_no_delete)."""
    import sqlite3

    c = sqlite3.connect(path)
    c.execute(f"DROP TRIGGER {table}_no_update")
    c.execute(f"DROP TRIGGER {table}_no_delete")
    for q in sql:
        c.execute(q)
    c.commit()
    c.close()
