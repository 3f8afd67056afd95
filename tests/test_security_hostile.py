"""Hostile input, property-based: the gate's message handler, the registry and the policy loaders.

Whatever a camera login publishes (any topic under its reach or not, any bytes, unicode plates,
topic syntax in ids, replays, clock skew, oversized payloads), the gate decides every message,
audits it, acknowledges it, never raises, never forwards anything but a validated read to an agency
the policy allows, and never forwards a read id twice. The loaders turn any input into a result or
their own error naming the problem, never another exception.

The gate runs against an in-memory stand-in for the paho client (no broker): the handler is
exercised directly, thousands of messages a second.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ALLOWED_AGENCIES, TEST_REGISTRY
from edge.policy.audit import SQLiteAuditStore
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import PolicyError, load_policy, parse_policy
from edge.policy.registry import RegistryError, load_registry, parse_registry
from edge.schema import parse_read
from edge.transport import mqtt as transport

REGISTRY = parse_registry(TEST_REGISTRY, "conftest")
CAMERA_OWNER = {c.id: c.agency for c in REGISTRY.cameras}


class _Info:
    rc = 0

    def is_published(self) -> bool:
        return True


class FakeClient:
    """What the gate needs of a paho client: publish (acknowledged at once) and ack."""

    def __init__(self):
        self.published: list[tuple[str, bytes]] = []
        self.acked: list[int] = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, bytes(payload)))
        return _Info()

    def ack(self, mid, qos):
        self.acked.append(mid)


def base_read(**over) -> dict:
    d = {"read_id": "abcdef0123456789", "camera_id": "cam-1", "agency_id": "sac-pd",
         "captured_at": datetime.now(timezone.utc).isoformat(), "plate": "7ABC123", "confidence": 0.9,
         "char_confidence": [0.9] * 7, "box": {"x": 1, "y": 2, "w": 3, "h": 4}}
    d.update(over)
    return d


ids = st.text(alphabet="abcdef0123456789", min_size=16, max_size=16)
nasty_text = st.text(max_size=20) | st.sampled_from(
    ["cam-1/#", "+", "#", "cam-1/../cam-2", "cam-1\n", "ice", "sac-pd", "\u0000", "ＣＡＭ", "7ABC123\u200b", "７ＡＢＣ１２３",
     "A" * 5000, "", " cam-1"])
topics = st.sampled_from(["alpr/raw/cam-1", "alpr/raw/cam-2", "alpr/raw/cam-3"]) | st.one_of(
    st.sampled_from(["alpr/raw/cam-1/x", "alpr/raw/", "alpr/raw/+", "alpr/raw/#", "alpr/share/sac-pd/reads",
                     "alpr/raw/cam-9", "alpr/raw/cam-1\nforged log line", "alpr/raw/ice", "$SYS/x"]),
    st.text(max_size=30).map(lambda s: "alpr/raw/" + s))
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | nasty_text


@st.composite
def payloads(draw):
    kind = draw(st.sampled_from(["valid", "field", "bytes", "huge", "skew", "mismatch", "extra"]))
    cam = draw(st.sampled_from(["cam-1", "cam-2", "cam-3"]))
    d = base_read(read_id=draw(ids), camera_id=cam, agency_id=CAMERA_OWNER[cam])
    if kind == "valid":
        pass
    elif kind == "field":
        d[draw(st.sampled_from(sorted(d)))] = draw(json_scalars | st.lists(json_scalars, max_size=4))
    elif kind == "bytes":
        return draw(st.binary(max_size=300))
    elif kind == "huge":
        return json.dumps(base_read(crop_ref="x" * draw(st.integers(17_000, 200_000)))).encode()
    elif kind == "skew":
        d["captured_at"] = (datetime.now(timezone.utc) + timedelta(seconds=draw(
            st.sampled_from([-10 * 365 * 86400, -3600, 3600, 86400, 100 * 365 * 86400])))).isoformat()
    elif kind == "mismatch":
        d[draw(st.sampled_from(["camera_id", "agency_id"]))] = draw(st.sampled_from(["cam-1", "cam-2", "cam-3", "sac-pd", "sac-so", "ice"]))
    elif kind == "extra":
        d[draw(st.sampled_from(["share_with", "recipients", "policy", "__proto__"]))] = ["ice"]
    return json.dumps(d, allow_nan=True).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def gate():
    tmp = tempfile.TemporaryDirectory()
    store = SQLiteAuditStore(Path(tmp.name) / "audit.db", synchronous="OFF")
    g = Gate(REGISTRY, load_policy(), transport.parse_broker_url("mqtt://127.0.0.1:9"), store,
             GateConfig(status_every_s=0))
    g._client = g._fwd = FakeClient()  # noqa: SLF001 - the handler without a broker (raw in, forwards out)
    yield g
    store.close()
    tmp.cleanup()


def check_forward(topic: str, payload: bytes) -> str:
    agency = topic.split("/")[2]
    assert topic == f"alpr/share/{agency}/reads" and agency in ALLOWED_AGENCIES, topic
    msg = json.loads(payload)
    assert msg["recipient"] == agency and msg["rule"].startswith("allow:")
    ev = parse_read(json.dumps(msg["read"]))  # only a valid read leaves the gate
    assert ev.agency_id == CAMERA_OWNER[ev.camera_id]
    assert ev.captured_at <= datetime.now(timezone.utc) + timedelta(seconds=300)
    return f"{agency}/{ev.camera_id}/{ev.read_id}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(topics, payloads()), min_size=1, max_size=12), replay=st.booleans())
def test_the_gate_handler_never_crashes_never_leaks_never_forwards_twice(gate, caplog, batch, replay):
    client: FakeClient = gate._client  # noqa: SLF001
    start_pub, start_ack = len(client.published), len(client.acked)
    messages = [(i + 1, 1, t, p) for i, (t, p) in enumerate(batch)]
    if replay:  # the same messages again, in a later batch: replayed reads
        messages_again = [(m + 100, q, t, p) for m, q, t, p in messages]
    before = gate.audit.head()[0]
    with caplog.at_level(logging.WARNING, logger="edge.gate"):
        gate.process_batch(messages)
        if replay:
            gate.process_batch(messages_again)
    assert gate.error is None
    acked = client.acked[start_ack:]
    assert sorted(acked) == sorted(m for m, *_ in messages + (messages_again if replay else []))
    assert gate.audit.head()[0] >= before  # audited (new reads) or recognised as audited before
    for rec in caplog.records:
        assert "\n" not in rec.getMessage() and "\r" not in rec.getMessage()  # no forged log lines
    sent = [check_forward(t, p) for t, p in client.published]
    assert len(sent) == len(set(sent)), "a read id was forwarded twice to one agency"
    assert client.published[start_pub:] == [] or all(t.startswith("alpr/share/") for t, _ in client.published[start_pub:])


def test_clock_skew_and_replays_are_refused_and_audited(gate):
    client: FakeClient = gate._client  # noqa: SLF001
    n = len(client.published)
    future = base_read(read_id="skewskewskew0001", captured_at=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())
    past = base_read(read_id="pastpastpast0001", captured_at="2020-01-01T00:00:00Z")  # old backlog is a real read
    gate.process_batch([(1, 1, "alpr/raw/cam-1", json.dumps(future).encode()),
                        (2, 1, "alpr/raw/cam-1", json.dumps(past).encode())])
    sent = [json.loads(p)["read"]["read_id"] for _t, p in client.published[n:]]
    assert sent == ["pastpastpast0001", "pastpastpast0001"]  # both in-state agencies
    recs = {r["read_id"]: r for r in gate.audit.records() if r["read_id"] in ("skewskewskew0001", "pastpastpast0001")}
    assert recs["skewskewskew0001"]["outcome"] == "rejected"
    assert "refuse:clock-skew" in recs["skewskewskew0001"]["detail"] and "ahead" in recs["skewskewskew0001"]["detail"]
    # The same read id again, now with a plausible clock: a replay of an audited read is not forwarded.
    fixed = dict(future, captured_at=datetime.now(timezone.utc).isoformat())
    gate.process_batch([(3, 1, "alpr/raw/cam-1", json.dumps(fixed).encode()),
                        (4, 1, "alpr/raw/cam-1", json.dumps(past).encode())])
    assert len(client.published) == n + 2


# -- loaders ----------------------------------------------------------------------------------------

yaml_like = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["gate", "agencies", "cameras", "version", "extra"]), yaml_like)
def test_registry_parser_rejects_anything_with_registry_error(section, value):
    data = copy.deepcopy(TEST_REGISTRY)
    data[section] = value
    try:
        reg = parse_registry(data)
    except RegistryError as err:
        assert str(err)
        return
    # Accepted: ids and usernames are still topic- and ACL-safe.
    for p in reg.principals():
        assert not set(p.username) & set("/+# \n\t\x00")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.sampled_from(["id", "agency", "username", "credentials", "kind", "jurisdiction",
                                            "purpose", "on_behalf_of", "name"]), yaml_like)
def test_registry_entries_with_hostile_fields(index, field, value):
    data = copy.deepcopy(TEST_REGISTRY)
    entries = data["agencies"] + data["cameras"]
    entries[index % len(entries)][field] = value
    try:
        reg = parse_registry(data)
    except RegistryError:
        return
    for a in reg.agencies:
        assert not set(a.id) & set("/+# \n")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_registry_and_policy_files_with_arbitrary_bytes(blob):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "file.yaml"
        p.write_bytes(blob)
        with pytest.raises(RegistryError):
            load_registry(p)
        try:
            load_policy(p)
        except PolicyError:
            pass
        else:
            raise AssertionError("arbitrary bytes accepted as a policy")


@pytest.mark.parametrize("text", [
    "a: &a [*a]",  # recursive alias
    "[" * 5000 + "]" * 5000,  # deep nesting
    "x: !!python/object/apply:os.system ['true']",  # code execution tag
    "\ufeffversion: 1\n",  # BOM only
    "- 1\n- 2\n",  # a list at the top
])
def test_yaml_bombs_and_tags_are_registry_errors(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError):
        load_registry(p)
    with pytest.raises(PolicyError):
        load_policy(p)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["format", "policy", "version", "recipients", "purposes", "on_behalf_of", "description", "x"]),
       yaml_like)
def test_policy_parser_rejects_anything_with_policy_error(field, value):
    import yaml
    from importlib import resources

    data = yaml.safe_load(resources.files("edge.policy").joinpath("data", "ca-sb34.yaml").read_text())
    data[field] = value
    try:
        parse_policy(data)
    except PolicyError as err:
        assert str(err)


# -- the same on the wire: a camera login throwing oversized packets and topic tricks at Mosquitto ----

def test_oversized_packets_and_topic_tricks_never_reach_an_agency(mosquitto, tmp_path):
    import time

    from conftest import REFUSED_AGENCIES

    def url(who):
        return transport.parse_broker_url(mosquitto.url(who))

    store = SQLiteAuditStore(tmp_path / "audit.db")
    g = Gate(mosquitto.registry, load_policy(), url("gate"), store, GateConfig(status_every_s=0, batch_wait_s=0.01)).start()
    got: dict[str, list] = {a: [] for a in ("sac-pd", *REFUSED_AGENCIES)}
    agencies = [transport.connect(url(a), f"agency-{a}", subscriptions=[(f"alpr/share/{a}/#", 1), ("#", 1)],
                                  on_message=lambda c, u, m, a=a: got[a].append((m.topic, m.payload))) for a in got]
    cam = transport.connect(url("cam-1"), "edge-cam-1")
    try:
        tricks = ["alpr/raw/cam-1/../cam-2", "alpr/raw/cam-2", "alpr/raw/cam-1/x", "alpr/share/ice/reads",
                  "alpr/share/sac-pd/reads", "alpr/raw/cam-1\u0000x", "alpr/raw/cam-1 ", "$SYS/broker/x"]
        for t in tricks:
            try:
                cam.publish(t, json.dumps(base_read()).encode(), qos=1)
            except ValueError:
                pass  # paho refuses some topics itself (NUL): also fine
        # 200 KB: over Mosquitto's max_packet_size (64 KiB) and the schema's 16 KiB.
        cam.publish("alpr/raw/cam-1", b"{" + b" " * 200_000 + b"}", qos=1)
        time.sleep(1.0)
        # The camera may have been disconnected for the oversized packet; a fresh login works and
        # a normal read still goes through.
        transport.close(cam)
        cam = transport.connect(url("cam-1"), "edge-cam-1")
        good = base_read(read_id="goodgoodgood0001")
        transport.wait_published([cam.publish("alpr/raw/cam-1", json.dumps(good).encode(), qos=1)], 20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not got["sac-pd"]:
            time.sleep(0.05)
        time.sleep(0.5)
        assert [json.loads(p)["read"]["read_id"] for _t, p in got["sac-pd"]] == ["goodgoodgood0001"]
        assert all(t == "alpr/share/sac-pd/reads" for t, _p in got["sac-pd"])
        for a in REFUSED_AGENCIES:
            assert got[a] == [], a
        assert g.error is None and store.verify().ok
        forwarded = [r for r in store.records() if r["outcome"] == "decided"]
        assert [r["read_id"] for r in forwarded] == ["goodgoodgood0001"]
    finally:
        transport.close(cam)
        for c in agencies:
            transport.close(c)
        g.stop()
        store.close()
