"""`alpr-edge demo` (embedded amqtt broker and Mosquitto) and the embedded broker's registry ACL."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edge.demo.run import demo_registry, run_demo, synthetic_reads
from edge.policy.registry import random_secrets
from edge.transport import mqtt as transport
from edge.transport.embedded import EmbeddedBroker, filter_within, topic_matches

ALLOWED = {"oakland-pd", "alameda-so"}
REFUSED = {"reno-pd", "ice", "norcal-task-force"}


def check_demo_result(result: dict, reads: int, wildcard: str = "refused", own_refused: set[str] = REFUSED):
    assert result["reads_published"] == reads
    # the broker's rules follow the policy (embedded, broker-config's default): the refused agencies
    # may not even subscribe to their own share topic
    assert {a for a, v in result["agencies"].items() if v["own_topic_subscription"] == "refused"} == own_refused
    # every agency also tried '#' (amqtt and the dynamic-security plugin refuse it at SUBACK)
    assert {a["wildcard_subscription"] for a in result["agencies"].values()} == {wildcard}
    assert result["leaks"] == 0 and result["audit_verified"]
    assert result["audit_records"] == reads + result["forged_published"]
    ag = result["agencies"]
    assert set(ag) == ALLOWED | REFUSED
    for a in ALLOWED:
        assert ag[a]["forwarded"] == reads and ag[a]["received"] == reads, a
    for a in REFUSED:
        assert ag[a]["forwarded"] == 0 and ag[a]["received"] == 0, a
        assert ag[a]["refused"] == reads + result["forged_published"]
    assert ag["ice"]["rules"] == ["refuse:recipient-kind"]
    assert ag["reno-pd"]["rules"] == ["refuse:out-of-jurisdiction"]
    assert ag["norcal-task-force"]["rules"] == ["refuse:on-behalf-of"]
    assert result["gate_rules"] == {"refuse:camera-topic-mismatch": 1, "refuse:malformed": 2}
    # per agency, what decided each message (from the audit log): every message once, by its own rule
    for a in ALLOWED | REFUSED:
        decided = ag[a]["decided_by"]
        assert sum(decided.values()) == ag[a]["forwarded"] + ag[a]["refused"], a
        assert decided["refuse:malformed"] == 2 and decided["refuse:camera-topic-mismatch"] == 1, a
    for a in ALLOWED:
        assert ag[a]["decided_by"]["allow:in-jurisdiction-public-agency"] == reads, a
    assert ag["ice"]["decided_by"]["refuse:recipient-kind"] == reads
    # after the run, staff of an allowed agency search its inbox: answered for an allowed purpose,
    # refused for immigration enforcement and on behalf of ICE; all three on its intact access log
    searches = result["agency_searches"]
    assert [(q["purpose"], q["on_behalf_of"], q["answered"]) for q in searches] == [
        ("criminal-investigation", None, True), ("immigration-enforcement", None, False),
        ("criminal-investigation", "ice", False)]
    assert searches[0]["agency"] in ALLOWED and searches[0]["reads"] >= 1
    assert [q["reads"] for q in searches[1:]] == [0, 0] and [q["access_log_entry"] for q in searches] == [1, 2, 3]
    assert result["access_log_intact"]


def test_demo_cli_embedded(tmp_path):
    html = tmp_path / "demo.html"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--synthetic-reads", "40", "--json", "--html", str(html)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    check_demo_result(result, 40)
    assert result["broker"].startswith("embedded amqtt")
    page = html.read_text()
    assert "norcal-task-force" in page and "refuse:on-behalf-of" in page
    assert 'id="searches"' in page and "immigration-enforcement" in page and "California Values Act" in page


@pytest.mark.parametrize("auth", ["acl-file", "dynsec"])
def test_demo_on_mosquitto(mosquitto_factory, tmp_path, auth):
    """dynsec: cameras and agencies connect with their bound client ids, '#' is refused at SUBACK."""
    broker = mosquitto_factory(registry=demo_registry(), name="demo-broker", auth=auth)
    r = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--synthetic-reads", "40", "--json", "--broker", broker.url(),
                        "--secrets", str(broker.directory / "secrets"), "--audit", str(tmp_path / "audit.db")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    # a broker whose rules do not follow a policy (the gate alone refuses)
    check_demo_result(result, 40, "refused" if auth == "dynsec" else "granted, filtered", own_refused=set())
    assert result["broker"].startswith("mqtt://")
    v = subprocess.run([sys.executable, "-m", "edge.cli", "audit", "verify", str(tmp_path / "audit.db")],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "intact: 43 records" in v.stdout


def test_read_source_is_pluggable():
    reg = demo_registry()
    reads = list(synthetic_reads(reg, 6, seed=1))
    only_sheriff = [(c, ev) for c, ev in reads if c == "alco-cam-1"]
    res = run_demo(iter(only_sheriff), reg, with_forgeries=False)
    assert res.reads_published == len(only_sheriff) == 2
    assert res.agencies["alameda-so"]["received"] == 2 and res.leaks == 0
    with pytest.raises(ValueError, match="not in the registry"):
        run_demo(iter([("cam-x", reads[0][1])]), reg, with_forgeries=False)


def test_a_kept_audit_file_run_twice_counts_each_run_alone(tmp_path):
    """demo --audit FILE keeps the log across runs; each run's tables (inboxes, decided_by, leaks)
    are its own. Found when a second run counted the first run's inbox rows as leaks."""
    reg = demo_registry()
    audit = str(tmp_path / "audit.db")
    for run in (1, 2):
        res = run_demo(synthetic_reads(reg, 8, seed=run), reg, audit_path=audit, with_forgeries=False)
        assert res.leaks == 0, run
        assert res.audit_records == 8 * run  # one chain, growing
        for a in ALLOWED:
            assert res.agencies[a]["received"] == 8, (run, a)
            assert res.agencies[a]["decided_by"] == {"allow:in-jurisdiction-public-agency": 8}, (run, a)
        assert len(res.timeline) == 8


