"""The embedded demo broker (amqtt) against Mosquitto on what a persistent session keeps (each case
runs on both brokers, MQTT 3.1.1, the one amqtt speaks):

- a QoS 1 message delivered to a persistent session and not acknowledged is sent again, DUP set,
  when the session resumes (MQTT 3.1.1 4.4): amqtt dropped it from the session when the connection
  closed (or after 5 s without a PUBACK), so an agency receiver that stopped before its commit (or
  a gate before its audit) lost those reads, and `verify-acl`, which takes each agency's session
  without acknowledging anything, consumed the reads queued for a stopped receiver;
- a QoS 0 message is not queued for an offline session, and a delivery's QoS is the lower of the
  publish's and the subscription's: amqtt queued QoS 0 for an offline session and delivered every
  message at the subscription's QoS (a QoS 0 publish came at QoS 1).
"""

from __future__ import annotations

import time

import pytest

from edge.agency.receiver import AgencyInbox, AgencyReceiver
from edge.policy.brokerconf import share_topic
from edge.policy.policy import load_policy
from edge.policy.registry import Secrets, random_secrets
from edge.policy.verify_acl import verify_acl
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


@pytest.mark.parametrize("qos", [1, 2])
def test_acknowledged_deliveries_do_not_come_again(broker, qos):
    url, _registry, _secrets = broker
    got: list = []
    c = transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, clean_start=False,  # paho acknowledges
                          subscriptions=[(TOPIC, qos)], on_message=lambda cl, u, m: got.append((m.payload, m.qos)))
    _publish(url, [b'{"n":1}', b'{"n":2}'], qos=qos)
    assert _wait(lambda: len(got) >= 2), got
    time.sleep(0.3)
    assert got == [(b'{"n":1}', qos), (b'{"n":2}', qos)]
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


def test_verify_acl_leaves_an_offline_agencys_queued_reads(broker, tmp_path):
    url, registry, secrets = broker
    queued = 25
    inbox = AgencyInbox(tmp_path / "sac-pd.db")
    AgencyReceiver("sac-pd", url("sac-pd"), inbox, protocol=V311).start().stop()  # its session exists
    _publish(url, [_forward("sac-pd") for _ in range(queued)])

    checks = verify_acl(registry, url(), secrets, protocol=V311, settle_s=1.0, policy=load_policy())
    failed = [c for c in checks if not c.ok and not c.gap]
    assert not failed, failed

    rx = AgencyReceiver("sac-pd", url("sac-pd"), inbox, protocol=V311).start()
    try:
        assert _wait(lambda: rx.snapshot()["stored"] >= queued), rx.snapshot()
        time.sleep(1.0)
    finally:
        rx.stop()
    assert inbox.count() == queued and inbox.rejected() == [], inbox.rejected()
    inbox.close()


def test_qos0_is_not_queued_for_an_offline_session(broker):
    url, _registry, _secrets = broker
    c = _agency(url, [])
    transport.close(c)  # offline, its QoS 1 subscription kept
    _publish(url, [b'{"qos":0}'], qos=0)
    _publish(url, [b'{"qos":1}'], qos=1)
    got: list = []
    c = _agency(url, got)
    try:
        assert _wait(lambda: got), got
        time.sleep(0.5)
    finally:
        transport.close(c)
    assert got == [(b'{"qos":1}', 1, False)]


@pytest.mark.parametrize("sub_qos,pub_qos,delivered", [(1, 0, 0), (1, 2, 1), (0, 1, 0), (2, 1, 1)])
def test_a_delivery_has_the_lower_of_the_publish_and_subscription_qos(broker, sub_qos, pub_qos, delivered):
    url, _registry, _secrets = broker
    got: list = []
    c = transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, subscriptions=[(TOPIC, sub_qos)],
                          on_message=lambda cl, u, m: got.append((m.payload, m.qos)))
    try:
        _publish(url, [b'{"n":1}'], qos=pub_qos)
        assert _wait(lambda: got), got
    finally:
        transport.close(c)
    assert got == [(b'{"n":1}', delivered)]


def test_an_amqtt_handler_without_the_overridden_internals_is_refused(monkeypatch, test_registry):
    from amqtt.mqtt.protocol.handler import ProtocolHandler

    from edge.transport.embedded import EmbeddedBroker

    monkeypatch.delattr(ProtocolHandler, "_retry_deliveries")
    b = EmbeddedBroker(test_registry, random_secrets(test_registry))
    with pytest.raises(RuntimeError, match=r"lacks _retry_deliveries \(BrokerProtocolHandler\)"):
        b.start()


