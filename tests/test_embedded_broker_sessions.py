"""The embedded demo broker (amqtt) against Mosquitto with the dynamic-security plugin, on what a
login must not be able to do to another's session or reads (each case runs on both brokers):

- a CONNECT that fails authentication (wrong password, or a login with a client id not its own)
  leaves the session of the client id it gave alone: amqtt deleted it (clean session) or took it
  over (persistent) before checking the login, so the raw reads queued for an offline gate were lost;
- a will is only published where the login may publish: amqtt sent wills unchecked, so a camera's
  will forged a read on another camera's raw topic and on an agency's share topic (past the gate);
- a retained message reaches only a subscription of the session's own, where its login may read:
  amqtt sent, on every connect, each retained message matching anyone's subscription (a raw read a
  camera retained reached ice, which the policy refuses everything).
"""

from __future__ import annotations

import time

import pytest

from edge.policy.policy import load_policy
from edge.policy.registry import random_secrets
from edge.transport import mqtt as transport

V311 = transport.MQTT_V311


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request, test_registry, mosquitto_factory):
    """url(name) -> BrokerURL for a username, camera or agency id, or 'gate'."""
    if request.param == "mosquitto":
        b = mosquitto_factory(policy=load_policy())
        yield lambda name: transport.parse_broker_url(b.url(name))
        return
    from edge.transport.embedded import EmbeddedBroker

    secrets = random_secrets(test_registry)
    b = EmbeddedBroker(test_registry, secrets, policy=load_policy()).start()
    by_name = {p.username: p for p in test_registry.principals()}
    by_name["gate"] = test_registry.gate
    try:
        yield lambda name: b.url(by_name[name])
    finally:
        b.stop()


def _publish(url, client_id, topic, payloads, retain=False):
    c = transport.connect(url, client_id, protocol=V311)
    transport.wait_published([c.publish(topic, p, qos=1, retain=retain) for p in payloads])
    transport.close(c)


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("intruder", ["wrong-password", "ice", "ice-persistent"])
def test_a_refused_connect_leaves_the_gates_session_and_its_queued_reads(broker, intruder):
    gate = transport.connect(broker("gate"), "alpr-gate-g1", protocol=V311, clean_start=False,
                             subscriptions=[("alpr/raw/#", 1)])
    transport.close(gate)  # offline: its session queues the raw reads
    _publish(broker("cam-1"), "edge-cam-1", "alpr/raw/cam-1", [b'{"n":0}', b'{"n":1}'])
    time.sleep(0.2)
    url = broker("gate").with_login("alpr-gate", "not-the-password") if intruder == "wrong-password" else broker("ice")
    with pytest.raises(transport.MQTTError, match="[Nn]ot authori[sz]ed"):
        transport.connect(url, "alpr-gate-g1", protocol=V311, clean_start=intruder != "ice-persistent", timeout=5)
    time.sleep(0.2)
    _publish(broker("cam-1"), "edge-cam-1", "alpr/raw/cam-1", [b'{"n":2}'])
    got = []
    gate = transport.connect(broker("gate"), "alpr-gate-g1", protocol=V311, clean_start=False,
                             on_message=lambda c, u, m: got.append(m.payload))
    try:
        assert _wait(lambda: len(got) >= 3), got
        time.sleep(0.2)
        assert sorted(got) == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    finally:
        transport.close(gate)


