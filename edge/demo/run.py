"""The policy demo: cameras publish reads, the gate shares them per SB 34, refused agencies get nothing.

`run_demo(reads, ...)` takes any iterator of (camera_id, ReadEvent): synthetic reads today
(`synthetic_reads`), the camera pipeline's reads later. Each read is published by its camera's own
login on `alpr/raw/<camera>`; a gate decides and audits; one subscriber per agency, logged in with
that agency's credentials, counts what actually arrives (refused agencies also try `#`). A few
forged and malformed messages are published too, to show them refused and audited.

Broker: the embedded amqtt broker (in-process, MQTT 3.1.1, logins and ACL from the same registry),
or any Mosquitto configured by `broker-config` from the same registry (`broker_url`).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from edge.agency.receiver import AgencyInbox, AgencyReceiver
from edge.policy.audit import open_audit
from edge.policy.brokerconf import camera_client_id, raw_topic
from edge.policy.gate import Gate, GateConfig
from edge.policy.audit_query import summarize
from edge.policy.policy import Policy, compile_decisions, load_policy
from edge.policy.registry import Registry, Secrets, parse_registry, random_secrets
from edge.schema import Direction, ReadEvent, new_read_id
from edge.transport import mqtt as transport

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def demo_registry_text() -> str:
    return resources.files("edge.demo").joinpath("registry.yaml").read_text(encoding="utf-8")


def demo_registry() -> Registry:
    import yaml

    return parse_registry(yaml.safe_load(demo_registry_text()), "edge/demo/registry.yaml")


def synthetic_reads(registry: Registry, n: int = 60, seed: int = 7) -> Iterator[tuple[str, ReadEvent]]:
    """California-style plates (digit, 3 letters, 3 digits) from the registry's cameras, a second
    apart, the last one now: captured in the past, as recorded footage is (reads more than 5
    minutes in the future are refused by the gate as clock skew)."""
    rng = random.Random(seed)
    cameras = registry.cameras
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=max(n - 1, 0))
    for i in range(n):
        cam = cameras[i % len(cameras)]
        plate = f"{rng.randint(1, 9)}{''.join(rng.choice(LETTERS) for _ in range(3))}{rng.randint(0, 999):03d}"
        conf = [round(rng.uniform(0.8, 0.999), 3) for _ in plate]
        yield cam.id, ReadEvent(
            read_id=new_read_id(), camera_id=cam.id, agency_id=cam.agency, captured_at=start + timedelta(seconds=i),
            plate=plate, confidence=min(conf), char_confidence=conf, region="CA", region_confidence=0.9,
            box={"x": 400.0 + rng.randint(0, 200), "y": 600.0, "w": 160.0, "h": 48.0}, frame_size=(1920, 1080),
            direction=Direction.approaching, frames_seen=rng.randint(3, 12),
        )


def forged_messages(registry: Registry) -> list[tuple[str, str, bytes]]:
    """(publishing camera, topic, payload) that the gate must refuse."""
    cams = registry.cameras
    a, b = cams[0], cams[-1]
    # camera a speaks for another camera: with one camera in the registry, one it does not have
    # (a read of a's own id on a's own topic would be a genuine read, forwarded)
    other_id, other_agency = (b.id, b.agency) if b is not a else (f"not-{a.id}"[:64], a.agency)
    now = datetime.now(timezone.utc)
    base = dict(captured_at=now, plate="7FAKE00", confidence=0.9, char_confidence=[0.9] * 7,
                box={"x": 1.0, "y": 1.0, "w": 10.0, "h": 5.0})
    spoof_camera = ReadEvent(read_id=new_read_id(), camera_id=other_id, agency_id=other_agency, **base).to_json()
    body = json.loads(ReadEvent(read_id=new_read_id(), camera_id=a.id, agency_id=a.agency, **base).to_json())
    body["share_with"] = ["ice"]  # a field that tries to widen the recipients
    return [
        (a.id, raw_topic(a.id), spoof_camera),  # camera a speaks for camera b
        (a.id, raw_topic(a.id), json.dumps(body).encode()),
        (a.id, raw_topic(a.id), b'{"plate": "7ABC123", "oops"'),  # malformed
    ]


@dataclass
class DemoResult:
    broker: str
    policy: str
    reads_published: int
    forged_published: int
    agencies: dict[str, dict]
    leaks: int
    audit_verified: bool
    audit_records: int
    audit_detail: str
    rules: dict[str, int]
    started_at: datetime
    finished_at: datetime
    timeline: list = field(default_factory=list)
    # searches made in an allowed agency's inbox after the run, as that agency's staff would
    # (edge/agency/access.py): one the policy allows, then ones it refuses; all on its access log
    agency_searches: list = field(default_factory=list)
    access_log_intact: bool = True

    def as_json(self) -> dict:
        return {
            "reads_published": self.reads_published, "forged_published": self.forged_published,
            "broker": self.broker, "policy": self.policy, "agencies": self.agencies, "leaks": self.leaks,
            "audit_verified": self.audit_verified, "audit_records": self.audit_records, "gate_rules": self.rules,
            "agency_searches": self.agency_searches, "access_log_intact": self.access_log_intact,
        }


def run_demo(reads: Iterable[tuple[str, ReadEvent]], registry: Registry | None = None, policy: Policy | None = None,
             broker_url: str | None = None, secrets: Secrets | None = None, audit_path: str | None = None,
             with_forgeries: bool = True, settle_s: float = 0.5, timeout_s: float = 60.0) -> DemoResult:
    from edge.transport.embedded import EmbeddedBroker

    registry = registry or demo_registry()
    policy = policy or load_policy()
    table = compile_decisions(policy, registry)
    started = datetime.now(timezone.utc)
    embedded = None
    if broker_url is None:
        secrets = secrets or random_secrets(registry)
        # The broker's rules follow the same policy as the gate: agencies it refuses get no rights.
        embedded = EmbeddedBroker(registry, secrets, policy=policy).start()
        base = embedded.url()
        protocol, shared = transport.MQTT_V311, None  # amqtt: MQTT 3.1.1, no shared subscriptions
        broker_label = f"embedded amqtt on {base.host}:{base.port}"
    else:
        if secrets is None:
            raise ValueError("--broker needs --secrets (the directory broker-config wrote)")
        base = transport.parse_broker_url(broker_url)
        protocol, shared = transport.MQTT_V5, None  # one gate: a plain subscription
        broker_label = base.redacted()

    def login(principal):
        return base.with_login(principal.username, secrets.password(principal))

    scratch = None if audit_path else tempfile.mkdtemp(prefix="alpr-demo-")  # removed at the end: reads are data
    audit_file = audit_path or str(Path(scratch) / "audit.db")
    audit = open_audit(audit_file)
    before = audit.head()[0]  # a kept --audit file holds earlier runs: this run's tables count only its own
    gate = None
    collectors: dict[str, AgencyReceiver] = {}  # what each agency runs: `alpr-edge agency receive`
    cam_clients: dict[str, object] = {}
    try:
        gate = Gate(registry, policy, login(registry.gate), audit,
                    GateConfig(gate_id="demo-gate", protocol=protocol, shared_group=shared, batch_wait_s=0.01)).start()
        for a in registry.agencies:
            inbox_file = Path(audit_file).with_name(f"inbox-{a.id}.db")
            for stale in (inbox_file, Path(f"{inbox_file}-wal"), Path(f"{inbox_file}-shm")):
                stale.unlink(missing_ok=True)  # the inbox shows what this run delivered, nothing older
            inbox = AgencyInbox(inbox_file)
            # Each agency connects with the client id the broker binds to its login (`agency-<id>`,
            # the receiver's default) and also tries '#' on that connection: amqtt and Mosquitto's
            # dynamic-security plugin refuse it at SUBACK; Mosquitto's acl_file grants it and filters
            # each delivery (what got through would be rejected by the receiver and counted a leak).
            collectors[a.id] = AgencyReceiver(a.id, login(a), inbox, protocol=protocol, probe_topics=("#",),
                                              require_subscription=False).start()
        for cam in registry.cameras:
            cam_clients[cam.id] = transport.connect(login(cam), camera_client_id(cam.id), protocol=protocol)

        published: dict[str, ReadEvent] = {}
        infos = []
        for camera_id, ev in reads:
            if camera_id not in cam_clients:
                raise ValueError(f"read from camera {camera_id!r}, which is not in the registry")
            published[ev.read_id] = ev
            infos.append(cam_clients[camera_id].publish(raw_topic(camera_id), ev.to_json(), qos=1))
        forged = forged_messages(registry) if with_forgeries else []
        for camera_id, topic, payload in forged:
            infos.append(cam_clients[camera_id].publish(topic, payload, qos=1))
        transport.wait_published(infos, timeout_s)
        gate.wait_idle(len(published) + len(forged), timeout_s)

        # Expected receipts per allowed agency, then a pause for anything that should not arrive.
        expected = Counter()
        for ev in published.values():
            for a_id in table.allowed_by_owner.get(ev.agency_id, ()):
                expected[a_id] += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(collectors[a].inbox.count() < n for a, n in expected.items()):
            time.sleep(0.02)
        time.sleep(settle_s)

        snap = gate.snapshot()
        this_run = [r for r in audit.records() if r["seq"] > before]  # read once, for both tables
        decided_by = {a: c["rules"] for a, c in summarize(this_run)["agencies"].items()}
        agencies: dict[str, dict] = {}
        leaks = 0
        for a in registry.agencies:
            ids = collectors[a.id].inbox.read_ids()  # validated, addressed to this agency, each once
            got = ids + [None] * collectors[a.id].snapshot()["rejected"]  # anything else that arrived counts too
            # A leak: anything a refused agency receives, or a read an allowed one should not have got.
            bad = [i for i in ids if i not in published or a.id not in table.allowed_by_owner.get(published[i].agency_id, ())]
            # Whatever the receiver rejected reached this agency's login although nothing on its share
            # topic should fail its checks: another topic through '#', or a message not meant for it.
            leaks += len(bad) + collectors[a.id].snapshot()["rejected"]
            rules = sorted({table.decide(o, a.id).rule for o in {c.agency for c in registry.cameras}})
            decided = decided_by.get(a.id, {})
            agencies[a.id] = {
                "name": a.name, "kind": a.kind.value, "jurisdiction": a.jurisdiction, "purpose": a.purpose,
                "on_behalf_of": a.on_behalf_of, "forwarded": snap["forwarded"].get(a.id, 0),
                "refused": snap["refused"].get(a.id, 0), "received": len(got), "rules": rules,
                # its try at '#': refused at SUBACK (amqtt, Mosquitto's dynamic-security plugin) or
                # granted with each delivery filtered (Mosquitto's acl_file)
                "wildcard_subscription": "refused" if collectors[a.id].probe_refused.get("#") else "granted, filtered",
                # its own share topic: refused at SUBACK where the broker's rules follow the policy and
                # it refuses this agency for every camera owner (broker-config --policy)
                "own_topic_subscription": "refused" if collectors[a.id].own_refused else "granted",
                # what actually decided each message for this agency (policy rules and the gate's checks
                # of forged or malformed messages), from the audit log
                "decided_by": dict(sorted(decided.items(), key=lambda kv: (-kv[1], kv[0]))),
            }
        verified = audit.verify()
        timeline = _timeline(this_run)
        searches, access_ok, answered_refused = _agency_searches(registry, policy, collectors, published)
        leaks += answered_refused  # a search the policy refuses that returned reads shares them all the same
        return DemoResult(broker_label, policy.label, len(published), len(forged), agencies, leaks, verified.ok,
                          verified.records, verified.summary(), snap["rules"], started, datetime.now(timezone.utc),
                          timeline, searches, access_ok)
    finally:
        for c in collectors.values():
            c.stop()
        for r in collectors.values():
            r.inbox.close()
        for c in cam_clients.values():
            transport.close(c)
        if gate is not None:
            gate.stop()
        audit.close()
        if embedded is not None:
            embedded.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _agency_searches(registry: Registry, policy: Policy, collectors: dict, published: dict) -> tuple[list[dict], bool, int]:
    """In the first agency that stored a read: a search for that plate for an allowed purpose, one
    for immigration enforcement, and one on behalf of an agency the policy would not share with.
    (searches as dicts, access log intact, reads returned by refused searches)."""
    from edge.agency.access import AccessLog, Search
    from edge.policy.policy import qualifies

    holder = next((a for a in registry.agencies if collectors[a.id].inbox.read_ids()), None)
    if holder is None:
        return [], True, 0
    plate = published[collectors[holder.id].inbox.read_ids()[0]].plate
    refused_purpose = next(iter(policy.purposes.refused), None)
    # the agency the policy refuses to share with, a federal one first (the case SB 34 is about)
    outsider = next((a.id for a in sorted(registry.agencies, key=lambda a: a.kind.value != "federal")
                     if qualifies(policy, a) is not None), None)
    asks = [Search("demo-detective", policy.purposes.allowed[0], plate, reference="DEMO-1")]
    if refused_purpose:
        asks.append(Search("demo-detective", refused_purpose, plate, reference="DEMO-2"))
    if outsider:
        asks.append(Search("demo-detective", policy.purposes.allowed[0], plate, reference="DEMO-3", on_behalf_of=outsider))
    log = AccessLog(collectors[holder.id].inbox.path)
    try:
        results = [(s, log.search(s, policy, registry)) for s in asks]
        intact = not log.verify()
    finally:
        log.close()
    out = [{"agency": holder.id, "user": s.user, "purpose": s.purpose, "on_behalf_of": s.on_behalf_of, "plate": s.plate,
            "answered": r.allowed, "reads": len(r.reads), "reason": r.reason, "access_log_entry": r.entry}
           for s, r in results]
    return out, intact, sum(len(r.reads) for s, r in results[1:])


def decided_by_text(agency: dict) -> str:
    """'allow:in-jurisdiction-public-agency x12, refuse:malformed x2' for the tables."""
    return ", ".join(f"{rule} x{n}" for rule, n in agency["decided_by"].items()) or ", ".join(agency["rules"])


def _timeline(records: list[dict]) -> list[tuple]:
    """(captured_at, camera, plate, forwarded_to, refused_for) per decided read in these audit records."""
    out = []
    for r in records:
        if r["outcome"] != "decided":
            continue
        d = json.loads(r["decisions"])
        out.append((r["captured_at"], r["camera_id"], r["plate"],
                    tuple(x[0] for x in d if x[1] == "forward"), tuple(x[0] for x in d if x[1] == "refuse")))
    return out


def write_html(result: DemoResult, path: str, samples: list | None = None) -> None:
    from edge.demo.report import AgencyRow, DemoReport, TimelineEvent, write_report

    rows = [AgencyRow(a_id, a["name"], a["kind"], a["jurisdiction"], a["forwarded"], a["refused"], (decided_by_text(a),),
                      a["received"]) for a_id, a in result.agencies.items()]
    timeline = [TimelineEvent(datetime.fromisoformat(t[0]), t[1], t[2], t[3], t[4]) for t in result.timeline]
    write_report(DemoReport(
        title="alpr-edge policy demo", policy=result.policy, started_at=result.started_at,
        finished_at=result.finished_at, broker=result.broker, reads_published=result.reads_published,
        leaks=result.leaks, audit_verified=result.audit_verified, audit_records=result.audit_records,
        audit_detail=result.audit_detail, agencies=rows, timeline=timeline, samples=list(samples or []),
        agency_searches=result.agency_searches, access_log_intact=result.access_log_intact,
    ), path)


__all__ = ["run_demo", "synthetic_reads", "demo_registry", "DemoResult", "write_html", "decided_by_text"]
