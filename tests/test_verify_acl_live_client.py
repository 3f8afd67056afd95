"""verify-acl logs in with each login's own client id: a camera's edge node left running takes that id
back (and the check takes it again: each disconnects the other), so what the check saw for that login
is incomplete. It used to say nothing of it; now it is a FAIL naming the login and the client id."""

from __future__ import annotations

from edge.policy.registry import Secrets
from edge.policy.verify_acl import verify_acl
from edge.transport import mqtt as transport


def test_a_running_client_with_a_logins_client_id_is_named(mosquitto):
    url = transport.parse_broker_url(mosquitto.url("cam-1"))
    node = transport.connect(url, "edge-cam-1")  # paho reconnects on its own: a running node
    try:
        checks = verify_acl(mosquitto.registry, transport.parse_broker_url(mosquitto.url()),
                            Secrets(mosquitto.directory / "secrets"), settle_s=1.5)
    finally:
        transport.close(node)
    bad = [c for c in checks if c.attempt == "keep its connection for the check"]
    assert [c.principal for c in bad] == ["cam-1"] and not bad[0].ok
    assert "'edge-cam-1'" in bad[0].how and "stop that" in bad[0].how