@pytest.mark.parametrize("topic", ["alpr/raw/cam-1", "alpr/share/sac-pd/reads"])
def test_a_will_on_a_topic_the_login_may_not_publish_to_is_dropped(broker, topic):
    got = []
    watchers = [transport.connect(broker("gate"), "alpr-gate-watch", protocol=V311, subscriptions=[("alpr/raw/#", 1)],
                                  on_message=lambda c, u, m: got.append((m.topic, m.payload))),
                transport.connect(broker("sac-pd"), "agency-sac-pd", protocol=V311,
                                  subscriptions=[("alpr/share/sac-pd/reads", 1)],
                                  on_message=lambda c, u, m: got.append((m.topic, m.payload)))]
    try:
        c = transport.connect(broker("cam-2"), "edge-cam-2", protocol=V311, will=(topic, b'{"forged":1}', 1, True))
        c.loop_stop()
        c.socket().close()  # gone without DISCONNECT: the broker sends the will, if it may
        # The control: a will on the camera's own raw topic is sent.
        c = transport.connect(broker("cam-2"), "edge-cam-2", protocol=V311,
                              will=("alpr/raw/cam-2", b'{"offline":1}', 1, False))
        c.loop_stop()
        c.socket().close()
        assert _wait(lambda: ("alpr/raw/cam-2", b'{"offline":1}') in got)
        time.sleep(0.3)
        assert got == [("alpr/raw/cam-2", b'{"offline":1}')]
        # Nor was it retained: new subscribers to the raw and share topics get nothing.
        transport.close(watchers.pop(1))
        for who, cid, sub in (("gate", "alpr-gate-late", "alpr/raw/#"), ("sac-pd", "agency-sac-pd", "alpr/share/sac-pd/reads")):
            watchers.append(transport.connect(broker(who), cid, protocol=V311, subscriptions=[(sub, 1)],
                                              on_message=lambda cl, u, m: got.append((m.topic, m.payload))))
        time.sleep(0.5)
        assert got == [("alpr/raw/cam-2", b'{"offline":1}')]
    finally:
        for w in watchers:
            transport.close(w)


def test_a_retained_raw_read_reaches_no_agency(broker):
    gate = transport.connect(broker("gate"), "alpr-gate-g1", protocol=V311, subscriptions=[("alpr/raw/#", 1)])
    try:
        _publish(broker("cam-1"), "edge-cam-1", "alpr/raw/cam-1", [b'{"retained":1}'], retain=True)
        got: dict[str, list] = {"ice": [], "sac-pd": []}
        agencies = [transport.connect(broker(a), f"agency-{a}", protocol=V311,
                                      subscriptions=[(f"alpr/share/{a}/reads", 1)] if a == "sac-pd" else [],
                                      on_message=lambda c, u, m, a=a: got[a].append(m.topic)) for a in got]
        time.sleep(1.0)
        for c in agencies:
            transport.close(c)
        assert got == {"ice": [], "sac-pd": []}
    finally:
        transport.close(gate)


def test_reads_queued_while_the_gate_was_offline_are_forwarded_not_refused_as_retained(broker, tmp_path, test_registry):
    """amqtt delivered what it queued for an offline persistent session with the retain flag set, so
    the gate refused every raw read queued while it was down (refuse:retained) instead of deciding it."""
    from datetime import datetime, timezone

    from edge.policy.audit import SQLiteAuditStore
    from edge.policy.gate import Gate, GateConfig
    from edge.schema import ReadEvent, new_read_id

    audit = SQLiteAuditStore(tmp_path / "audit.db")
    cfg = GateConfig(gate_id="g-q", protocol=V311, status_every_s=0)
    Gate(test_registry, load_policy(), broker("gate"), audit, cfg).start().stop()  # its session, then offline
    reads = [ReadEvent(read_id=new_read_id(), camera_id="cam-1", agency_id="sac-pd", captured_at=datetime.now(timezone.utc),
                       plate="7ABC123", confidence=0.9, char_confidence=[0.9] * 7, box={"x": 1, "y": 1, "w": 40, "h": 20})
             for _ in range(3)]
    _publish(broker("cam-1"), "edge-cam-1", "alpr/raw/cam-1", [r.to_json() for r in reads])
    time.sleep(0.3)
    gate = Gate(test_registry, load_policy(), broker("gate"), audit, cfg).start()
    try:
        assert gate.wait_idle(3, timeout=15)
        outcomes = sorted((r["read_id"], r["outcome"], (r["detail"] or "").split(":")[0]) for r in audit.records())
        assert outcomes == sorted((r.read_id, "decided", "") for r in reads), outcomes
    finally:
        gate.stop()
        audit.close()


def test_an_amqtt_without_the_overridden_internals_is_refused(monkeypatch, test_registry):
    """The safeguards override amqtt 0.12's Broker methods: an amqtt without them would never call
    the overrides, so the embedded broker refuses to start rather than run without them."""
    from amqtt.broker import Broker

    from edge.transport.embedded import EmbeddedBroker

    monkeypatch.delattr(Broker, "_initialize_client_session")
    b = EmbeddedBroker(test_registry, random_secrets(test_registry))
    with pytest.raises(RuntimeError, match="lacks _initialize_client_session"):
        b.start()
