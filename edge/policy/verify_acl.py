"""`alpr-edge verify-acl`: log in as each principal and try what it must not do.

Each agency tries to subscribe to every other agency's share topic, to `alpr/raw/#` and to `#`,
and to publish a forged read on a camera's raw topic and on share topics. Each camera tries to
publish on another camera's topic and to subscribe to raw and share topics. A login with a wrong
password and an anonymous login are tried too.

A refused SUBACK or PUBACK counts as refused. A granted subscription is not yet a leak (Mosquitto
grants `#` and filters delivery per message): marked canary messages are then published with the
gate's and cameras' own logins on every share and raw topic, and whatever reaches a principal
outside its own topic is a leak. Each agency must receive the canary on its own topic (so "nothing
received" is not vacuous). Forged publishes are watched by a monitor logged in as the gate.
Canaries carry {"canary": true}; a running gate audits the raw ones as malformed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import paho.mqtt.client as mqtt

from edge.policy.brokerconf import RAW_PREFIX, SHARE_PREFIX, raw_topic, share_topic
from edge.policy.registry import Registry, Secrets
from edge.schema import ReadEvent, new_read_id
from edge.transport import mqtt as transport


@dataclass(frozen=True)
class Check:
    principal: str
    attempt: str
    ok: bool  # refused as it must be (or, for a control, worked as it must)
    how: str


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
               protocol: int = transport.MQTT_V5, settle_s: float = 1.0) -> list[Check]:
    checks: list[Check] = []
    run = uuid.uuid4().hex[:8]

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

    # Monitor with the gate's login: sees every raw and share message (forged publishes that got in).
    monitor = transport.Collector(login(registry.gate), [f"{RAW_PREFIX}/#", f"{SHARE_PREFIX}/#"],
                                  client_id=f"verify-acl-{run}-monitor", protocol=protocol).start()
    subscribers: dict[str, transport.Collector] = {}
    try:
        for a in registry.agencies:
            forbidden = [share_topic(o.id).rsplit("/", 1)[0] + "/#" for o in registry.agencies if o.id != a.id]
            topics = [f"{SHARE_PREFIX}/{a.id}/#", *forbidden, f"{RAW_PREFIX}/#", "#"]
            col = transport.Collector(login(a), topics, client_id=f"verify-acl-{run}-{a.id}", protocol=protocol).start()
            subscribers[a.username] = col
            for t in topics[1:]:
                code = col.suback_codes.get(t)
                if code is not None and transport.suback_refused(code):
                    checks.append(Check(a.username, f"subscribe {t}", True, f"SUBACK {code}"))
        for cam in registry.cameras:
            topics = [f"{RAW_PREFIX}/#", f"{SHARE_PREFIX}/#"]
            col = transport.Collector(login(cam), topics, client_id=f"verify-acl-{run}-{cam.id}", protocol=protocol).start()
            subscribers[cam.username] = col
            for t in topics:
                code = col.suback_codes.get(t)
                if code is not None and transport.suback_refused(code):
                    checks.append(Check(cam.username, f"subscribe {t}", True, f"SUBACK {code}"))

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
            forged.append((cam.username, share_topic(registry.agencies[0].id), json.dumps({"forged": True}).encode()))
        principals = {p.username: p for p in registry.principals()}
        by_user: dict[str, list[tuple[str, bytes]]] = {}
        for user, topic, payload in forged:
            by_user.setdefault(user, []).append((topic, payload))
        puback: dict[tuple[str, str], str] = {}
        for user, items in by_user.items():
            codes: dict[int, object] = {}

            def on_publish(c, userdata, mid, reason_code, properties, codes=codes):
                codes[mid] = reason_code

            client = transport.connect(login(principals[user]), f"verify-acl-{run}-pub-{user}", protocol=protocol)
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
            transport.close(client)

        # Canaries with the rightful publishers: each share topic (gate) and each raw topic (camera).
        canaries: list[tuple[str, str]] = []
        gate_client = transport.connect(login(registry.gate), f"verify-acl-{run}-gate", protocol=protocol)
        infos = []
        for a in registry.agencies:
            infos.append(gate_client.publish(share_topic(a.id), json.dumps({"canary": True, "run": run}).encode(), qos=1))
            canaries.append(("gate", share_topic(a.id)))
        transport.wait_published(infos)
        transport.close(gate_client)
        for cam in registry.cameras:
            c = transport.connect(login(cam), f"verify-acl-{run}-canary-{cam.id}", protocol=protocol)
            transport.wait_published([c.publish(raw_topic(cam.id), json.dumps({"canary": True, "run": run}).encode(), qos=1)])
            transport.close(c)
        time.sleep(settle_s)

        monitor_seen = monitor.snapshot()
        for user, topic, _payload in forged:
            arrived = any(t == topic and (b"FORGED1" in p or b'"forged"' in p) and b'"canary"' not in p
                          for t, p in monitor_seen)
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
            for t in [share_topic(o.id).rsplit("/", 1)[0] + "/#" for o in registry.agencies if o.id != a.id] + [f"{RAW_PREFIX}/#", "#"]:
                if any(c.principal == a.username and c.attempt == f"subscribe {t}" for c in checks):
                    continue
                bad = [x for x in leaks if _topic_matches(t, x)]
                checks.append(Check(a.username, f"receive via subscription {t}", not bad,
                                    f"LEAK: {len(bad)} message(s)" if bad else "subscription granted, delivery filtered: 0 messages"))
            checks.append(Check(a.username, "control: receives the canary on its own topic", got_own,
                                "received" if got_own else "NOT received (the check above proves nothing)"))
        for cam in registry.cameras:
            received = subscribers[cam.username].snapshot()
            checks.append(Check(cam.username, "receive raw or share messages", not received,
                                f"LEAK: {len(received)} message(s)" if received else "0 messages"))
    finally:
        for col in subscribers.values():
            col.stop()
        monitor.stop()
    return checks
