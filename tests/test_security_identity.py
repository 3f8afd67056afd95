"""Identity: TLS with a generated CA end to end (client certificates optional), credentials never in
logs or error messages, secrets not readable by other users.

(Per-login topic rules - a camera publishing as another, an agency reading another's topic,
`alpr/raw/#` or `#`, anonymous and wrong-password logins - are checked exhaustively by
`verify-acl` in test_gate_mosquitto.py; here the same rules are checked on the TLS listener.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import pytest
import yaml

from conftest import TEST_REGISTRY
from edge.policy.audit import SQLiteAuditStore
from edge.policy.brokerconf import TlsListener, write_broker_config
from edge.policy.gate import Gate, GateConfig
from edge.policy.policy import load_policy
from edge.policy.registry import RegistryError, Secrets
from edge.policy.tls import client_context, write_tls_bundle
from edge.schema import ReadEvent, new_read_id
from edge.transport import mqtt as transport
from edge.transport.mosquitto import MosquittoBroker, free_port
from edge.transport.outbox import Outbox, publisher_for_url


def make_read() -> ReadEvent:
    return ReadEvent(read_id=new_read_id(), camera_id="cam-1", agency_id="sac-pd", captured_at=datetime.now(timezone.utc),
                     plate="7TLS123", confidence=0.9, char_confidence=[0.9] * 7, box={"x": 1, "y": 2, "w": 30, "h": 10})


def wait_until(cond, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def tls_broker(test_registry, tmp_path):
    bundle = write_tls_bundle(tmp_path / "tls", hosts=["localhost", "127.0.0.1"], clients=["sac-pd"])
    port = free_port()
    broker = MosquittoBroker(test_registry, tmp_path / "broker",
                             tls=TlsListener(port, str(bundle.server_cert), str(bundle.server_key), str(bundle.ca_cert),
                                             bind="127.0.0.1"))
    broker.start()
    yield broker, bundle, port
    broker.stop()


def tls_url(broker, port, who, ca) -> transport.BrokerURL:
    user, pw = broker.credentials(who)
    return transport.parse_broker_url(f"mqtts://{user}:{pw}@127.0.0.1:{port}?ca={ca}")


def test_generated_ca_keys_are_private_and_certificates_chain(tls_broker):
    _broker, b, _port = tls_broker
    assert mode(b.directory) == 0o700
    for key in (b.ca_key, b.server_key, b.clients["sac-pd"][1]):
        assert mode(key) == 0o600, key
    from cryptography import x509

    server = x509.load_pem_x509_certificate(b.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(b.ca_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_reads_flow_end_to_end_over_tls_and_the_acl_holds_there(tls_broker, tmp_path):
    broker, b, port = tls_broker
    audit = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(broker.registry, load_policy(), tls_url(broker, port, "gate", b.ca_cert), audit,
                GateConfig(status_every_s=0, batch_wait_s=0.01)).start()
    got: dict[str, list] = {"sac-pd": [], "ice": []}
    agencies = [
        transport.connect(tls_url(broker, port, "sac-pd", b.ca_cert), "agency-sac-pd", subscriptions=[("alpr/share/sac-pd/#", 1)],
                          on_message=lambda c, u, m: got["sac-pd"].append(m.payload)),
        transport.connect(tls_url(broker, port, "ice", b.ca_cert), "agency-ice", subscriptions=[("#", 1), ("alpr/raw/#", 1)],
                          on_message=lambda c, u, m: got["ice"].append(m.payload)),
    ]
    outbox = Outbox(tmp_path / "outbox.db")
    user, pw = broker.credentials("cam-1")
    pub = publisher_for_url(outbox, f"mqtts://{user}:{pw}@127.0.0.1:{port}?ca={b.ca_cert}", "edge-cam-1")
    pub.start()
    try:
        reads = [make_read() for _ in range(5)]
        for r in reads:
            outbox.put("alpr/raw/cam-1", r.to_json(), r.read_id)
        # A camera publishing as another camera over TLS: the broker refuses it, it stays in the outbox.
        forged = make_read()
        outbox.put("alpr/raw/cam-2", forged.to_json(), forged.read_id)
        pub.notify()
        assert wait_until(lambda: len(got["sac-pd"]) == 5, 30), got
        assert {json.loads(p)["read"]["read_id"] for p in got["sac-pd"]} == {r.read_id for r in reads}
        assert wait_until(lambda: pub.refused == 1, 10) and outbox.read_ids() == [forged.read_id]
        time.sleep(0.5)
        assert got["ice"] == []  # a federal login subscribed to '#' and alpr/raw/# over TLS gets nothing
        assert audit.verify().ok and audit.head()[0] == 5
    finally:
        pub.stop()
        gate.stop()
        audit.close()
        for c in agencies:
            transport.close(c)


def test_tls_refuses_the_wrong_ca_plain_text_and_anonymous(tls_broker, tmp_path):
    broker, b, port = tls_broker
    other = write_tls_bundle(tmp_path / "other-ca", hosts=["127.0.0.1"])
    with pytest.raises(transport.MQTTError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        transport.connect(tls_url(broker, port, "sac-pd", other.ca_cert), "tls-wrong-ca", timeout=10)
    # Plain MQTT on the TLS port: no CONNACK, the broker drops the connection.
    user, pw = broker.credentials("sac-pd")
    with pytest.raises(transport.MQTTError):
        transport.connect(transport.parse_broker_url(f"mqtt://{user}:{pw}@127.0.0.1:{port}"), "tls-plain", timeout=5)
    anonymous = transport.parse_broker_url(f"mqtts://127.0.0.1:{port}?ca={b.ca_cert}")
    with pytest.raises(transport.MQTTError, match="refused"):
        transport.connect(anonymous, "tls-anon", timeout=10)
    with pytest.raises(transport.MQTTError, match="refused"):
        transport.connect(tls_url(broker, port, "sac-pd", b.ca_cert).with_login("sac-pd", "wrong"), "tls-bad", timeout=10)


def _connect_with_context(port, ctx, user, pw, timeout=10, client_id="") -> int | str:
    """CONNACK reason value, or the error text when the TLS handshake fails."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"tls-cert-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.username_pw_set(user, pw)
    result: dict = {}
    c.on_connect = lambda cl, u, f, rc, p: result.setdefault("rc", rc.value)
    c.on_disconnect = lambda cl, u, f, rc, p: result.setdefault("rc", f"disconnected: {rc}")
    try:
        c.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError) as err:
        return str(err)
    c.loop_start()
    try:
        if not wait_until(lambda: "rc" in result, timeout):
            return "no CONNACK"
        return result["rc"]
    finally:
        c.disconnect()
        c.loop_stop()