@pytest.mark.parametrize("sub_qos,pub_qos,delivered", [(1, 0, 0), (0, 1, 0), (1, 1, 1)])
def test_a_retained_message_has_the_lower_of_its_qos_and_the_subscriptions(broker, sub_qos, pub_qos, delivered):
    url, _registry, _secrets = broker
    gate = transport.connect(url("gate"), "redelivery-test-gate", protocol=V311)
    transport.wait_published([gate.publish(TOPIC, b'{"n":1}', qos=pub_qos, retain=True)])
    time.sleep(0.3)
    transport.close(gate)
    got: list = []
    c = transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, subscriptions=[(TOPIC, sub_qos)],
                          on_message=lambda cl, u, m: got.append((m.payload, m.qos, m.retain)))
    try:
        assert _wait(lambda: got), got
        time.sleep(0.3)
    finally:
        transport.close(c)
    assert got == [(b'{"n":1}', delivered, True)]


def _packet(kind: int, body: bytes) -> bytes:
    n, length = len(body), b""
    while True:
        n, digit = n // 128, n % 128
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


def _field(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def _raw_connect(url, client_id: str):
    """A bare MQTT 3.1.1 connection (paho cannot be stopped between PUBREC and PUBREL)."""
    import socket

    s = socket.create_connection((url.host, url.port), timeout=5)
    s.sendall(_packet(0x10, _field(b"MQTT") + bytes([4, 0xC0]) + (30).to_bytes(2, "big") + _field(client_id.encode())
                      + _field(url.username.encode()) + _field(url.password.encode())))  # clean session 0
    assert _read_packet(s)[0] == 0x20
    return s


def _read_packet(s) -> tuple[int, bytes]:
    kind = s.recv(1)[0]
    n, shift = 0, 0
    while True:
        digit = s.recv(1)[0]
        n, shift = n | (digit & 0x7F) << shift, shift + 7
        if not digit & 0x80:
            break
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return kind, body


def test_a_qos2_publish_interrupted_after_pubrec_is_delivered_once_on_its_pubrel(broker):
    """A publisher on a persistent session that lost its connection after PUBREC sends PUBREL again
    on its return (MQTT 3.1.1 4.4): the broker delivers the message then and answers PUBCOMP. (amqtt
    did so by sending PUBREC again on the reconnect and waiting for the PUBREL, a race the PUBREL
    could win, unanswered; the embedded broker now releases the message on the PUBREL itself.)"""
    url, _registry, _secrets = broker
    got: list = []
    sub = transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, subscriptions=[(TOPIC, 1)],
                            on_message=lambda c, u, m: got.append(m.payload))
    try:
        pid = (7).to_bytes(2, "big")
        s = _raw_connect(url("gate"), "raw-qos2-gate")
        s.sendall(_packet(0x34, _field(TOPIC.encode()) + pid + b'{"n":1}'))
        assert _read_packet(s) == (0x50, pid)  # PUBREC
        s.close()
        time.sleep(0.5)
        s = _raw_connect(url("gate"), "raw-qos2-gate")
        s.sendall(_packet(0x62, pid))  # PUBREL
        while (packet := _read_packet(s))[0] != 0x70:  # until PUBCOMP (a broker may send PUBREC again first)
            assert packet == (0x50, pid), packet
        assert packet == (0x70, pid)
        s.close()
        assert _wait(lambda: got, timeout=5), got
        time.sleep(0.5)
        assert got == [b'{"n":1}']
    finally:
        transport.close(sub)


def test_a_pubrel_for_nothing_held_is_answered_pubcomp(broker):
    """A PUBREL for a packet id the broker holds nothing for (sent again after a reconnect, or after
    the embedded broker restarted) is answered PUBCOMP, so the client's QoS 2 flow ends; amqtt did
    not answer."""
    url, _registry, _secrets = broker
    pid = (9).to_bytes(2, "big")
    s = _raw_connect(url("gate"), "raw-qos2-gate")
    try:
        s.sendall(_packet(0x62, pid))
        assert _read_packet(s) == (0x70, pid)
    finally:
        s.close()


def test_at_most_1000_unacknowledged_deliveries_the_rest_follow_the_acks(broker):
    """As broker-config's max_inflight_messages 1000: a client acknowledging nothing gets 1000 and
    the rest wait in its session, sent as it acknowledges (amqtt sent everything; past 65535
    unacknowledged it had no packet id left and dropped the message)."""
    url, _registry, _secrets = broker
    sent = [b'{"n":%d}' % i for i in range(1100)]
    got: list = []
    c = transport.connect(url("sac-pd"), AGENCY_ID, protocol=V311, clean_start=False, manual_ack=True,
                          subscriptions=[(TOPIC, 1)], on_message=lambda cl, u, m: got.append((m.mid, m.payload)))
    try:
        _publish(url, sent)
        assert _wait(lambda: len(got) >= 1000), len(got)
        time.sleep(1.0)
        assert len(got) == 1000
        for mid, _p in list(got):
            c.ack(mid, 1)
        assert _wait(lambda: len(got) >= 1100), len(got)
        time.sleep(0.5)
        assert [p for _m, p in got] == sent  # in order, each once
    finally:
        transport.close(c)
