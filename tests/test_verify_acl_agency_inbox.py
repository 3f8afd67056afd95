"""verify-acl checks an agency on its own persistent session (the only client id its login may
use) and must leave that session as it found it: its canary, published at QoS 1, stayed there
unacknowledged, so the agency's receiver got it on its next start and kept it in its inbox's
`rejected` table as a malformed read, where an agency looks for real problems. The canaries now go
at QoS 0: delivered to the check's connections while they listen, never queued for a receiver.
(The embedded broker now keeps unacknowledged deliveries and queues no QoS 0 as Mosquitto does, so
the same holds there.)"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from edge.agency.receiver import AgencyInbox, AgencyReceiver
from edge.policy.brokerconf import share_topic
from edge.policy.registry import Secrets
from edge.policy.verify_acl import verify_acl
from edge.schema import ReadEvent, new_read_id
from edge.transport import mqtt as transport

QUEUED = 25  # reads shared while the agency's receiver is away: more than Mosquitto's 20 in flight


def _forward(agency: str) -> bytes:
    read = ReadEvent(read_id=new_read_id(), camera_id="cam-1", agency_id="sac-pd", captured_at=datetime.now(timezone.utc),
                     plate="ABC1234", confidence=0.9, char_confidence=[0.9] * 7, box={"x": 1, "y": 1, "w": 10, "h": 5})
    return json.dumps({"schema_version": 1, "policy": "ca-sb34@1", "recipient": agency,
                       "rule": "allow:in-jurisdiction-public-agency", "read": json.loads(read.to_json())}).encode()


def _receive(url, inbox, protocol, agency="sac-pd", until=lambda rx: True, settle_s=1.5):
    rx = AgencyReceiver(agency, url, inbox, protocol=protocol).start()
    deadline = time.monotonic() + 20
    while not until(rx) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle_s)  # anything else the session held arrives by now
    rx.stop()
    return rx


def test_verify_acl_leaves_nothing_in_an_agencys_rejected_table(mosquitto, tmp_path):
    url = lambda who=None: transport.parse_broker_url(mosquitto.url(who))  # noqa: E731
    protocol = transport.MQTT_V5
    inbox = AgencyInbox(tmp_path / "sac-pd.db")
    _receive(url("sac-pd"), inbox, protocol, settle_s=0)  # its persistent session exists, its receiver stopped
    gate = transport.connect(url("gate"), "verify-acl-test-gate", protocol=protocol)
    transport.wait_published([gate.publish(share_topic("sac-pd"), _forward("sac-pd"), qos=1) for _ in range(QUEUED)])
    transport.close(gate)

    checks = verify_acl(mosquitto.registry, url(), Secrets(mosquitto.directory / "secrets"), settle_s=1.0)
    failed = [c for c in checks if not c.ok and not c.gap]
    assert not failed, failed
    assert sum(c.attempt.startswith("control") and c.ok for c in checks) == len(mosquitto.registry.agencies)

    rx = _receive(url("sac-pd"), inbox, protocol, until=lambda rx: rx.snapshot()["stored"] >= QUEUED)
    assert inbox.rejected() == [], inbox.rejected()
    assert rx.snapshot()["stored"] == QUEUED == inbox.count()  # the queued reads, all kept for it
    inbox.close()


def test_every_canary_arrives_at_qos_0_on_the_embedded_broker(tmp_path, test_registry):
    """amqtt lost a QoS 0 message sent just before its publisher's DISCONNECT (the last agency's
    canary, when the gate's connection closed before the settle time): a failed control."""
    from edge.transport.embedded import EmbeddedBroker

    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for p in test_registry.principals():
        f = secrets_dir / p.credentials.split(":", 1)[1]
        f.write_text(f"password-of-{p.username}")
        f.chmod(0o600)
    secrets = Secrets(secrets_dir)
    with EmbeddedBroker(test_registry, secrets) as b:
        checks = verify_acl(test_registry, b.url(), secrets, protocol=transport.MQTT_V311, settle_s=1.0)  # amqtt: 3.1.1
    failed = [c for c in checks if not c.ok and not c.gap]
    assert not failed, failed
    assert sum(c.attempt.startswith("control") and c.ok for c in checks) == len(test_registry.agencies)
