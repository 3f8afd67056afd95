"""EmbeddedBroker lifecycle: started twice (`with EmbeddedBroker(...).start() as b`), restarted."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge.transport.embedded import EmbeddedBroker
from edge.transport.mosquitto import _accepts


def _registry_and_secrets(tmp_path):
    from edge.policy.registry import Secrets, load_registry

    reg = load_registry(Path(__file__).resolve().parents[1] / "examples" / "registry.yaml")
    return reg, Secrets(tmp_path / "secrets", generate=True)


def test_start_twice_then_stop_leaves_nothing_listening(tmp_path):
    reg, secrets = _registry_and_secrets(tmp_path)
    with EmbeddedBroker(reg, secrets).start() as b:  # __enter__ starts it again
        thread = b._thread
        assert _accepts(b.host, b.port)
    thread.join(5)
    assert not thread.is_alive() and not _accepts(b.host, b.port)


def test_start_after_stop_returns_once_listening(tmp_path):
    reg, secrets = _registry_and_secrets(tmp_path)
    b = EmbeddedBroker(reg, secrets).start()
    try:
        b.stop()
        assert not _accepts(b.host, b.port)
        b.start()
        assert _accepts(b.host, b.port)  # at once: start() waited for this broker
    finally:
        b.stop()


def test_taken_port_is_an_error_and_leaves_no_thread(tmp_path):
    reg, secrets = _registry_and_secrets(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        b = EmbeddedBroker(reg, secrets, port=s.getsockname()[1])
        with pytest.raises(RuntimeError, match="address already in use"):
            b.start()
        b._thread.join(5)
        assert not b._thread.is_alive()