def test_client_certificates_when_the_listener_requires_them(test_registry, tmp_path):
    b = write_tls_bundle(tmp_path / "tls", hosts=["127.0.0.1"], clients=["sac-pd"])
    stranger = write_tls_bundle(tmp_path / "stranger", hosts=["127.0.0.1"], clients=["sac-pd"])
    port = free_port()
    # Listener options must sit in the same file as their `listener` line: Mosquitto applies an
    # option in a later conf.d file to the default listener (and opens port 1883 for it).
    listener = (f"listener {port} 127.0.0.1\ncertfile {b.server_cert}\nkeyfile {b.server_key}\ncafile {b.ca_cert}\n"
                "tls_version tlsv1.2\nrequire_certificate true\n")
    broker = MosquittoBroker(test_registry, tmp_path / "broker", extra_conf={"conf.d/50-tls.conf": listener})
    broker.start()
    try:
        user, pw = broker.credentials("sac-pd")
        cert, key = b.clients["sac-pd"]
        assert _connect_with_context(port, client_context(b.ca_cert, cert, key), user, pw, client_id="agency-sac-pd") == 0
        # No client certificate, or one from another CA: the handshake fails.
        assert _connect_with_context(port, client_context(b.ca_cert), user, pw) != 0
        s_cert, s_key = stranger.clients["sac-pd"]
        assert _connect_with_context(port, client_context(b.ca_cert, s_cert, s_key), user, pw) != 0
        # A valid certificate does not replace the password.
        assert _connect_with_context(port, client_context(b.ca_cert, cert, key), user, "wrong", client_id="agency-sac-pd") != 0
    finally:
        broker.stop()


