"""verify-acl on a dynamic-security broker whose file lost a login's client id binding (hand-edited,
or written by hand from an older example): that login could connect with a gate's client id and take
over its session, yet verify-acl called it a GAP (the acl-file mode's documented gap) and exited 0.
A broker that refuses subscriptions at SUBACK is not in acl-file mode: there it is a failure."""

from __future__ import annotations

import json
import subprocess

from edge.policy.policy import load_policy
from edge.policy.verify_acl import verify_acl
from edge.transport import mqtt as transport


def _restart_with(broker, edit):
    """Stop `broker`, edit its dynamic-security.json, start mosquitto on it again as is."""
    broker.stop()
    f = broker.directory / "dynamic-security.json"
    data = json.loads(f.read_text())
    edit(data)
    f.write_text(json.dumps(data))
    log = open(broker.directory / "mosquitto.log", "ab")
    broker.process = subprocess.Popen([broker.binary, "-c", "mosquitto.conf"], cwd=broker.directory,
                                      stdout=log, stderr=subprocess.STDOUT)
    log.close()
    import time

    from edge.transport.mosquitto import _accepts

    deadline = time.monotonic() + 10
    while not _accepts(broker.host, broker.port):
        assert time.monotonic() < deadline and broker.process.poll() is None, broker.log_tail()
        time.sleep(0.05)


def test_a_lost_client_id_binding_fails_on_a_dynsec_broker(mosquitto_factory):
    broker = mosquitto_factory(policy=load_policy())

    def unbind(data):
        for c in data["clients"]:
            if c["username"] in ("cam-2", "sac-so"):
                del c["clientid"]

    _restart_with(broker, unbind)
    checks = verify_acl(broker.registry, transport.parse_broker_url(broker.url()), broker.secrets,
                        settle_s=0.5, policy=load_policy())
    identity = {c.principal: c for c in checks if c.attempt == "connect with a gate client id"}
    assert {u for u, c in identity.items() if not c.ok} == {"cam-2", "sac-so"}
    for u in ("cam-2", "sac-so"):
        assert not identity[u].gap and "not bound" in identity[u].how, identity[u]
    assert not [c for c in checks if c.gap]


def test_a_forged_share_message_that_reaches_an_agency_fails(mosquitto_factory):
    """The monitor that watched for forged publishes logs in as the gate, which may not read share
    topics: a broker that let ice publish on sac-pd's share topic (reads in its inbox that no gate
    decided or audited) passed as 'dropped by the broker (never delivered)' though sac-pd's own
    connection in the same check received them."""
    broker = mosquitto_factory(policy=load_policy())

    def let_ice_and_cam3_publish_shares(data):
        for r in data["roles"]:
            if r["rolename"] in ("agency-ice", "camera-cam-3"):
                r["acls"].append({"acltype": "publishClientSend", "topic": "alpr/share/#", "allow": True})

    _restart_with(broker, let_ice_and_cam3_publish_shares)
    checks = verify_acl(broker.registry, transport.parse_broker_url(broker.url()), broker.secrets,
                        settle_s=0.5, policy=load_policy())
    failed = {(c.principal, c.attempt) for c in checks if not c.ok}
    assert ("ice", "publish forged message on alpr/share/sac-pd/reads") in failed
    assert ("ice", "publish forged message on alpr/share/sac-so/reads") in failed
    assert ("cam-3", "publish forged message on alpr/share/sac-pd/reads") in failed
    # ...and only where someone received it: the topics of agencies the policy refuses have no reader.
    assert all(c.principal in ("ice", "cam-3") and "alpr/share/" in c.attempt for c in checks if not c.ok), failed
