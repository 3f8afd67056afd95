"""SQLite outbox and its MQTT drain: stored before publish, removed on PUBACK, nothing lost."""

import os
import subprocess
import sys
import time

import pytest

from edge.transport.outbox import Outbox, OutboxError, OutboxFull, publisher_for_url
from edge_node_helpers import Collector

HERE = os.path.dirname(__file__)


def test_outbox_persists_in_order_and_bounds(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_rows=3)
    seqs = [ob.put("alpr/raw/c", f"p{i}".encode(), f"read{i:08d}") for i in range(3)]
    assert seqs == sorted(seqs) and len(ob) == 3 and ob.full
    with pytest.raises(OutboxFull, match="full"):
        ob.put("alpr/raw/c", b"x", "readxxxxxxxx")
    ob.delete(seqs[0])
    ob.close()
    again = Outbox(tmp_path / "o.db", max_rows=3)
    assert len(again) == 2
    assert [p for _, _, p in again.after(0, 10)] == [b"p1", b"p2"]
    assert [s for s, _, _ in again.after(seqs[1], 10)] == [seqs[2]]


def test_outbox_read_only_is_a_clear_error(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    Outbox(d / "o.db").close()
    os.chmod(d / "o.db", 0o444)
    os.chmod(d, 0o555)
    try:
        if os.geteuid() == 0:
            pytest.skip("root ignores file permissions")
        with pytest.raises(OutboxError, match="outbox"):
            ob = Outbox(d / "o.db")
            ob.put("t", b"x", "readxxxxxxxx")
    finally:
        os.chmod(d, 0o755)


def _fill(ob, n, start=0):
    for i in range(start, start + n):
        ob.put("alpr/raw/cam-1", ('{"read_id": "r%08d"}' % i).encode(), "r%08d" % i)


def test_drains_on_puback_and_survives_broker_restart(tmp_path, mosquitto):
    broker = mosquitto
    col = Collector(broker.url("gate"))
    ob = Outbox(tmp_path / "o.db")
    pub = publisher_for_url(ob, broker.url("cam-1"), "edge-cam-1")
    pub.start()
    try:
        _fill(ob, 20)
        pub.notify()
        assert pub.wait_drained(10) and len(ob) == 0
        assert pub.acked == 20
        broker.stop()
        _fill(ob, 30, start=20)  # broker down: the outbox grows
        pub.notify()
        time.sleep(0.5)
        assert len(ob) == 30 and not pub.connected
        broker.start()
        assert pub.wait_drained(20), f"{len(ob)} reads still waiting"
        ids = col.wait_for(50)
        assert ids == {"r%08d" % i for i in range(50)}
        # In order: the first arrival of each read follows the outbox order.
        first = list(dict.fromkeys(col.read_ids()))
        assert first == sorted(first)
    finally:
        pub.stop()
        col.close()
        broker.stop()


def test_unreachable_broker_is_said_at_once_and_drains_when_it_answers(tmp_path, mosquitto, caplog):
    """Nothing listening (connection refused): a warning naming the broker, not silence; the reads
    wait in the outbox and go out when the broker comes up."""
    broker = mosquitto
    broker.stop()
    ob = Outbox(tmp_path / "o.db")
    _fill(ob, 5)
    pub = publisher_for_url(ob, broker.url("cam-1"), "edge-cam-1")
    caplog.set_level("WARNING", logger="edge.transport.outbox")
    pub.start()
    try:
        deadline = time.monotonic() + 10
        while pub.connect_failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.connect_failures >= 1 and len(ob) == 5
        assert f"127.0.0.1:{broker.port}" in pub.last_error and "***" in pub.last_error  # no password shown
        warned = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
        assert len(warned) == 1, warned  # once, not per retry
        broker.start()
        assert pub.wait_drained(20), f"{len(ob)} reads still waiting"
        assert pub.last_error is None and pub.connect_failures == 0
    finally:
        pub.stop()
        broker.stop()


DRAIN_SCRIPT = r"""
import sys, time
from edge.transport.outbox import Outbox, publisher_for_url
ob = Outbox(sys.argv[1])
pub = publisher_for_url(ob, sys.argv[2], "edge-cam-1")
pub.start()
print("started", len(ob), flush=True)
ok = pub.wait_drained(float(sys.argv[3]))
print("drained" if ok else "left %d" % len(ob), pub.published, flush=True)
pub.stop()
"""


def test_killed_edge_loses_nothing_and_restart_does_not_resend_acked(tmp_path, mosquitto):
    broker = mosquitto
    col = Collector(broker.url("gate"))
    db = tmp_path / "o.db"
    ob = Outbox(db)
    _fill(ob, 10)
    ob.close()
    try:
        # First edge process: drains the 10 reads, exits.
        out = subprocess.run([sys.executable, "-c", DRAIN_SCRIPT, str(db), broker.url("cam-1"), "10"], capture_output=True, text=True, timeout=60)
        assert "drained 10" in out.stdout, out.stdout + out.stderr
        assert col.wait_for(10) == {"r%08d" % i for i in range(10)}
        # Broker down: a second edge process stores 15 more, then is killed with SIGKILL.
        broker.stop()
        ob = Outbox(db)
        _fill(ob, 15, start=10)
        ob.close()
        proc = subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT, str(db), broker.url("cam-1"), "60"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("started 15")
        proc.kill()
        proc.wait()
        # A restarted edge with the broker back sends exactly the 15 unacknowledged ones.
        broker.start()
        out = subprocess.run([sys.executable, "-c", DRAIN_SCRIPT, str(db), broker.url("cam-1"), "20"], capture_output=True, text=True, timeout=60)
        assert "drained 15" in out.stdout, out.stdout + out.stderr
        ids = col.wait_for(25)
        assert ids == {"r%08d" % i for i in range(25)}
        assert len(col.read_ids(fresh_only=True)) == 25  # nothing acknowledged was sent twice
    finally:
        col.close()
        broker.stop()


def test_outbox_disk_full_is_a_clear_error(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    # SQLite's page limit behaves exactly like a full disk (SQLITE_FULL) without filling one.
    ob._db.execute("PRAGMA max_page_count = %d" % (ob._db.execute("PRAGMA page_count").fetchone()[0] + 2))
    with pytest.raises(OutboxError, match="disk is full"):
        for i in range(10_000):
            ob.put("alpr/raw/c", b"x" * 2000, "read%08d" % i)
    stored = len(ob)
    assert 0 < stored < 10_000 and len(ob.after(0, 100_000)) == stored  # what was stored stays


def test_refused_publish_stays_in_the_outbox(tmp_path, mosquitto):
    """A camera publishing outside its own topic gets a failing PUBACK (MQTT 5): the row is kept."""
    ob = Outbox(tmp_path / "o.db")
    ob.put("alpr/raw/cam-2", b'{"read_id": "wrongtopic1"}', "wrongtopic1")
    ob.put("alpr/raw/cam-1", b'{"read_id": "righttopic1"}', "righttopic1")
    pub = publisher_for_url(ob, mosquitto.url("cam-1"), "edge-cam-1")
    pub.start()
    try:
        end = time.monotonic() + 10
        while pub.acked + pub.refused < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert pub.acked == 1 and pub.refused == 1
        assert ob.read_ids() == ["wrongtopic1"]
        assert "refused" in pub.last_error
    finally:
        pub.stop()