# -- credentials never logged -----------------------------------------------------------------------

def test_broker_url_errors_never_echo_the_password():
    for bad in ("mqtt://gate:s3cretPW@host:99999", "http://gate:s3cretPW@host", "mqtt://gate:s3cretPW@host/path",
                "mqtt://gate:s3cretPW@host?nope=1", "mqtt://gate:s3cretPW@[::1"):
        with pytest.raises(transport.BrokerURLError) as err:
            transport.parse_broker_url(bad)
        assert "s3cretPW" not in str(err.value), str(err.value)
    assert "s3cretPW" not in transport.parse_broker_url("mqtt://gate:s3cretPW@host").redacted()


def test_gate_and_camera_logs_never_show_a_password(mosquitto, tmp_path, caplog):
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(TEST_REGISTRY))
    user, pw = mosquitto.credentials("gate")
    url = f"mqtt://{user}:{pw}@127.0.0.1:{mosquitto.port}"
    base = [sys.executable, "-m", "edge.cli", "-vv", "gate", "--registry", str(reg), "--audit", str(tmp_path / "a.db")]
    for broker_url, rc in ((url, 0), (url.replace(pw, pw + "x"), 1), (url.replace(str(mosquitto.port), "99999"), 2)):
        r = subprocess.run(base + ["--broker", broker_url, "--run-for", "1", "--json"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == rc, r.stderr[-1500:]
        assert pw not in r.stdout + r.stderr, "a password was printed"
    # A camera's outbox publisher refused by the broker, with every logger at DEBUG.
    cam_user, cam_pw = mosquitto.credentials("cam-1")
    with caplog.at_level(logging.DEBUG):
        pub = publisher_for_url(Outbox(tmp_path / "o.db"), f"mqtt://{cam_user}:{cam_pw}x@127.0.0.1:{mosquitto.port}", "pw-cam")
        pub.start()
        try:
            assert wait_until(lambda: pub.last_error is not None, 20)
        finally:
            pub.stop()
    assert cam_pw not in caplog.text and caplog.text
    assert pw not in (mosquitto.directory / "mosquitto.log").read_text()
    assert cam_pw not in (mosquitto.directory / "mosquitto.log").read_text()


# -- secrets on disk --------------------------------------------------------------------------------

def test_generated_secrets_and_broker_files_are_private_whatever_the_umask(test_registry, tmp_path):
    old = os.umask(0)
    try:
        write_broker_config(test_registry, tmp_path / "out", secrets_dir=tmp_path / "out" / "secrets", port=free_port())
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert mode(out / "secrets") == 0o700
    files = list((out / "secrets").iterdir())
    assert len(files) == len(test_registry.principals())
    for f in files + [out / "dynamic-security.json"]:
        assert mode(f) == 0o600, f
    # Hashes only in the logins file: no password from the secrets directory appears in any generated file.
    passwords = [f.read_text().strip() for f in files]
    for f in out.rglob("*"):
        if f.is_file() and f.parent.name != "secrets":
            text = f.read_text(errors="replace")
            assert not any(p in text for p in passwords), f


def test_a_secret_readable_by_every_user_is_refused(test_registry, tmp_path):
    d = tmp_path / "secrets"
    s = Secrets(d, generate=True)
    pw = s.password(test_registry.gate)
    path = d / "alpr-gate.pw"
    os.chmod(path, 0o644)
    with pytest.raises(RegistryError, match="chmod 600") as err:
        Secrets(d).password(test_registry.gate)
    assert pw not in str(err.value)
    os.chmod(path, 0o640)  # group-readable (e.g. a service group) is the operator's choice
    assert Secrets(d).password(test_registry.gate) == pw
