"""A broker that takes its time to answer (far away, a TLS handshake over a slow link): a short run
still hands it its reads before it ends, instead of leaving them all for the next start."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from edge.transport.mosquitto import free_port

pytest.importorskip("edge.synth.scene")


def _slow_proxy(target_port: int, delay: float) -> int:
    """A loopback TCP relay to the broker that holds each new connection `delay` seconds first."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle(c):
        time.sleep(delay)
        u = socket.create_connection(("127.0.0.1", target_port))
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def _run(tmp_path, broker_url):
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--source", "synthetic:highway_gantry?seed=3&duration=4&width=320&height=180",
         "--camera-id", "cam-1", "--agency-id", "sac-pd", "--broker", broker_url,
         "--vision", "labels", "--min-plate-height", "4", "--output-dir", str(tmp_path / "e"), "--no-crops",
         "--no-progress", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_short_run_waits_for_a_broker_that_is_slow_to_answer(tmp_path, mosquitto):
    port = _slow_proxy(mosquitto.port, delay=3.0)
    user, pw = mosquitto.credentials("cam-1")
    s = _run(tmp_path, f"mqtt://{user}:{pw}@127.0.0.1:{port}")
    if s["elapsed_s"] >= 3.0:  # a very slow machine: the broker answered before the end anyway
        pytest.skip("the run outlasted the broker's delay")
    # before: published 0, every read left "for the next start" although the broker was there
    assert s["reads"] > 0 and s["acked"] == s["reads"] and s["outbox_waiting"] == 0, s


def test_an_unreachable_broker_is_not_waited_for(tmp_path):
    s = _run(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    assert s["reads"] > 0 and s["outbox_waiting"] == s["reads"] and s["drain_s"] < 4  # not the 10 s drain timeout
