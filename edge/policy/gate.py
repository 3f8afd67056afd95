"""The policy gate: raw reads in, policy-checked reads out to each allowed agency, every decision audited.

Per message: the topic names the camera; the camera must be registered and the read's camera_id and
agency_id must match the registry (a camera cannot speak for another, nor claim another owner).
Then the precomputed decision table gives the allowed recipients of the operating agency's reads.
Nothing in the payload can widen that: recipients come from the registry and the policy only.

Delivery (QoS 1 in, QoS 2 out by default, persistent session, manual acknowledgement):
  1. decide a batch, 2. audit it in one transaction (which also tells which reads were audited
  before: redeliveries), 3. publish the forwards, 4. wait for their PUBACKs (PUBCOMPs at QoS 2), 5. acknowledge the raw
  messages, 6. note in the next transaction that those reads' forwards are done.
A gate killed anywhere in between loses nothing (unacknowledged raw reads are redelivered), shares
nothing unaudited (audit comes first) and forwards a read again only if it died between 3 and 6.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import paho.mqtt.client as mqtt

from edge.policy.audit import AuditRecord, AuditStore
from edge.policy.brokerconf import RAW_PREFIX, gate_status_topic, share_topic
from edge.policy.policy import DecisionTable, Policy, compile_decisions
from edge.policy.registry import Registry
from edge.schema import SchemaError, parse_read
from edge.transport import mqtt as transport

log = logging.getLogger("edge.gate")

REJECT_MALFORMED = "refuse:malformed"
REJECT_UNKNOWN_CAMERA = "refuse:unknown-camera"
REJECT_CAMERA_MISMATCH = "refuse:camera-topic-mismatch"
REJECT_OWNER_MISMATCH = "refuse:agency-mismatch"
REJECT_BAD_TOPIC = "refuse:bad-topic"
REJECT_CLOCK_SKEW = "refuse:clock-skew"
# A raw read the broker kept as a retained message and replays to every new subscription: cameras
# never publish retained, so it is an old message again (after retention has blanked its read id in
# the audit log, it would otherwise be forwarded a second time).
REJECT_RETAINED = "refuse:retained"
# Captured before the audit log's expiry cut-off (its latest retention run's) and not in the log:
# retention may have removed this read's key, so the gate cannot tell whether it decided (and
# forwarded) it before; a camera replaying an old read would otherwise be forwarded again. Decided
# in the audit transaction (AuditStore.append's expire), so a retention run committing meanwhile counts.
REJECT_EXPIRED = "refuse:expired"
# The gate could not decide the message (an unexpected exception while deciding it): refused and
# audited like any other refusal, instead of stopping the gate on a message it would be handed again.
REJECT_GATE_ERROR = "refuse:gate-error"
FORWARD_SCHEMA_VERSION = 1  # edge.schema.ForwardedRead
SESSION_EXPIRY_S = 7 * 24 * 3600
_TOPIC_LEVEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a gate id, a shared subscription group


@dataclass
class GateConfig:
    gate_id: str = "gate-1"
    client_id: str | None = None  # default: the registry's gate client id + gate id
    protocol: int = transport.MQTT_V5
    # Several gates: an MQTT 5 shared subscription ($share/<group>/alpr/raw/#) splits the reads between
    # them. None (one gate): a plain subscription, which Mosquitto 2.0 restores from persistence after
    # a broker restart; it does not restore shared ones, so reads published after a broker restart
    # and before the gates resubscribe are dropped.
    shared_group: str | None = None
    batch_size: int = 500
    batch_wait_s: float = 0.01  # bounds transactions (and fsyncs) to 100/s at low rates
    receive_maximum: int = 1000
    status_every_s: float = 5.0  # retained counters on alpr/gate/status/<gate id>; 0: never
    # A read captured further in the future than this is refused (and audited): a camera clock that
    # far ahead makes every time-based search and retention decision about the read wrong.
    max_clock_skew_s: float = 300.0
    # QoS of the forwards. 2 (exactly once per hop): a broker restart between storing a forward and
    # the gate receiving its acknowledgement makes a QoS 1 resend a second delivery to the agency;
    # under QoS 2 the broker keeps the packet id in the gate's persistent session and drops the
    # resend. 1 trades that for one round trip less per forward.
    forward_qos: int = 2

    def __post_init__(self) -> None:
        if self.forward_qos not in (1, 2):
            raise ValueError(f"forward_qos: must be 1 or 2, got {self.forward_qos!r}")
        # Both end up in topics: the gate id is one level of alpr/gate/status/<gate id>, the group
        # the level after $share/. A '/' there made `$share/a/b/alpr/raw/#` group 'a' of filter
        # 'b/alpr/raw/#': a gate that ran without error and received no read; '+' or '#' made
        # the connection fail with "no CONNACK" after 10 s.
        # --batch-ms 0 spun the gate's loop at full CPU while idle (a zero wait returns at once) and
        # a negative one stopped the gate after it connected ("'timeout' must be a non-negative number").
        if not 0 < self.batch_wait_s <= 60:
            raise ValueError(f"batch_wait_s (--batch-ms): must be more than 0 and at most 60 s, got {self.batch_wait_s!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size (--batch-size): must be at least 1, got {self.batch_size!r}")
        for name in ("gate_id", "shared_group"):
            value = getattr(self, name)
            if value is not None and not _TOPIC_LEVEL.fullmatch(value):
                raise ValueError(f"{name}: {value!r} must be 1-64 letters, digits, '.', '_' or '-', "
                                 "starting with a letter or digit")


@dataclass
class _Pending:
    mid: int
    qos: int
    record: AuditRecord
    forwards: list[tuple[str, bytes]]  # (topic, payload)
    read_json: bytes | None = None
    owner: str | None = None
    rule: str | None = None  # the rejection rule, for whole-message refusals


@dataclass
class _InFlight:
    batch: list[tuple]
    infos: list
    done_keys: list[str]
    keys: set[str]
    forwarded: Counter
    refused: Counter
    rules: Counter
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0


@dataclass
class GateStats:
    received: int = 0
    audited: int = 0
    rejected: int = 0
    duplicates: int = 0
    forwarded: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "received": self.received, "audited": self.audited, "rejected": self.rejected,
            "duplicates": self.duplicates, "forwarded": dict(self.forwarded), "refused": dict(self.refused),
            "rules": dict(self.rules),
        }


def raw_subscription_options(protocol: int):
    """QoS 1; with MQTT 5 also Retain Handling 2: the broker never replays a retained raw read on
    subscribing (the gate resubscribes on every reconnect). Cameras never publish retained, so such a
    copy is an old message; where it still arrives (MQTT 3.1.1, a broker that ignores the option) it
    is refused as refuse:retained."""
    if protocol != transport.MQTT_V5:
        return 1
    from paho.mqtt.subscribeoptions import SubscribeOptions

    return SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)


class Gate:
    def __init__(self, registry: Registry, policy: Policy, broker: transport.BrokerURL, audit: AuditStore,
                 config: GateConfig | None = None):
        self.registry = registry
        self.policy = policy
        self.broker = broker
        self.audit = audit
        self.config = config or GateConfig()
        self.table: DecisionTable = compile_decisions(policy, registry)
        self.stats = GateStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._client: mqtt.Client | None = None  # raw reads in (persistent session), status out
        self._fwd: mqtt.Client | None = None  # forwards out (see start())
        self._done_keys: list[str] = []
        self._inflight_keys: set[str] = set()
        self.error: BaseException | None = None
        self._precompute()

    # -- precomputed per (owner, recipient): no policy work per read ---------------------------
    def _precompute(self) -> None:
        label = self.policy.label
        agencies = self.registry.agencies
        self._cameras = {c.id: c for c in self.registry.cameras}
        self._decisions_json: dict[str, str] = {}
        self._forward_prefix: dict[str, list[tuple[str, str, bytes]]] = {}
        for owner in self.table.allowed_by_owner:
            rows = []
            for a in agencies:
                d = self.table.decide(owner, a.id)
                rows.append([a.id, "forward" if d.allowed else "refuse", d.rule, a.purpose, a.username])
            self._decisions_json[owner] = json.dumps(rows, separators=(",", ":"))
            self._forward_prefix[owner] = [
                (a_id, share_topic(a_id), (
                    f'{{"schema_version":{FORWARD_SCHEMA_VERSION},"policy":{json.dumps(label)},'
                    f'"recipient":{json.dumps(a_id)},"rule":{json.dumps(self.table.decide(owner, a_id).rule)},"read":'
                ).encode())
                for a_id in self.table.allowed_by_owner[owner]
            ]
        # Most forwards one read can produce (a redelivered read forwards at most as many again).
        self._max_forwards_per_read = max((len(v) for v in self._forward_prefix.values()), default=0)
        self._refused_by_owner = {
            owner: tuple(a for a in self.table.recipients if a not in allowed)
            for owner, allowed in self.table.allowed_by_owner.items()
        }
        self._rejected_json: dict[str, str] = {}
        for rule in (REJECT_MALFORMED, REJECT_UNKNOWN_CAMERA, REJECT_CAMERA_MISMATCH, REJECT_OWNER_MISMATCH, REJECT_BAD_TOPIC,
                     REJECT_CLOCK_SKEW, REJECT_GATE_ERROR, REJECT_RETAINED, REJECT_EXPIRED):
            self._rejected_json[rule] = json.dumps(
                [[a.id, "refuse", rule, a.purpose, a.username] for a in agencies], separators=(",", ":"))

    # -- deciding ------------------------------------------------------------------------------
    def _reject(self, now: str, topic: str, mid: int, qos: int, rule: str, detail: str, key=None, ev=None,
                owner=None) -> _Pending:
        gid = self.config.gate_id
        # %r: topics come from cameras and may hold newlines (forged log lines otherwise)
        log.warning("gate %s refused a message on %r: %s: %s", gid, topic[:100], rule, detail[:200])
        rec = AuditRecord(now, gid, key, ev.read_id if ev else None, ev.camera_id if ev else None, owner,
                          ev.plate if ev else None, ev.captured_at.isoformat() if ev else None, topic[:200],
                          self.policy.label, "rejected", self._rejected_json[rule], f"{rule}: {detail}"[:500])
        return _Pending(mid, qos, rec, [], rule=rule)

    def _expired(self, rec: AuditRecord, cutoff: str) -> AuditRecord:
        """What is audited instead of a decided read captured before the expiry cut-off (AuditStore.append)."""
        detail = (f"{REJECT_EXPIRED}: captured_at {rec.captured_at} is before the audit log's retention cut-off "
                  f"{cutoff}: whether this read was decided before cannot be checked")
        return dataclasses.replace(rec, outcome="rejected", decisions=self._rejected_json[REJECT_EXPIRED], detail=detail)

    def decide(self, topic: str, payload: bytes, mid: int = 0, qos: int = 0, retained: bool = False) -> _Pending:
        """The decision for one raw message; never raises (fail closed: what cannot be decided is refused).
        `retained`: delivered as a retained message (refused, see REJECT_RETAINED)."""
        now = datetime.now(timezone.utc).isoformat()
        try:
            return self._decide(now, topic, payload, mid, qos, retained)
        except Exception as err:
            log.exception("gate %s could not decide a message on %r", self.config.gate_id, topic[:100])
            return self._reject(now, topic, mid, qos, REJECT_GATE_ERROR, repr(err))  # repr: no line breaks in the log

    def _decide(self, now: str, topic: str, payload: bytes, mid: int, qos: int, retained: bool = False) -> _Pending:
        label = self.policy.label

        def reject(rule: str, detail: str, key=None, ev=None, owner=None) -> _Pending:
            return self._reject(now, topic, mid, qos, rule, detail, key, ev, owner)

        parts = topic.split("/")
        if len(parts) != 3 or f"{parts[0]}/{parts[1]}" != RAW_PREFIX:
            return reject(REJECT_BAD_TOPIC, f"topic {topic[:100]!r} is not {RAW_PREFIX}/<camera>")
        cam_id = parts[2]
        camera = self._cameras.get(cam_id)
        if camera is None:
            return reject(REJECT_UNKNOWN_CAMERA, f"camera {cam_id[:64]!r} is not registered")
        try:
            ev = parse_read(payload)
        except SchemaError as err:
            return reject(REJECT_MALFORMED, str(err), owner=camera.agency)
        key = f"{cam_id}/{ev.read_id}"
        if retained:
            return reject(REJECT_RETAINED, "a retained copy the broker replays on subscribing, not a live read "
                          "(cameras never publish retained)", key, ev, camera.agency)
        if ev.camera_id != cam_id:
            return reject(REJECT_CAMERA_MISMATCH, f"read says camera {ev.camera_id!r}, topic says {cam_id!r}",
                          key, ev, camera.agency)
        if ev.agency_id != camera.agency:
            return reject(REJECT_OWNER_MISMATCH, f"read says agency {ev.agency_id!r}, registry says {camera.agency!r}",
                          key, ev, camera.agency)
        skew = (ev.captured_at - datetime.now(timezone.utc)).total_seconds()
        if skew > self.config.max_clock_skew_s:
            return reject(REJECT_CLOCK_SKEW, f"captured_at {ev.captured_at.isoformat()} is {skew:.0f} s ahead of the "
                          f"gate's clock (limit {self.config.max_clock_skew_s:g} s)", key, ev, camera.agency)
        owner = camera.agency
        read_json = ev.to_json()  # re-serialized from the validated model: nothing unvalidated passes
        rec = AuditRecord(now, self.config.gate_id, key, ev.read_id, ev.camera_id, owner, ev.plate, ev.captured_at.isoformat(),
                          topic, label, "decided", self._decisions_json[owner], None)
        forwards = [(t, prefix + read_json + b"}") for _a, t, prefix in self._forward_prefix[owner]]
        return _Pending(mid, qos, rec, forwards, read_json, owner)

    # -- running -------------------------------------------------------------------------------
    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self._queue.put((msg.mid, msg.qos, msg.topic, msg.payload, bool(msg.retain)))

    def start(self) -> "Gate":
        cfg = self.config
        topic = f"{RAW_PREFIX}/#"
        if cfg.shared_group:
            topic = f"$share/{cfg.shared_group}/{topic}"
        client_id = cfg.client_id or f"{self.registry.gate.client_id}-{cfg.gate_id}"
        self._status_topic = gate_status_topic(cfg.gate_id)
        offline = json.dumps({"gate_id": cfg.gate_id, "online": False}).encode()
        self._client = transport.connect(
            self.broker, client_id, protocol=cfg.protocol, clean_start=False, session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=cfg.receive_maximum, manual_ack=True, on_message=self._on_message,
            subscriptions=[(topic, raw_subscription_options(cfg.protocol))], will=(self._status_topic, offline, 1, True),
        )
        code = self._client.suback_codes.get(topic)
        if code is not None and transport.suback_refused(code):
            transport.close(self._client)
            raise transport.MQTTError(f"broker refused the gate's subscription to {topic}: {code}")
        # Forwards go out on a second connection whose session starts clean in each gate process and
        # persists across its reconnects. Its QoS 2 state (packet ids awaiting PUBREL) lives in
        # this process only: a killed gate's successor resuming that session would reuse packet ids
        # the broker still holds, and the broker would take its new forwards for repeats of the old
        # ones and drop them (155 of 3,000 reads lost in tests/test_gate_mosquitto.py). Starting
        # clean drops the dead process's unreleased forwards instead; their reads were not
        # recorded as forwarded, so the new gate forwards them again. The raw subscription stays on
        # the persistent session above: reads published while the gate is down wait for it there.
        try:
            self._fwd = transport.connect(
                self.broker, f"{client_id}-fwd", protocol=cfg.protocol,
                clean_start="first-only" if cfg.protocol == transport.MQTT_V5 else True,
                session_expiry_s=SESSION_EXPIRY_S,
            )
        except transport.MQTTError:
            transport.close(self._client)
            raise
        self._worker = threading.Thread(target=self._run, name=f"gate-{cfg.gate_id}", daemon=True)
        self._worker.start()
        log.info("gate %s up: policy %s, %d agencies, %d cameras", cfg.gate_id, self.policy.label,
                 len(self.registry.agencies), len(self.registry.cameras))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._client is not None:
            self.publish_status(online=False)
            transport.close(self._client)
            self._client = None
        if self._fwd is not None:
            transport.close(self._fwd)
            self._fwd = None

    def publish_status(self, online: bool = True) -> None:
        """Retained health and counters for operators (QoS 1; the will says offline if the gate dies)."""
        if self.config.status_every_s <= 0 or self._client is None:
            return
        body = {"gate_id": self.config.gate_id, "online": online, "policy": self.policy.label,
                "at": datetime.now(timezone.utc).isoformat(), **self.snapshot()}
        info = self._client.publish(self._status_topic, json.dumps(body).encode(), qos=1, retain=True)
        if not online:
            transport.wait_published([info], timeout=2.0)

    def batch_limit(self) -> int:
        """Reads per batch: the configured size, cut so that the forwards of the two batches in flight
        stay under the broker's Receive Maximum (a few slots kept for the status message)."""
        recv_max = getattr(self._fwd, "server_receive_maximum", 65535) or 65535
        per_read = max(1, self._max_forwards_per_read)
        return max(1, min(self.config.batch_size, (recv_max - 8) // (2 * per_read)))

    def _next_batch(self) -> list[tuple]:
        return transport.take_batch(self._queue, self.batch_limit(), self.config.batch_wait_s)

    def _run(self) -> None:
        """Two batches in flight: while the broker acknowledges batch N's forwards, batch N+1 is
        decided and audited (the commit's fsync overlaps the network round trip)."""
        next_status = time.monotonic()
        inflight: _InFlight | None = None
        try:
            while not self._stop.is_set():
                if self.config.status_every_s > 0 and time.monotonic() >= next_status:
                    self.publish_status()
                    next_status = time.monotonic() + self.config.status_every_s
                batch = self._next_batch()
                started = self._start_batch(batch) if batch else None
                if inflight is not None and not self._finish_batch(inflight):
                    return
                inflight = started
                if inflight is None and self._done_keys:
                    self._append([], self._done_keys)
                    self._done_keys = []
            if inflight is not None:
                self._finish_batch(inflight, patient_s=5.0)
            if self._done_keys:
                self._append([], self._done_keys)
                self._done_keys = []
        except BaseException as err:  # fail closed: stop consuming, ack nothing more
            self.error = err
            log.exception("gate %s stopped on error", self.config.gate_id)

    def process_batch(self, batch: list[tuple]) -> None:
        """Decide, audit, forward and acknowledge one batch (no pipelining) of
        (mid, qos, topic, payload[, retained]) tuples."""
        self._finish_batch(self._start_batch(batch), patient_s=30.0)

    def _append(self, records: list[AuditRecord], done_keys: list[str]):
        """Audit a batch, waiting while another writer holds the audit log (a retention run, a second
        gate, an operator's sqlite3 shell): an append is one transaction, so a locked one changed
        nothing and is tried again. Before, SQLite's 'database is locked' after its 30 s busy timeout
        stopped the gate. Nothing is forwarded or acknowledged meanwhile; any other error stops it."""
        while True:
            try:
                return self.audit.append(records, done_keys, expire=self._expired)
            except Exception as err:
                if self._stop.is_set() or not self.audit.is_locked(err):
                    raise
                log.warning("gate %s: the audit log is locked by another writer (%s); waiting to audit %d "
                            "record(s), nothing forwarded or acknowledged meanwhile", self.config.gate_id, err,
                            len(records))

    def _start_batch(self, batch: list[tuple]) -> "_InFlight":
        pendings: list[_Pending] = []
        seen: set[str] = set()
        dup_in_batch = 0
        for mid, qos, topic, payload, *retained in batch:  # (mid, qos, topic, payload[, retained])
            p = self.decide(topic, payload, mid, qos, bool(retained and retained[0]))
            k = p.record.read_key
            if k is not None and (k in seen or k in self._inflight_keys):
                dup_in_batch += 1  # the batch in flight forwards it
                continue
            if k is not None:
                seen.add(k)
            pendings.append(p)
        result = self._append([p.record for p in pendings], self._done_keys)
        self._done_keys = []
        infos: list[mqtt.MQTTMessageInfo] = []
        done_keys: list[str] = []
        client = self._fwd
        f = _InFlight(batch, infos, done_keys, seen, Counter(), Counter(), Counter(), inserted=result.inserted,
                      duplicates=dup_in_batch)
        for p in pendings:
            k = p.record.read_key
            if k is not None and k in result.already:
                f.duplicates += 1
                decisions_json, forwarded_done = result.already[k]
                if forwarded_done or not p.forwards:
                    continue
                # Audited before but the gate died before its forwards were acknowledged: forward
                # again, only to agencies that were allowed then and are allowed now.
                then = {row[0] for row in json.loads(decisions_json) if row[1] == "forward"}
                forwards = [(t, pl) for (t, pl), (a_id, _t, _p) in zip(p.forwards, self._forward_prefix[p.owner])
                            if a_id in then]
            elif k is not None and k in result.expired:
                forwards = []
                f.rejected += 1
                f.rules[REJECT_EXPIRED] += 1
                f.refused.update(self.table.recipients)
            else:
                forwards = p.forwards
                if p.rule is not None:
                    f.rejected += 1
                    f.rules[p.rule] += 1
                    f.refused.update(self.table.recipients)
                else:
                    f.forwarded.update(self.table.allowed_by_owner[p.owner])
                    f.refused.update(self._refused_by_owner[p.owner])
            for topic, payload in forwards:
                infos.append(client.publish(topic, payload, qos=self.config.forward_qos))
            if forwards and k is not None:
                done_keys.append(k)
        if result.expired:
            log.warning("gate %s refused %d read(s) captured before the audit log's retention cut-off (%s): "
                        "retention may have removed their keys, so a replay cannot be told from a new read",
                        self.config.gate_id, len(result.expired), REJECT_EXPIRED)
        self._inflight_keys |= seen
        return f

    def _finish_batch(self, f: "_InFlight", patient_s: float = 0.0) -> bool:
        """Every forward acknowledged by the broker (PUBACK, or PUBCOMP under QoS 2) before any raw
        read is acknowledged."""
        deadline = time.monotonic() + patient_s
        while not transport.wait_published(f.infos, timeout=1.0):
            if self._stop.is_set() and time.monotonic() > deadline:
                return False  # not acknowledged: the broker redelivers to the next session
        client = self._client
        for mid, qos, *_rest in f.batch:
            if qos > 0:
                client.ack(mid, qos)
        self._done_keys.extend(f.done_keys)
        self._inflight_keys -= f.keys
        with self._stats_lock:
            s = self.stats
            s.received += len(f.batch)
            s.audited += f.inserted
            s.rejected += f.rejected
            s.duplicates += f.duplicates
            s.forwarded.update(f.forwarded)
            s.refused.update(f.refused)
            s.rules.update(f.rules)
        return True

    def snapshot(self) -> dict:
        with self._stats_lock:
            return self.stats.as_dict()

    def wait_idle(self, received: int, timeout: float = 30.0) -> bool:
        """Wait until `received` raw messages were handled (tests, demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._stats_lock:
                if self.stats.received >= received:
                    return True
            if self.error:
                return False
            time.sleep(0.01)
        return False
