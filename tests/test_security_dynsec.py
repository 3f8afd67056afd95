"""`broker-config --auth dynsec`: Mosquitto's dynamic-security plugin closes the two gaps the acl_file
leaves open (README, "Known gaps"), on a real broker:

- a camera or agency login can connect only with its own client id (`edge-<camera>`, `agency-<agency>`),
  so none can take over the gate's persistent session (and drop the raw reads queued for it);
- subscriptions are checked, so no login but the gate's can join the gates' `$share` group (and take a
  share of the raw reads), and `#` is refused at SUBACK instead of granted and filtered.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
import yaml

from conftest import ALLOWED_AGENCIES, REFUSED_AGENCIES, TEST_REGISTRY
from edge.agency.receiver import AgencyInbox, AgencyReceiver
from edge.policy.audit import SQLiteAuditStore
from edge.policy.brokerconf import BrokerConfigError, check_password, write_broker_config
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.schema import ReadEvent, new_read_id
from edge.transport import mqtt as transport


def _url(broker, who) -> transport.BrokerURL:
    return transport.parse_broker_url(broker.url(who))


def _read(camera: str = "cam-1", agency: str = "sac-pd") -> ReadEvent:
    return ReadEvent(read_id=new_read_id(), camera_id=camera, agency_id=agency, captured_at=datetime.now(timezone.utc),
                     plate="7ABC123", confidence=0.9, char_confidence=[0.9] * 7, box={"x": 1, "y": 1, "w": 40, "h": 20})


def test_generated_dynsec_files(tmp_path, test_registry):
    out = tmp_path / "gen"
    write_broker_config(test_registry, out, auth="acl-file")  # switching modes removes the other's files
    write_broker_config(test_registry, out)  # the default
    assert not (out / "passwd").exists() and not (out / "acl").exists()
    f = out / "dynamic-security.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    auth = (out / "conf.d" / "20-auth.conf").read_text()
    assert "allow_anonymous false" in auth and "plugin_opt_config_file dynamic-security.json" in auth
    assert "password_file" not in auth and "acl_file" not in auth
    ds = json.loads(f.read_text())
    assert ds["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                                      "unsubscribe": True}
    clients = {c["username"]: c for c in ds["clients"]}
    assert sorted(clients) == sorted(p.username for p in test_registry.principals())
    assert "clientid" not in clients["alpr-gate"]
    assert clients["cam-1"]["clientid"] == "edge-cam-1" and clients["ice"]["clientid"] == "agency-ice"
    pw = (out / "secrets" / "ice.pw").read_text().strip()
    c = clients["ice"]
    assert check_password(pw, f"$7${c['iterations']}${c['salt']}${c['password']}")
    roles = {r["rolename"]: {(a["acltype"], a["topic"]) for a in r["acls"] if a["allow"]} for r in ds["roles"]}
    assert roles["agency-ice"] == {("subscribePattern", "alpr/share/ice/#"), ("publishClientReceive", "alpr/share/ice/#")}
    assert roles["camera-cam-1"] == {("publishClientSend", "alpr/raw/cam-1"), ("publishClientSend", "alpr/status/cam-1")}
    assert ("subscribePattern", "$share/+/alpr/raw/#") in roles["gate"]
    # Regenerating keeps the hashes (and back to acl-file removes the plugin's file).
    before = f.read_text()
    write_broker_config(test_registry, out, auth="dynsec")
    assert f.read_text() == before
    write_broker_config(test_registry, out, auth="acl-file")
    assert not f.exists() and (out / "passwd").exists()
    with pytest.raises(BrokerConfigError, match="no such file"):
        write_broker_config(test_registry, out, auth="dynsec", dynsec_plugin=str(tmp_path / "missing.so"))


def test_a_gate_client_id_is_refused_to_every_other_login(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(auth="dynsec")
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(broker.registry, load_policy(), _url(broker, "gate"), audit, GateConfig(gate_id="g1")).start()
    inbox = AgencyInbox(tmp_path / "sac-pd.db")
    rx = AgencyReceiver("sac-pd", _url(broker, "sac-pd"), inbox).start()  # default client id: agency-sac-pd
    try:
        for who in ("ice", "cam-1", "sac-so"):
            for cid in ("alpr-gate-g1", "alpr-gate-g1-fwd", "agency-sac-pd"):
                with pytest.raises(transport.MQTTError, match="[Nn]ot authori[sz]ed"):
                    transport.connect(_url(broker, who), cid, timeout=5)
        cam = transport.connect(_url(broker, "cam-1"), "edge-cam-1")
        ev = _read()
        transport.wait_published([cam.publish("alpr/raw/cam-1", ev.to_json(), qos=1)])
        transport.close(cam)
        # The gate and the receiver kept their sessions: the read reaches sac-pd once.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and inbox.count() < 1:
            time.sleep(0.05)
        assert inbox.read_ids() == [ev.read_id]
        # The control: the same login with its own client id still works.
        transport.close(transport.connect(_url(broker, "ice"), "agency-ice"))
    finally:
        rx.stop()
        inbox.close()
        gate.stop()
        audit.close()


def test_no_other_login_can_join_the_gates_share_group(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(auth="dynsec")
    audits = [SQLiteAuditStore(tmp_path / f"audit-{i}.db") for i in range(2)]
    gates = [Gate(broker.registry, load_policy(), _url(broker, "gate"), audits[i],
                  GateConfig(gate_id=f"g{i}", shared_group="gates")).start() for i in range(2)]
    intruders = []
    try:
        for who in ("ice", "sac-pd", "cam-2"):
            c = transport.connect(_url(broker, who), broker.client_id(who, who),
                                  subscriptions=[("$share/gates/alpr/raw/#", 1), ("alpr/raw/#", 1), ("#", 1)])
            intruders.append(c)
            for topic in ("$share/gates/alpr/raw/#", "alpr/raw/#", "#"):
                assert transport.suback_refused(c.suback_codes[topic]), (who, topic, c.suback_codes[topic])
        cam = transport.connect(_url(broker, "cam-1"), "edge-cam-1")
        reads = [_read() for _ in range(40)]
        transport.wait_published([cam.publish("alpr/raw/cam-1", ev.to_json(), qos=1) for ev in reads])
        transport.close(cam)
        # Every read was audited by one of the two gates: none went to an intruder's share.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(g.snapshot()["received"] for g in gates) < len(reads):
            time.sleep(0.05)
        assert sum(g.snapshot()["received"] for g in gates) == len(reads)
    finally:
        for c in intruders:
            transport.close(c)
        for g in gates:
            g.stop()
        for a in audits:
            a.close()


def _write_registry(tmp_path):
    p = tmp_path / "registry.yaml"
    p.write_text(yaml.safe_dump(TEST_REGISTRY))
    return p


@pytest.mark.parametrize("auth", ["dynsec", "acl-file"])
def test_verify_acl_names_the_gaps_only_the_acl_file_leaves(mosquitto_factory, tmp_path, auth):
    broker = mosquitto_factory(auth=auth, policy=load_policy())  # what broker-config writes by default
    cmd = [sys.executable, "-m", "edge.cli", "verify-acl", "--registry", str(_write_registry(tmp_path)),
           "--broker", broker.url(), "--secrets", str(broker.directory / "secrets"), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and result["failed"] == 0, result
    principals = len(TEST_REGISTRY["cameras"]) + len(TEST_REGISTRY["agencies"])
    refused = [a["id"] for a in TEST_REGISTRY["agencies"] if a["id"] in REFUSED_AGENCIES]
    assert r.stdout.count("(policy ca-sb34@1 refuses it)") == len(refused) > 0
    if auth == "dynsec":
        assert result["gaps"] == 0
        assert r.stdout.count("connect with a gate client id") == principals
        assert "SUBACK" in r.stdout and "$share/verify-" in r.stdout
    else:
        assert result["gaps"] == principals and "GAP" in r.stdout and "--auth dynsec" in r.stderr


@pytest.mark.parametrize("client_id", ["edge", "edge-gate", "agency", "agency-x"])
def test_a_gate_client_id_that_looks_like_a_bound_one_is_refused(client_id):
    from edge.policy.registry import RegistryError, parse_registry

    data = json.loads(json.dumps(TEST_REGISTRY))
    data["gate"]["client_id"] = client_id
    with pytest.raises(RegistryError, match=f"client_id '{client_id}'"):
        parse_registry(data)


@pytest.mark.parametrize("damage", ["{not json", '{"clients": [{"username": "alpr-gate", "iterations": "x"}]}', "[]",
                                    '{"clients": [{"username": "ice", "iterations": 0, "salt": "!!", "password": "zz"}]}'])
def test_a_damaged_dynsec_file_is_rewritten_not_an_error(tmp_path, test_registry, damage):
    out = tmp_path / "gen"
    write_broker_config(test_registry, out)
    (out / "dynamic-security.json").write_text(damage)
    write_broker_config(test_registry, out)
    clients = {c["username"]: c for c in json.loads((out / "dynamic-security.json").read_text())["clients"]}
    for user in ("alpr-gate", "ice"):
        c = clients[user]
        pw = (out / "secrets" / f"{user}.pw").read_text().strip()
        assert check_password(pw, f"$7${c['iterations']}${c['salt']}${c['password']}")


# -- the broker's rules follow the gate's policy ---------------------------------------------------

def test_agencies_the_policy_refuses_get_no_broker_rights(tmp_path, test_registry):
    out = tmp_path / "gen"
    write_broker_config(test_registry, out, policy=load_policy())
    ds = json.loads((out / "dynamic-security.json").read_text())
    roles = {r["rolename"]: r["acls"] for r in ds["roles"]}
    for a in REFUSED_AGENCIES:
        assert roles[f"agency-{a}"] == [], a
    for a in ALLOWED_AGENCIES:
        assert {(x["acltype"], x["topic"]) for x in roles[f"agency-{a}"]} == {
            ("subscribePattern", f"alpr/share/{a}/#"), ("publishClientReceive", f"alpr/share/{a}/#")}
    ice = next(c for c in ds["clients"] if c["username"] == "ice")
    assert "refused by policy ca-sb34@1" in ice["textName"]
    write_broker_config(test_registry, out, policy=load_policy(), auth="acl-file")
    acl = (out / "acl").read_text()
    assert "topic read alpr/share/ice/#" not in acl and "topic read alpr/share/sac-pd/#" in acl
    assert "agency ice (federal, DC): refused by policy ca-sb34@1 for every camera owner: no access" in acl


def test_broker_config_cli_follows_the_policy_unless_told_none(tmp_path):
    from pathlib import Path

    reg = Path(__file__).resolve().parent.parent / "examples" / "registry.yaml"
    roles = {}
    for label, extra in (("default", []), ("none", ["--policy", "none"])):
        out = tmp_path / label
        r = subprocess.run([sys.executable, "-m", "edge.cli", "broker-config", str(reg), "--out", str(out), *extra],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        roles[label] = {x["rolename"]: x["acls"] for x in json.loads((out / "dynamic-security.json").read_text())["roles"]}
    assert roles["default"]["agency-ice"] == [] and roles["default"]["agency-reno-pd"] == []
    assert roles["default"]["agency-sacramento-pd"] != []
    assert roles["none"]["agency-ice"] != []
    r = subprocess.run([sys.executable, "-m", "edge.cli", "broker-config", str(reg), "--out", str(tmp_path / "x"),
                        "--policy", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing.yaml" in r.stderr


def test_a_share_the_gate_should_never_send_still_does_not_reach_a_refused_agency(mosquitto_factory):
    """Two independent layers: were a gate to publish on a refused agency's topic (a bug, a wrong policy
    file), a broker configured with the policy delivers nothing, and the agency cannot even subscribe."""
    broker = mosquitto_factory(policy=load_policy())
    got: dict[str, list] = {"ice": [], "sac-pd": []}
    clients = {a: transport.connect(_url(broker, a), f"agency-{a}", subscriptions=[(f"alpr/share/{a}/#", 1)],
                                    on_message=lambda c, u, m, a=a: got[a].append(m.topic)) for a in got}
    try:
        assert transport.suback_refused(clients["ice"].suback_codes["alpr/share/ice/#"])
        assert not transport.suback_refused(clients["sac-pd"].suback_codes["alpr/share/sac-pd/#"])
        gate = transport.connect(_url(broker, "gate"), "t-gate-bug")
        transport.wait_published([gate.publish("alpr/share/ice/reads", b"{}", qos=1),
                                  gate.publish("alpr/share/sac-pd/reads", b"{}", qos=1)])
        transport.close(gate)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not got["sac-pd"]:
            time.sleep(0.05)
        time.sleep(0.3)
        assert got == {"ice": [], "sac-pd": ["alpr/share/sac-pd/reads"]}
    finally:
        for c in clients.values():
            transport.close(c)


@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_a_retained_raw_read_replayed_on_subscribing_is_never_forwarded(mosquitto_factory, tmp_path, protocol):
    """A camera login can publish a raw read retained: the broker then replays it to every new
    subscription (a gate's fresh session, each resubscription). Cameras never publish retained, so the
    replayed copy is an old message: after retention has blanked the read's id in the audit log, the
    duplicate check could no longer catch it. MQTT 5: the gate subscribes with Retain Handling 2 and
    the broker never sends it; MQTT 3.1.1 has no such option: the copy is refused (refuse:retained)."""
    broker = mosquitto_factory()
    v5 = protocol == "v5"
    cam = transport.connect(_url(broker, "cam-1"), "edge-cam-1")
    ev = _read()
    transport.wait_published([cam.publish("alpr/raw/cam-1", ev.to_json(), qos=1, retain=True)])
    transport.close(cam)
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    inbox = AgencyInbox(tmp_path / "sac-pd.db")
    rx = AgencyReceiver("sac-pd", _url(broker, "sac-pd"), inbox).start()
    gate = Gate(broker.registry, load_policy(), _url(broker, "gate"), audit,
                GateConfig(gate_id="g-ret", protocol=transport.MQTT_V5 if v5 else transport.MQTT_V311)).start()
    try:
        if v5:
            time.sleep(1.0)
            assert audit.records() == [] and gate.snapshot()["received"] == 0  # never sent to the gate
        else:
            assert gate.wait_idle(1, timeout=15)
            time.sleep(0.3)
            recs = audit.records()
            assert [(r["read_id"], r["outcome"], r["detail"].split(":")[0] + ":" + r["detail"].split(":")[1])
                    for r in recs] == [(ev.read_id, "rejected", "refuse:retained")]
        assert inbox.count() == 0 and gate.snapshot()["forwarded"] == {}
    finally:
        gate.stop()
        rx.stop()
        inbox.close()
        audit.close()


@pytest.mark.parametrize("auth", ["dynsec", "acl-file"])
def test_operators_read_the_cameras_metrics_with_the_gate_login_and_no_one_else_does(mosquitto_factory, auth):
    """alpr/status/<camera> (retained metrics) was readable by no login at all: the README told operators
    to watch it. The gate's login reads it (as it reads the gates' status); agencies and cameras do not."""
    broker = mosquitto_factory(auth=auth)
    cam = transport.connect(_url(broker, "cam-1"), "edge-cam-1")
    transport.wait_published([cam.publish("alpr/status/cam-1", b'{"fps": 25}', qos=1, retain=True)])
    transport.close(cam)
    ops = transport.Collector(_url(broker, "gate"), ["alpr/status/#"], client_id="t-ops").start()
    spy = transport.Collector(_url(broker, "sac-pd"), ["alpr/status/#"], client_id="agency-sac-pd").start()
    try:
        assert ops.wait_for(1, timeout=5) and ops.snapshot() == [("alpr/status/cam-1", b'{"fps": 25}')]
        time.sleep(0.3)
        assert spy.snapshot() == []
    finally:
        ops.stop()
        spy.stop()
