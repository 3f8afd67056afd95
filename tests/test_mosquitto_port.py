"""MosquittoBroker on a port another process already listens on."""

from __future__ import annotations

import socket

import pytest

from edge.transport.mosquitto import MosquittoBroker, find_mosquitto

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@pytest.fixture
def taken_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_start_on_a_taken_port_fails_instead_of_reporting_the_other_listener(tmp_path, test_registry, taken_port):
    # It used to return as started: the other listener answered the readiness probe while
    # mosquitto itself exited with "Address already in use".
    broker = MosquittoBroker(test_registry, tmp_path / "broker", port=taken_port)
    with pytest.raises(RuntimeError, match=f"{taken_port} is already in use"):
        broker.start()
    assert broker.process is None


def test_restart_keeps_the_port_or_fails(tmp_path, test_registry):
    broker = MosquittoBroker(test_registry, tmp_path / "broker").start()
    try:
        port = broker.port
        broker.restart()
        assert broker.port == port and broker.process.poll() is None
        broker.stop()
        with socket.socket() as s:  # someone takes the port while the broker is down
            s.bind(("127.0.0.1", port))
            s.listen()
            with pytest.raises(RuntimeError, match="already in use"):
                broker.start()
    finally:
        broker.stop()