def test_made_up_reads_lie_in_the_past_so_the_gate_takes_them_all():
    """More reads than the gate's 300 s clock-skew allowance: none may be dated in the future."""
    from datetime import datetime, timezone

    reads = list(synthetic_reads(demo_registry(), 400))
    now = datetime.now(timezone.utc)
    assert all(ev.captured_at <= now for _cam, ev in reads)
    stamps = [ev.captured_at for _cam, ev in reads]
    assert stamps == sorted(stamps) and len(set(stamps)) == 400


@pytest.mark.parametrize(
    "requested, allowed, ok",
    [
        ("alpr/share/x/#", "alpr/share/x/#", True),
        ("alpr/share/x/reads", "alpr/share/x/#", True),
        ("alpr/share/x", "alpr/share/x/#", True),  # '#' also matches the parent level
        ("alpr/share/+/reads", "alpr/share/x/#", False),
        ("alpr/share/#", "alpr/share/x/#", False),
        ("#", "alpr/share/x/#", False),
        ("+/share/x/reads", "alpr/share/x/#", False),
        ("alpr/share/y/#", "alpr/share/x/#", False),
        ("alpr/raw/cam-1", "alpr/raw/#", True),
        ("alpr/raw/+", "alpr/raw/#", True),
    ],
)
def test_subscription_filter_containment(requested, allowed, ok):
    assert filter_within(requested, allowed) is ok


def test_topic_matching():
    assert topic_matches("alpr/share/x/#", "alpr/share/x/reads")
    assert not topic_matches("alpr/share/x/#", "alpr/share/y/reads")
    assert topic_matches("alpr/raw/+", "alpr/raw/cam-1") and not topic_matches("alpr/raw/+", "alpr/raw/a/b")


def test_embedded_broker_acl():
    reg = demo_registry()
    secrets = random_secrets(reg)
    v311 = transport.MQTT_V311
    with EmbeddedBroker(reg, secrets) as b:
        ice = transport.Collector(b.url(reg.agency("ice")), ["alpr/share/ice/#", "#", "alpr/share/oakland-pd/#", "alpr/raw/#"],
                                  client_id="agency-ice", protocol=v311).start()
        codes = ice.suback_codes
        assert not transport.suback_refused(codes["alpr/share/ice/#"])
        for t in ("#", "alpr/share/oakland-pd/#", "alpr/raw/#"):
            assert transport.suback_refused(codes[t]), t
        oak = transport.Collector(b.url(reg.agency("oakland-pd")), ["alpr/share/oakland-pd/#"], client_id="agency-oakland-pd",
                                  protocol=v311).start()
        gate = transport.connect(b.url(reg.gate), "t-gate", protocol=v311)
        transport.wait_published([gate.publish("alpr/share/oakland-pd/reads", b"a", qos=1),
                                  gate.publish("alpr/share/ice/reads", b"b", qos=1)])
        cam = transport.connect(b.url(reg.camera("oak-cam-1")), "edge-oak-cam-1", protocol=v311)
        # Publishes outside the camera's ACL are dropped (MQTT 3.1.1 has no refusal code).
        transport.wait_published([cam.publish("alpr/share/ice/reads", b"forged", qos=1),
                                  cam.publish("alpr/share/oakland-pd/reads", b"forged", qos=1)])
        time.sleep(0.3)
        assert ice.snapshot() == [("alpr/share/ice/reads", b"b")]
        assert oak.snapshot() == [("alpr/share/oakland-pd/reads", b"a")]
        for bad in (b.url(reg.gate).with_login("alpr-gate", "wrong"), b.url(), b.url().with_login("nobody", "x")):
            with pytest.raises(transport.MQTTError, match="refused login"):
                transport.connect(bad, "t-bad", protocol=v311)
        # Camera and agency logins only with their own client ids: none can take the gate's session.
        for who, cid in ((reg.agency("ice"), "t-gate"), (reg.camera("oak-cam-1"), "t-gate"), (reg.agency("ice"), "edge-oak-cam-1")):
            with pytest.raises(transport.MQTTError, match="refused login"):
                transport.connect(b.url(who), cid, protocol=v311)
        for c in (ice, oak):
            c.stop()
        transport.close(gate)
        transport.close(cam)


def test_a_one_camera_registry_forges_nothing_genuine_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    """Before: with one camera the 'speaks for another camera' forgery was a genuine read of that camera
    (forwarded: the demo reported 3 leaks and failed), and run_demo without an audit path left its
    temporary folder (audit log, inboxes: plates and times) behind."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    reg = demo_registry()
    one = reg.model_copy(update={"cameras": [reg.cameras[0]]})
    one.model_post_init(None)
    reads = [(c, ev) for c, ev in synthetic_reads(one, 4, seed=2)]
    res = run_demo(iter(reads), one)
    assert res.leaks == 0 and res.audit_verified
    assert res.rules.get("refuse:camera-topic-mismatch") == 1
    assert list(tmp_path.glob("alpr-demo-*")) == []
