"""Run a real Mosquitto configured from a registry, on a free loopback port (tests, benches).

Never the system broker's 1883: each instance gets its own port, directory, logins and ACL from
`broker-config`, and keeps its persistence directory across `restart()` so persistent sessions and
queued QoS 1 messages survive (what a gate restart test needs).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.policy.brokerconf import TlsListener, write_broker_config
from edge.policy.registry import Principal, Registry, Secrets

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for c in MOSQUITTO_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class MosquittoBroker:
    """A mosquitto process for `registry`, configured under `directory`."""

    registry: Registry
    directory: Path
    host: str = "127.0.0.1"
    port: int = 0
    binary: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    tls: TlsListener | None = None  # an extra TLS listener (certificates from edge.policy.tls)
    extra_conf: dict[str, str] | None = None  # more conf.d files, e.g. {"conf.d/60-x.conf": "..."}
    auth: str = "dynsec"  # or "acl-file" (passwd + acl: client ids not bound, subscriptions not checked)
    # A loaded Policy: agencies it refuses for every camera owner get no rights (brokerconf.build_acl).
    # None (tests of the gate): every agency may read its own share topic, so only the gate refuses.
    policy: object = None
    secrets: Secrets = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.binary = self.binary or find_mosquitto()
        if not self.binary:
            raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.secrets = Secrets(self.directory / "secrets", generate=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "MosquittoBroker":
        if self.process is not None and self.process.poll() is None:
            return self
        last_err = ""
        fixed = bool(self.port)  # a port the caller chose (or restart()'s): never moved to another
        for _attempt in range(5):
            if not self.port:
                self.port = free_port(self.host)
            if _accepts(self.host, self.port):
                # Someone else listens there: mosquitto would exit ("Address already in use") while
                # the wait below took the other listener's answer for ours.
                if fixed:
                    raise RuntimeError(f"mosquitto: {self.host}:{self.port} is already in use by another process")
                self.port = 0
                continue
            write_broker_config(self.registry, self.directory, secrets_dir=self.directory / "secrets",
                                port=self.port, bind=self.host, run_as=getpass.getuser(), tls=self.tls,
                                extra_conf=self.extra_conf, auth=self.auth,
                                policy=self.policy)
            log = open(self.directory / "mosquitto.log", "ab")
            self.process = subprocess.Popen([self.binary, "-c", "mosquitto.conf"], cwd=self.directory,
                                            stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if _accepts(self.host, self.port):
                    return self
                time.sleep(0.02)
            last_err = self.log_tail()
            self.stop()
            if not fixed:
                self.port = 0  # the port may have been taken meanwhile: pick another
        raise RuntimeError(f"mosquitto did not start:\n{last_err}")

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM): mosquitto saves its persistence database."""
        p, self.process = self.process, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def restart(self) -> "MosquittoBroker":
        port = self.port
        self.stop()
        self.port = port  # same port: clients reconnect where they were
        return self.start()

    def __enter__(self) -> "MosquittoBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.directory / "mosquitto.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- logins ----------------------------------------------------------------------------
    def principal(self, name: str) -> Principal:
        """A principal by username, agency id, camera id or 'gate'."""
        reg = self.registry
        if name == "gate" or name == reg.gate.username:
            return reg.gate
        for p in [*reg.agencies, *reg.cameras]:
            if name in (p.id, p.username):
                return p
        raise KeyError(f"no principal {name!r} in the registry")

    def credentials(self, name: str) -> tuple[str, str]:
        p = self.principal(name)
        return p.username, self.secrets.password(p)

    def client_id(self, name: str, fallback: str) -> str:
        """The client id this principal must use (auth="dynsec" binds cameras and agencies), else `fallback`."""
        from edge.policy.brokerconf import bound_client_id

        return bound_client_id(self.registry, self.principal(name)) or fallback

    def url(self, name: str | None = None) -> str:
        if name is None:
            return f"mqtt://{self.host}:{self.port}"
        user, password = self.credentials(name)
        return f"mqtt://{user}:{password}@{self.host}:{self.port}"
