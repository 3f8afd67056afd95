"""When the outbox cannot take a read, the node waits (stops taking frames) instead of dropping it."""

import threading
import time
from datetime import datetime, timezone

import pytest

from edge.node.sink import OutboxSink, ReadNotStored
from edge.schema import Box, ReadEvent, new_read_id
from edge.transport.outbox import Outbox


def event(plate="ABC123"):
    return ReadEvent(
        read_id=new_read_id(), camera_id="cam-1", agency_id="sac-pd", captured_at=datetime.now(timezone.utc),
        plate=plate, confidence=0.9, char_confidence=[0.99] * len(plate), box=Box(x=1, y=2, w=30, h=15),
    )  # fmt: skip


class _Publisher:
    """Stands in for the MQTT publisher that would drain the outbox (only notify() is called)."""

    def notify(self) -> None:
        pass


def test_full_outbox_blocks_until_the_broker_takes_reads(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.db", max_rows=2)
    sink = OutboxSink(ob, "alpr/raw/cam-1", publisher=_Publisher(), retry_s=0.02)
    sink.emit(event())
    sink.emit(event())
    done = threading.Event()
    t = threading.Thread(target=lambda: (sink.emit(event("XYZ789")), done.set()))
    t.start()
    time.sleep(0.3)
    assert not done.is_set() and len(ob) == 2  # waiting, nothing dropped
    assert "full" in caplog.text
    seq = ob.after(0, 1)[0][0]
    ob.delete(seq)  # a PUBACK frees a row
    assert done.wait(5)
    assert len(ob) == 2 and sink.stored == 3
    t.join()


def test_full_outbox_without_a_broker_stops_at_once_instead_of_waiting_for_good(tmp_path, caplog):
    """No broker configured (outbox-only run): nothing will ever free a row, so a full outbox ends
    the run with the unstored read in the log, instead of hanging."""
    ob = Outbox(tmp_path / "o.db", max_rows=2)
    sink = OutboxSink(ob, "alpr/raw/cam-1", retry_s=0.02)
    sink.emit(event())
    sink.emit(event())
    ev = event("XYZ789")
    t0 = time.monotonic()
    with pytest.raises(ReadNotStored, match="no broker"):
        sink.emit(ev)
    assert time.monotonic() - t0 < 1.0
    assert len(ob) == 2 and ev.read_id in caplog.text


def test_disk_full_stops_intake_and_stop_request_reports_the_unstored_read(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.db")
    ob._db.execute("PRAGMA max_page_count = %d" % ob._db.execute("PRAGMA page_count").fetchone()[0])
    stop = threading.Event()
    sink = OutboxSink(ob, "alpr/raw/cam-1", stop_event=stop, retry_s=0.02)
    ev = event()
    errors = []

    def run():
        try:
            for _ in range(200):
                sink.emit(ev)
        except ReadNotStored as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()  # blocked on the write, not dropping reads
    assert "stops taking new frames" in caplog.text and "disk is full" in caplog.text
    stop.set()
    t.join(5)
    assert errors and ev.read_id in str(errors[0])
    assert ev.read_id in caplog.text  # the read that could not be stored is in the log in full


def test_an_outbox_kept_full_by_a_slow_broker_warns_periodically_not_per_read(tmp_path, caplog):
    """Full, with the broker taking a read now and then: every new read waits briefly. That was one
    warning per read (the rate limit started afresh in each emit), now one per warn_every_s."""
    ob = Outbox(tmp_path / "o.db", max_rows=2)
    sink = OutboxSink(ob, "alpr/raw/cam-1", publisher=_Publisher(), retry_s=0.02)
    sink.emit(event())
    sink.emit(event())
    stop = threading.Event()

    def slow_broker():  # acknowledges the oldest read every 50 ms
        while not stop.wait(0.05):
            rows = ob.after(0, 1)
            if rows and ob.full:
                ob.delete(rows[0][0])

    t = threading.Thread(target=slow_broker)
    t.start()
    try:
        for _ in range(5):
            sink.emit(event())
    finally:
        stop.set()
        t.join()
    assert sink.stored == 7 and sink.full_events >= 5
    warned = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert sink.blocked_s > 0


def test_the_full_warning_says_why_the_broker_takes_no_reads(tmp_path, caplog):
    class Refusing(_Publisher):
        last_error = "broker refused read #7: Not authorized"

    ob = Outbox(tmp_path / "o.db", max_rows=1)
    stop = threading.Event()
    sink = OutboxSink(ob, "alpr/raw/cam-1", publisher=Refusing(), stop_event=stop, retry_s=0.02)
    sink.emit(event())
    stop.set()
    with pytest.raises(ReadNotStored):
        sink.emit(event())
    (warned,) = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    assert "refused read #7: Not authorized" in warned
