"""`alpr-edge verify-acl`: log in as each principal and try what it must not do.

Each agency tries to subscribe to every other agency's share topic, to `alpr/raw/#` and to `#`,
and to publish a forged read on a camera's raw topic and on share topics. Each camera tries to
publish on another camera's topic and to subscribe to raw and share topics. A login with a wrong
password and an anonymous login are tried too.

A refused SUBACK or PUBACK counts as refused. A granted subscription is not yet a leak (Mosquitto's
acl_file grants `#` and filters delivery per message; the dynamic-security plugin refuses it): marked canary messages are then published with the
gate's and cameras' own logins on every share and raw topic, and whatever reaches a principal
outside its own topic is a leak. Each agency must receive the canary on its own topic (so "nothing
received" is not vacuous). Forged publishes are watched by a monitor logged in as the gate (raw
topics) and by every login's own connection (an agency's share topic has no other reader).
Canaries carry {"canary": true, "by": "alpr-edge verify-acl"} and go at QoS 0, so Mosquitto queues
them for no session: an agency's receiver never finds one in its session (its inbox's `rejected`
table lists only real problems) and a gate offline never audits one; a running gate audits the raw
ones as malformed. The embedded broker behaves the same (it queues no QoS 0 for an offline session).

Identity: every camera and agency login also tries to connect with a client id of the gate's form
(`<gate client_id>-verify-...`). A broker configured with `--auth dynsec` refuses it (client ids
are bound to logins); one with the acl_file accepts it, which is reported as a GAP (not a failure:
a known limit of that mode, README), because with such a client id a login could take over a gate's session.
On a broker that refuses some subscription at SUBACK (so not in acl-file mode), an accepted one is a
failure: that login's client id binding is missing.

Each principal logs in with the client id the dynamic-security plugin binds to it (`edge-<camera>`,
`agency-<agency>`), so run it with the cameras stopped: a running edge node with that id and the
check would disconnect each other (a login whose connection drops during the check is a failure
naming its client id: what was seen for it is incomplete). An agency is checked on its own persistent session without
acknowledging anything, so reads queued for a stopped receiver stay queued for it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import paho.mqtt.client as mqtt

from edge.policy.brokerconf import RAW_PREFIX, SHARE_PREFIX, bound_client_id, raw_topic, refused_agencies, share_topic
from edge.policy.registry import Registry, Secrets
from edge.schema import ReadEvent, new_read_id
from edge.transport import mqtt as transport


@dataclass(frozen=True)
class Check:
    principal: str
    attempt: str
    ok: bool  # refused as it must be (or, for a control, worked as it must)
    how: str
    gap: bool = False  # not refused, but a documented gap of the broker's mode (not counted as a failure)


def _topic_matches(filter_: str, topic: str) -> bool:
    f, t = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def _forged_read(camera_id: str, agency_id: str) -> bytes:
    return ReadEvent(
        read_id=new_read_id(), camera_id=camera_id, agency_id=agency_id, captured_at=datetime.now(timezone.utc),
        plate="FORGED1", confidence=0.99, char_confidence=[0.99] * 7, box={"x": 1, "y": 1, "w": 10, "h": 5},
    ).to_json()


def verify_acl(registry: Registry, broker: transport.BrokerURL, secrets: Secrets,
               protocol: int = transport.MQTT_V5, settle_s: float = 1.0, policy=None) -> list[Check]:
    """`policy` (a loaded Policy, as given to broker-config): an agency it refuses for every camera
    owner must get nothing, not even the canary on its own share topic."""
    checks: list[Check] = []
    run = uuid.uuid4().hex[:8]
    refused = refused_agencies(registry, policy) if policy is not None else frozenset()
    policy_label = policy.label if policy is not None else ""

    def login(principal):
        return broker.with_login(principal.username, secrets.password(principal))

    # Logins that must fail.
    for label, url in (("anonymous login", broker.with_login(None, None)),
                       ("wrong password", broker.with_login(registry.gate.username, "not-the-password-" + run))):
        try:
            c = transport.connect(url, f"verify-acl-{run}-{label.split()[0]}", protocol=protocol, timeout=5)
            transport.close(c)
            checks.append(Check("-", label, False, "ACCEPTED"))
        except transport.MQTTError as err:
            checks.append(Check("-", label, True, f"connect refused ({str(err).split(': ')[-1]})"))

    # Identity: a camera or agency login with a client id of the gate's form.
    accepted_ids: list[int] = []  # those checks that were accepted (GAP, or FAIL: see below)
    for p in [*registry.cameras, *registry.agencies]:
        try:
            c = transport.connect(login(p), f"{registry.gate.client_id}-verify-{run}", protocol=protocol, timeout=5)
            transport.close(c)
            accepted_ids.append(len(checks))
            checks.append(Check(p.username, "connect with a gate client id", False,
                                "ACCEPTED: client ids are not bound to logins (acl-file mode; --auth dynsec binds them)",
                                gap=True))
        except transport.MQTTError as err:
            checks.append(Check(p.username, "connect with a gate client id", True,
                                f"connect refused ({str(err).split(': ')[-1]})"))

    # Monitor with the gate's login: sees every raw and share message (forged publishes that got in).
    monitor = transport.Collector(login(registry.gate), [f"{RAW_PREFIX}/#", f"{SHARE_PREFIX}/#"],
                                  client_id=f"verify-acl-{run}-monitor", protocol=protocol).start()
    subscribers: dict[str, transport.Collector] = {}
    try:
        for a in registry.agencies:
            forbidden = [share_topic(o.id).rsplit("/", 1)[0] + "/#" for o in registry.agencies if o.id != a.id]
            topics = [f"{SHARE_PREFIX}/{a.id}/#", *forbidden, f"{RAW_PREFIX}/#", f"$share/verify-{run}/{RAW_PREFIX}/#", "#"]
            col = _Login(login(a), topics, bound_client_id(registry, a), protocol, persistent=True).start()
            subscribers[a.username] = col
            for t in topics[1:]:
                code = col.suback_codes.get(t)
                if code is not None and transport.suback_refused(code):
                    checks.append(Check(a.username, f"subscribe {t}", True, f"SUBACK {code}"))
        for cam in registry.cameras:
            topics = [f"{RAW_PREFIX}/#", f"{SHARE_PREFIX}/#", f"$share/verify-{run}/{RAW_PREFIX}/#"]
            col = _Login(login(cam), topics, bound_client_id(registry, cam), protocol).start()
            subscribers[cam.username] = col
            for t in topics:
                code = col.suback_codes.get(t)
                if code is not None and transport.suback_refused(code):
                    checks.append(Check(cam.username, f"subscribe {t}", True, f"SUBACK {code}"))

        # An accepted foreign client id is the acl-file mode's documented gap only on a broker that
        # does not check subscriptions either: one that refused a subscription at SUBACK is not in
        # that mode (the dynamic-security plugin), so a login it lets use another client id has lost
        # its binding (a hand-edited or stale dynamic-security.json): a failure, not a GAP.
        if any(c.ok and c.attempt.startswith("subscribe ") and c.how.startswith("SUBACK") for c in checks):
            for i in accepted_ids:
                checks[i] = replace(checks[i], gap=False, how=(
                    "ACCEPTED, though this broker checks subscriptions (not acl-file mode): this login's client "
                    "id is not bound (its 'clientid' in dynamic-security.json); regenerate with broker-config"))

        # Forged publishes: agencies on raw and share topics, cameras on other cameras' topics.
        forged: list[tuple[str, str, bytes]] = []  # (username, topic, payload)
        first_cam = registry.cameras[0] if registry.cameras else None
        for a in registry.agencies:
            if first_cam:
                forged.append((a.username, raw_topic(first_cam.id), _forged_read(first_cam.id, first_cam.agency)))
            for o in registry.agencies:
                forged.append((a.username, share_topic(o.id), json.dumps({"forged": True, "by": a.id}).encode()))
        for cam in registry.cameras:
            for other in registry.cameras:
                if other.id != cam.id:
                    forged.append((cam.username, raw_topic(other.id), _forged_read(other.id, other.agency)))
            forged.append((cam.username, share_topic(registry.agencies[0].id),
                           json.dumps({"forged": True, "by": cam.id}).encode()))
        principals = {p.username: p for p in registry.principals()}
        by_user: dict[str, list[tuple[str, bytes]]] = {}
        for user, topic, payload in forged:
            by_user.setdefault(user, []).append((topic, payload))
        puback: dict[tuple[str, str], str] = {}
        for user, items in by_user.items():
            codes: dict[int, object] = {}

            def on_publish(c, userdata, mid, reason_code, properties, codes=codes):
                codes[mid] = reason_code

            client = subscribers[user].client  # the login's one connection (its client id is bound)
            client.on_publish = on_publish
            mids = []
            for topic, payload in items:
                info = client.publish(topic, payload, qos=1)
                mids.append((topic, info))
            transport.wait_published([i for _t, i in mids], timeout=5)
            for topic, info in mids:
                rc = codes.get(info.mid)
                puback[(user, topic)] = str(rc) if rc is not None else "?"
                if rc is not None and hasattr(rc, "is_failure") and rc.is_failure:
                    puback[(user, topic)] = f"refused: PUBACK {rc}"

        # Canaries with the rightful publishers: each share topic (gate) and each raw topic (camera).
        # At QoS 0: Mosquitto hands them to the sessions connected now (this check's logins) and
        # queues them for none. At QoS 1 an agency's canary stayed in its persistent session (the check
        # acknowledges nothing there) and its receiver, started again, kept it in the inbox's
        # `rejected` table as a malformed read; a gate offline then audited a raw one on its return.
        # The embedded broker does the same (no QoS 0 queued for an offline session; what it delivers
        # at QoS 1 stays in the session until acknowledged, as in Mosquitto).
        canary = json.dumps({"canary": True, "by": "alpr-edge verify-acl", "run": run}).encode()
        gate_client = transport.connect(login(registry.gate), f"verify-acl-{run}-gate", protocol=protocol)
        try:
            transport.wait_published([gate_client.publish(share_topic(a.id), canary, qos=0) for a in registry.agencies])
            for cam in registry.cameras:
                c = subscribers[cam.username].client
                transport.wait_published([c.publish(raw_topic(cam.id), canary, qos=0)])
            time.sleep(settle_s)
        finally:
            # not before the settle time: a QoS 0 message just sent is lost by a broker that handles
            # the publisher's DISCONNECT first (amqtt: the last agency's canary never arrived)
            transport.close(gate_client)

        # What the monitor saw (it logs in as the gate, which may not read share topics) and what every
        # login's own connection received: a forged share message is seen by its agency alone.
        monitor_seen = monitor.snapshot() + [m for col in subscribers.values() for m in col.snapshot()]
        for user, topic, payload in forged:
            arrived = any(t == topic and p == payload for t, p in monitor_seen)  # each forgery is unique
            how = puback.get((user, topic), "?")
            if arrived:
                checks.append(Check(user, f"publish forged message on {topic}", False, "DELIVERED to subscribers"))
            else:
                checks.append(Check(user, f"publish forged message on {topic}", True,
                                    how if how.startswith("refused") else "dropped by the broker (never delivered)"))

        for a in registry.agencies:
            col = subscribers[a.username]
            own = f"{SHARE_PREFIX}/{a.id}/"
            received = col.snapshot()
            leaks = [t for t, _p in received if not t.startswith(own)]
            got_own = any(t.startswith(own) and b'"canary"' in p for t, p in received)
            if a.id in refused:
                code = col.suback_codes.get(f"{SHARE_PREFIX}/{a.id}/#")
                on_own = [t for t, _p in received if t.startswith(own)]
                how = (f"SUBACK {code}" if code is not None and transport.suback_refused(code)
                       else "subscription granted, delivery filtered: 0 messages")
                checks.append(Check(a.username, f"receive its own share topic (policy {policy_label} refuses it)",
                                    not on_own, f"DELIVERED: {len(on_own)} message(s)" if on_own else how))
            for t in [share_topic(o.id).rsplit("/", 1)[0] + "/#" for o in registry.agencies if o.id != a.id] + [
                    f"{RAW_PREFIX}/#", f"$share/verify-{run}/{RAW_PREFIX}/#", "#"]:
                if any(c.principal == a.username and c.attempt == f"subscribe {t}" for c in checks):
                    continue
                bad = [x for x in leaks if _topic_matches(t.split("/", 2)[2] if t.startswith("$share/") else t, x)]
                checks.append(Check(a.username, f"receive via subscription {t}", not bad,
                                    f"LEAK: {len(bad)} message(s)" if bad else "subscription granted, delivery filtered: 0 messages"))
            if a.id not in refused:
                checks.append(Check(a.username, "control: receives the canary on its own topic", got_own,
                                    "received" if got_own else "NOT received (the check above proves nothing)"))
        for cam in registry.cameras:
            received = subscribers[cam.username].snapshot()
            checks.append(Check(cam.username, "receive raw or share messages", not received,
                                f"LEAK: {len(received)} message(s)" if received else "0 messages"))
        for user, login_ in subscribers.items():
            if login_.disconnects:  # its checks above may be incomplete: it was not connected throughout
                checks.append(Check(user, "keep its connection for the check", False,
                                    f"lost it {login_.disconnects} time(s): most likely another connection with "
                                    f"client id {login_.client_id!r} (a running edge node or agency receiver) took "
                                    "it; stop that and run verify-acl again"))
    finally:
        for col in subscribers.values():
            col.stop()
        monitor.stop()
    return checks


class _Login:
    """One principal's connection: its subscriptions, the messages they bring, and its client for
    publishing. `persistent`: the agency's own session (clean start off, the receiver's expiry),
    nothing acknowledged, so what is queued there stays for the receiver."""

    def __init__(self, broker, topics: list[str], client_id: str | None, protocol: int, persistent: bool = False):
        self.broker, self.topics, self.protocol, self.persistent = broker, topics, protocol, persistent
        self.client_id = client_id or ""
        self.messages: list[tuple[str, bytes]] = []
        self.client = None
        self.disconnects = 0  # lost connections during the check (another connection taking its client id)

    def start(self) -> "_Login":
        from edge.agency.receiver import SESSION_EXPIRY_S

        def on_message(client, userdata, msg):
            self.messages.append((msg.topic, msg.payload))  # paho's one network thread appends

        self.client = transport.connect(
            self.broker, self.client_id, protocol=self.protocol, on_message=on_message,
            subscriptions=[(t, 1) for t in self.topics], clean_start=not self.persistent,
            session_expiry_s=SESSION_EXPIRY_S if self.persistent else 0, manual_ack=self.persistent)

        def on_disconnect(client, userdata, flags, reason_code=None, properties=None):
            # Mosquitto closes the connection when another one takes the client id (paho sees an
            # "unspecified error", not 0x8E): a running edge node or receiver with this id, and as both
            # reconnect they take it from each other for as long as the check runs.
            self.disconnects += 1

        self.client.on_disconnect = on_disconnect
        return self

    @property
    def suback_codes(self) -> dict:
        return self.client.suback_codes if self.client else {}

    def snapshot(self) -> list[tuple[str, bytes]]:
        return list(self.messages)

    def stop(self) -> None:
        if self.client is None:
            return
        if self.persistent:
            # The agency's session outlives this check: leave it with the subscriptions it had (its
            # receiver's), not this check's probes ('#', a $share group).
            done = threading.Event()
            self.client.on_unsubscribe = lambda *_a: done.set()
            rc, _mid = self.client.unsubscribe(self.topics)
            if rc == mqtt.MQTT_ERR_SUCCESS:
                done.wait(5)
        transport.close(self.client)
        self.client = None
