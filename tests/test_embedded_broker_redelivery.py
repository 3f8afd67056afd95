"""The embedded demo broker (amqtt) against Mosquitto on what a persistent session keeps (each case
runs on both brokers, MQTT 3.1.1, the one amqtt speaks):

- a QoS 1 message delivered to a persistent session and not acknowledged is sent again, DUP set,
  when the session resumes (MQTT 3.1.1 4.4): amqtt dropped it from the session when the connection
  closed (or after 5 s without a PUBACK), so an agency receiver that stopped before its commit (or
  a gate before its audit) lost those reads.
"""

from __future__ import annotations

import time

import pytest

from edge.agency.receiver import AgencyInbox, AgencyReceiver
from edge.policy.brokerconf import share_topic
from edge.policy.policy import load_policy
from edge.policy.registry import Secrets, random_secrets
from edge.transport import mqtt as transport
from tests.test_verify_acl_agency_inbox import _forward

V311 = transport.MQTT_V311
TOPIC = share_topic("sac-pd")
AGENCY_ID = "agency-sac-pd"  # the client id sac-pd's login is bound to


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request, test_registry, mosquitto_factory):
    """(url(name) -> BrokerURL for a username or 'gate'; the registry; its secrets)"""
    if request.param == "mosquitto":
        b = mosquitto_factory(policy=load_policy())
        yield (lambda name=None: transport.parse_broker_url(b.url(name))), b.registry, Secrets(b.directory / "secrets")
        return
    from edge.transport.embedded import EmbeddedBroker

    secrets = random_secrets(test_registry)
    by_name = {p.username: p for p in test_registry.principals()}
    by_name["gate"] = test_registry.gate
    b = EmbeddedBroker(test_registry, secrets, policy=load_policy()).start()
    try:
        yield (lambda name=None: b.url(by_name[name] if name else None)), test_registry, secrets
    finally:
        b.stop()


def _wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)
    return cond()


def _publish(url, payloads, qos=1):
    gate = transport.connect(url("gate"), "redelivery-test-gate", protocol=V311)
    try:
        transport.wait_published([gate.publish(TOPIC, p, qos=qos) for p in payloads])
        time.sleep(0.3)  # QoS 0 has no acknowledgement to wait for: let the broker route it
    finally:
        transport.close(gate)


def _agency(url, got):
    """sac-pd on its persistent session, acknowledging nothing; `got` collects (payload, qos, dup)."""
    return transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, clean_start=False, manual_ack=True,
                             subscriptions=[(TOPIC, 1)],
                             on_message=lambda c, u, m: got.append((m.payload, m.qos, bool(m.dup))))


def _drop(client) -> None:
    """The connection ends without a DISCONNECT (a receiver killed)."""
    client.loop_stop()
    client.socket().close()


@pytest.mark.parametrize("ends", ["disconnect", "dropped", "held-6s"])
def test_unacknowledged_qos1_deliveries_come_again_when_the_session_resumes(broker, ends):
    url, _registry, _secrets = broker
    sent = [b'{"n":%d}' % i for i in range(5)]
    got: list = []
    c = _agency(url, got)
    _publish(url, sent)
    assert _wait(lambda: len(got) >= len(sent)), got
    if ends == "held-6s":
        time.sleep(6)  # amqtt gave up on a PUBACK after 5 s and forgot the message
    if ends == "dropped":
        _drop(c)
    else:
        transport.close(c)
    time.sleep(0.3)

    again: list = []
    c = _agency(url, again)
    try:
        assert _wait(lambda: len(again) >= len(sent)), again
        time.sleep(0.3)
        assert sorted(p for p, _q, _d in again) == sorted(sent)
        assert all(q == 1 and dup for _p, q, dup in again), again  # resent: DUP set
    finally:
        transport.close(c)


def test_acknowledged_deliveries_do_not_come_again(broker):
    url, _registry, _secrets = broker
    got: list = []
    c = transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, clean_start=False,  # paho acknowledges
                          subscriptions=[(TOPIC, 1)], on_message=lambda cl, u, m: got.append(m.payload))
    _publish(url, [b'{"n":1}', b'{"n":2}'])
    assert _wait(lambda: len(got) >= 2), got
    time.sleep(0.3)
    transport.close(c)
    again: list = []
    c = _agency(url, again)
    time.sleep(1.0)
    transport.close(c)
    assert again == []


def test_a_receiver_stopped_before_its_commit_gets_the_reads_again(broker, tmp_path):
    url, _registry, _secrets = broker
    inbox = AgencyInbox(tmp_path / "sac-pd.db")
    AgencyReceiver("sac-pd", url("sac-pd"), inbox, protocol=V311).start().stop()  # its session exists

    class Failing(AgencyInbox):
        def add(self, *a, **k):  # a crash before the commit: nothing acknowledged
            raise OSError("disk full")

    failing = Failing(tmp_path / "failing.db")
    rx = AgencyReceiver("sac-pd", url("sac-pd"), failing, protocol=V311).start()
    _publish(url, [_forward("sac-pd") for _ in range(5)])
    assert _wait(lambda: rx.error is not None), "the receiver never failed"
    rx.stop()
    failing.close()

    rx = AgencyReceiver("sac-pd", url("sac-pd"), inbox, protocol=V311).start()
    try:
        assert _wait(lambda: rx.snapshot()["stored"] >= 5), rx.snapshot()
    finally:
        rx.stop()
    assert inbox.count() == 5 and inbox.rejected() == []
    inbox.close()


def test_an_amqtt_handler_without_the_overridden_internals_is_refused(monkeypatch, test_registry):
    from amqtt.mqtt.protocol.handler import ProtocolHandler

    from edge.transport.embedded import EmbeddedBroker

    monkeypatch.delattr(ProtocolHandler, "_retry_deliveries")
    b = EmbeddedBroker(test_registry, random_secrets(test_registry))
    with pytest.raises(RuntimeError, match=r"lacks _retry_deliveries \(BrokerProtocolHandler\)"):
        b.start()
