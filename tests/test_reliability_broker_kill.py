"""Mosquitto killed with SIGKILL while it holds acknowledged reads that the gate has not taken yet.

The camera's outbox deletes a read on the broker's PUBACK, so from then on the broker's persistence
is the only copy until the gate takes it. Mosquitto writes its persistence file every 30 s by
default: a SIGKILL forgets what it acknowledged since. With `autosave_on_changes` (what
`bench soak --broker-save-every-change` configures) the reads survive.
"""

from __future__ import annotations

import json
import time

import pytest

from edge.bench.soak import SAVE_EVERY_CHANGE_CONF
from edge.transport import mqtt as transport
from edge.transport.mosquitto import MosquittoBroker
from test_reliability_faults import make_read, url, wait_until


def _kill_with_reads_queued(broker: MosquittoBroker, n: int, wait_s: float = 20) -> tuple[set[str], set[str]]:
    gate_url = url(broker, "gate")
    gate = transport.connect(gate_url, "kill-gate", clean_start=False, session_expiry_s=600,
                             subscriptions=[("alpr/raw/#", 1)])
    transport.close(gate)  # the gate is away: its session queues raw reads
    cam = transport.connect(url(broker, "cam-1"), "edge-cam-1")
    reads = [make_read() for _ in range(n)]
    assert transport.wait_published([cam.publish("alpr/raw/cam-1", r.to_json(), qos=1) for r in reads], 30)
    transport.close(cam)
    time.sleep(0.3)
    broker.process.kill()  # SIGKILL: no final save
    broker.process.wait()
    broker.process = None
    broker.start()
    got: list[bytes] = []
    gate = transport.connect(gate_url, "kill-gate", clean_start=False, session_expiry_s=600,
                             on_message=lambda c, u, m: got.append(m.payload))
    want = {r.read_id for r in reads}
    wait_until(lambda: len(got) >= n, wait_s)
    transport.close(gate)
    return want, {json.loads(p)["read_id"] for p in got}


def test_sigkilled_broker_that_saves_every_change_keeps_acknowledged_reads(test_registry, tmp_path):
    broker = MosquittoBroker(test_registry, tmp_path / "broker", extra_conf=SAVE_EVERY_CHANGE_CONF).start()
    try:
        want, got = _kill_with_reads_queued(broker, 50)
        assert want == got, f"lost {len(want - got)} of {len(want)} acknowledged reads"
    finally:
        broker.stop()


def test_default_persistence_interval_is_why_the_option_exists(test_registry, tmp_path):
    """Documents the gap the option closes (the default config saves every 30 s)."""
    broker = MosquittoBroker(test_registry, tmp_path / "broker").start()
    try:
        want, got = _kill_with_reads_queued(broker, 20, wait_s=3)
        if want == got:
            pytest.skip("an autosave happened to run between the publishes and the kill")
        assert got < want
    finally:
        broker.stop()
