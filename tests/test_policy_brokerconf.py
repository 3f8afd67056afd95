"""`broker-config`: Mosquitto files generated from the registry (hashes, ACL, modes, TLS, the committed example)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.policy.brokerconf import TlsListener, check_password, hash_password, write_broker_config
from edge.policy.registry import load_registry
from edge.transport import mqtt as transport

ROOT = Path(__file__).resolve().parent.parent


def test_hash_is_mosquitto_passwd_format(tmp_path):
    h = hash_password("correct horse")
    assert h.startswith("$7$101$") and check_password("correct horse", h) and not check_password("wrong", h)
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.skip("mosquitto_passwd not installed (the mosquitto fixture tests logins with our hashes anyway)")
    f = tmp_path / "pw"
    subprocess.run([tool, "-b", "-c", str(f), "alice", "correct horse"], check=True)
    theirs = f.read_text().strip().split(":", 1)[1]
    assert check_password("correct horse", theirs) and not check_password("correct horsE", theirs)


def test_generated_files_acl_file_mode(tmp_path, test_registry):
    """--auth acl-file (a Mosquitto without the dynamic-security plugin): passwd + acl."""
    out = tmp_path / "gen"
    write_broker_config(test_registry, out, port=18999, auth="acl-file")
    for name in ("passwd", "acl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    for f in (out / "secrets").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert "allow_anonymous false" in (out / "conf.d" / "20-auth.conf").read_text()
    assert "listener 18999 127.0.0.1" in (out / "conf.d" / "10-listeners.conf").read_text()
    assert "include_dir conf.d" in (out / "mosquitto.conf").read_text()
    users = [line.split(":")[0] for line in (out / "passwd").read_text().splitlines()]
    assert sorted(users) == sorted(p.username for p in test_registry.principals())
    # ACL: parse it into user -> rules and check exactly what each may do.
    rules: dict[str, list[str]] = {}
    user = None
    for line in (out / "acl").read_text().splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            rules[user] = []
        elif line.startswith("topic "):
            assert user is not None, "a rule before any user line applies to everyone"
            rules[user].append(line[6:])
        else:
            assert not line.strip() or line.startswith("#"), line
    assert rules["alpr-gate"] == ["read alpr/raw/#", "read alpr/gate/status/#", "read alpr/status/#", "write alpr/share/#",
                                  "write alpr/gate/status/#"]
    assert rules["cam-1"] == ["write alpr/raw/cam-1", "write alpr/status/cam-1"]
    assert rules["ice"] == ["read alpr/share/ice/#"]
    assert rules["task-force"] == ["read alpr/share/task-force/#"]
    assert not any("pattern" in line for line in (out / "acl").read_text().splitlines() if not line.startswith("#"))
    # A second run keeps the passwords (secrets already exist) and drops a TLS listener no longer asked for.
    write_broker_config(test_registry, out, port=18999, tls=TlsListener(18998, "server.crt", "server.key"), auth="acl-file")
    assert (out / "conf.d" / "50-tls.conf").exists()
    before = (out / "secrets" / "ice.pw").read_text()
    passwd = (out / "passwd").read_text()
    write_broker_config(test_registry, out, port=18999, auth="acl-file")
    assert not (out / "conf.d" / "50-tls.conf").exists()
    assert (out / "secrets" / "ice.pw").read_text() == before
    assert (out / "passwd").read_text() == passwd  # unchanged passwords keep their hashes
    (out / "secrets" / "ice.pw").write_text("a new password\n")
    write_broker_config(test_registry, out, port=18999, auth="acl-file")
    ice = [line for line in (out / "passwd").read_text().splitlines() if line.startswith("ice:")][0]
    assert check_password("a new password", ice.split(":", 1)[1])


def test_committed_example_matches_the_registry(tmp_path):
    """broker_config/generated is what `broker-config examples/registry.yaml` writes."""
    committed = ROOT / "broker_config" / "generated"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "broker-config", str(ROOT / "examples" / "registry.yaml"),
                        "--out", str(tmp_path / "gen")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rel in ("mosquitto.conf", "conf.d/10-listeners.conf", "conf.d/20-auth.conf",
                "conf.d/30-persistence.conf", "conf.d/40-limits.conf"):
        assert (committed / rel).read_text() == (tmp_path / "gen" / rel).read_text(), rel
    assert not (committed / "passwd").exists() and not (committed / "acl").exists()  # the acl-file mode's
    ours = json.loads((tmp_path / "gen" / "dynamic-security.json").read_text())
    theirs = json.loads((committed / "dynamic-security.json").read_text())
    strip = lambda ds: [{k: v for k, v in c.items() if k not in ("password", "salt")} for c in ds["clients"]]  # noqa: E731
    assert strip(ours) == strip(theirs)  # hashes differ: fresh salts and dev passwords
    assert {k: v for k, v in ours.items() if k != "clients"} == {k: v for k, v in theirs.items() if k != "clients"}


def test_tls_listener_on_a_real_broker(mosquitto_factory, tmp_path):
    from edge.transport.mosquitto import MosquittoBroker, free_port

    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(certs / "server.key"), "-out", str(certs / "server.crt")],
                   check=True, capture_output=True)
    base = mosquitto_factory(name="plain")
    tls_port = free_port()
    broker = MosquittoBroker(base.registry, tmp_path / "tls",
                             tls=TlsListener(tls_port, str(certs / "server.crt"), str(certs / "server.key"), bind="127.0.0.1"))
    try:
        broker.start()
        user, pw = broker.credentials("sac-pd")
        url = transport.parse_broker_url(f"mqtts://{user}:{pw}@127.0.0.1:{tls_port}?ca={certs / 'server.crt'}")
        c = transport.connect(url, "agency-sac-pd")
        transport.close(c)
        with pytest.raises(transport.MQTTError):  # same ACL and logins on the TLS listener
            transport.connect(url.with_login("sac-pd", "wrong"), "agency-sac-pd")
    finally:
        broker.stop()


def test_broker_url_parsing():
    u = transport.parse_broker_url("mqtts://ag%40ency:p%3Ass@broker.example:8884?ca=/etc/ca.pem")
    assert (u.host, u.port, u.tls, u.username, u.password, u.ca_file) == ("broker.example", 8884, True, "ag@ency", "p:ss", "/etc/ca.pem")
    assert "p:ss" not in u.redacted()
    assert transport.parse_broker_url("mqtt://localhost").port == 1883
    assert transport.parse_broker_url("mqtts://localhost").port == 8883
    for bad in ("http://x", "mqtt://", "mqtt://x:99999", "mqtt://x/path", "mqtt://x?foo=1"):
        with pytest.raises(transport.BrokerURLError):
            transport.parse_broker_url(bad)


@pytest.mark.parametrize("damage", ["$7$abc$c2FsdA==$ZGlnZXN0", "$7$101$!!!$zz", "$7$101", "$7$0$c2FsdA==$ZGlnZXN0"])
def test_a_damaged_passwd_line_is_rewritten_not_an_error(tmp_path, test_registry, damage):
    """Before: a `$7$` line broker-config could not parse stopped it ('invalid literal for int()'),
    so the tool could not regenerate its own output."""
    assert not check_password("anything", damage)
    out = tmp_path / "gen"
    write_broker_config(test_registry, out, auth="acl-file")
    lines = (out / "passwd").read_text().splitlines()
    lines[0] = f"{lines[0].split(':')[0]}:{damage}"
    (out / "passwd").write_text("\n".join(lines) + "\n")
    write_broker_config(test_registry, out, auth="acl-file")
    gate = (out / "passwd").read_text().splitlines()[0]
    password = (out / "secrets" / "alpr-gate.pw").read_text().strip()
    assert gate.startswith("alpr-gate:$7$") and check_password(password, gate.split(":", 1)[1])


@pytest.mark.parametrize("args", [["--port", "70000"], ["--port", "0"], ["--tls-port", "0", "--tls-cert", "c", "--tls-key", "k"]])
def test_broker_config_refuses_ports_out_of_range(tmp_path, args):
    """Before: written into the listener as given (and --tls-port 0 silently meant no TLS listener)."""
    out = tmp_path / "gen"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "broker-config", str(ROOT / "examples" / "registry.yaml"),
                        "--out", str(out), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "must be 1 to 65535" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
