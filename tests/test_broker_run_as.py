"""broker-config run as root for a broker started as root: mosquitto switches to the --run-as user
(or, without it, to `mosquitto`) before it loads dynamic-security.json (or passwd and acl) and writes
its persistence database. Written by root at mode 0600, the plugin could not read its file: mosquitto
ran anyway, refusing every login ("Error loading Dynamic security plugin config: File is not
readable"), and saved no session ("Error saving in-memory database"). The files are now given to
that user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from edge.policy.brokerconf import BrokerConfigError, write_broker_config
from edge.policy.registry import Secrets
from edge.transport import mqtt as transport
from edge.transport.mosquitto import find_mosquitto, free_port

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (chown)")


def _user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no user {name!r} here")


@pytest.fixture
def out():
    # Not under pytest's tmp_path: /tmp/pytest-of-root is mode 0700, so no other user reaches it.
    d = Path(tempfile.mkdtemp(prefix="qa5-run-as-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("auth", ["dynsec", "acl-file"])
@pytest.mark.parametrize("run_as", ["mosquitto", None])
def test_a_broker_started_as_root_reads_its_logins_and_saves_its_sessions(out, test_registry, auth, run_as):
    user = _user("mosquitto")
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed")
    port = free_port()
    write_broker_config(test_registry, out, secrets_dir=out / "secrets", port=port, run_as=run_as, auth=auth)
    private = ["dynamic-security.json"] if auth == "dynsec" else ["passwd", "acl"]
    for name in [*private, "data"]:
        st = (out / name).stat()
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), name
    log = open(out / "mosquitto.log", "wb")
    p = subprocess.Popen([find_mosquitto(), "-c", "mosquitto.conf"], cwd=out, stdout=log, stderr=subprocess.STDOUT)
    try:
        secrets = Secrets(out / "secrets")
        url = transport.BrokerURL("127.0.0.1", port).with_login("sac-pd", secrets.password(test_registry.agency("sac-pd")))
        deadline = time.monotonic() + 10
        while True:
            try:
                c = transport.connect(url, "agency-sac-pd", clean_start=False, session_expiry_s=3600, timeout=3)
                break
            except transport.MQTTError:
                if time.monotonic() > deadline or p.poll() is not None:
                    raise
                time.sleep(0.1)
        transport.close(c)
    finally:
        p.terminate()
        p.wait(10)
        log.close()
    text = (out / "mosquitto.log").read_text(errors="replace")
    assert "Error" not in text, text
    assert (out / "data" / "mosquitto.db").exists()
    # Regenerating keeps them the broker's (mosquitto.db included).
    write_broker_config(test_registry, out, secrets_dir=out / "secrets", port=port, run_as=run_as, auth=auth)
    assert (out / "data" / "mosquitto.db").stat().st_uid == user.pw_uid


@needs_root
def test_an_unknown_run_as_user_is_named(out, test_registry):
    with pytest.raises(BrokerConfigError, match="--run-as no-such-user-qa5: no such user"):
        write_broker_config(test_registry, out, run_as="no-such-user-qa5")
    assert not (out / "dynamic-security.json").exists()


def test_a_tls_port_that_is_the_plain_port_is_refused_before_writing(tmp_path, test_registry):
    """Written as asked, mosquitto opened the plain listener, then stopped on the TLS one: 'Address
    already in use'. Different addresses may share a port."""
    from edge.policy.brokerconf import TlsListener

    for bind, tls_bind in (("127.0.0.1", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "10.1.2.3")):
        with pytest.raises(BrokerConfigError, match="--tls-port 18883 is also the plain listener's port"):
            write_broker_config(test_registry, tmp_path / "o", port=18883, bind=bind,
                                tls=TlsListener(18883, "/x/server.crt", "/x/server.key", bind=tls_bind))
        assert not (tmp_path / "o").exists()
    write_broker_config(test_registry, tmp_path / "o", port=18883, bind="127.0.0.1",
                        tls=TlsListener(18883, "/x/server.crt", "/x/server.key", bind="10.1.2.3"))
    assert "listener 18883 10.1.2.3" in (tmp_path / "o" / "conf.d" / "50-tls.conf").read_text()
