"""The outbox drain settles a read on its own PUBACK only, however paho numbers its messages."""

import threading
import time

from edge.transport.outbox import Outbox, OutboxPublisher


class _Info:
    def __init__(self, mid):
        self.mid = mid
        self.rc = 0


class FakePaho:
    """What OutboxPublisher uses of a paho client, numbered as paho numbers it: one message id
    counter for every publish (1..65535, then 1 again), on_publish called for a QoS 0 publish once
    it is written and for a QoS 1 publish on its PUBACK (here: when the test calls puback)."""

    def __init__(self):
        self.last_mid = 0
        self.qos1: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def _mid(self):
        self.last_mid = 1 if self.last_mid == 65535 else self.last_mid + 1
        return self.last_mid

    def publish(self, topic, payload, qos=0, retain=False):
        with self.lock:
            mid = self._mid()
            if qos:
                self.qos1[mid] = payload
        if qos == 0:
            self.on_publish(self, None, mid, None, None)
        return _Info(mid)

    def puback(self, mid, reason_code=None):
        with self.lock:
            self.qos1.pop(mid)
        self.on_publish(self, None, mid, reason_code, None)

    def loop_start(self):
        pass

    def loop_stop(self):
        pass

    def disconnect(self):
        pass


def _started(tmp_path):
    """An outbox and its publisher on a FakePaho, connected and draining."""
    ob = Outbox(tmp_path / "o.db")
    client = FakePaho()
    pub = OutboxPublisher(ob, client, connect=lambda: None)
    pub._on_connect(client, None, {}, 0)
    pub.start()
    return ob, client, pub


def _wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()


def test_a_read_is_deleted_on_its_puback_only_after_message_ids_wrap(tmp_path):
    """Status messages (QoS 0, every metrics interval) use paho's message ids too. A long-running
    edge wraps them; a read numbered like an old status message was deleted from the outbox at once,
    with no PUBACK, lost if the connection then dropped."""
    ob, client, pub = _started(tmp_path)
    try:
        for _ in range(65535):  # a long run's status messages: the next id is 1 again
            pub.publish_status("alpr/status/cam-1", b"{}")
        ob.put("alpr/raw/cam-1", b'{"read_id": "r1"}', "r1")
        pub.notify()
        assert _wait(lambda: client.qos1), "the read was not published"
        time.sleep(0.1)
        assert len(ob) == 1 and pub.acked == 0, "deleted from the outbox without a PUBACK"
        (mid,) = client.qos1
        client.puback(mid)
        assert _wait(lambda: len(ob) == 0) and pub.acked == 1
    finally:
        pub.stop()
        ob.close()


def test_the_drain_outlives_an_outbox_read_error(tmp_path, caplog):
    """An I/O error or a lock held too long while reading the outbox killed the drain thread: the
    node went on storing reads that were never sent, saying nothing but a thread traceback."""
    import sqlite3

    ob = Outbox(tmp_path / "o.db")
    client = FakePaho()
    pub = OutboxPublisher(ob, client, connect=lambda: None)
    real_after, failures = ob.after, [2]

    def flaky_after(seq, limit):
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return real_after(seq, limit)

    ob.after = flaky_after
    pub._on_connect(client, None, {}, 0)
    pub.start()
    try:
        ob.put("alpr/raw/cam-1", b'{"read_id": "r1"}', "r1")
        pub.notify()
        assert _wait(lambda: client.qos1), "the read was never published"
        assert failures[0] == 0 and "disk I/O error" in caplog.text and f"outbox {ob.path}" in caplog.text
        assert len([r for r in caplog.records if "disk I/O error" in r.getMessage()]) == 1  # not per retry
        (mid,) = client.qos1
        client.puback(mid)
        assert _wait(lambda: len(ob) == 0)
    finally:
        pub.stop()
        ob.close()


class _NotAuthorized:
    is_failure = True

    def __str__(self):
        return "Not authorized"


def test_waiting_for_the_outbox_to_drain_does_not_wait_for_refused_reads(tmp_path):
    """A read the broker refused stays in the outbox and is not sent again by this process: the end
    of a run waited out the whole --drain-timeout for it (10 s each run; a long timeout, hung)."""
    ob, client, pub = _started(tmp_path)
    try:
        ob.put("alpr/raw/cam-2", b'{"read_id": "r1"}', "r1")
        ob.put("alpr/raw/cam-1", b'{"read_id": "r2"}', "r2")
        pub.notify()
        assert _wait(lambda: len(client.qos1) == 2)
        first, second = sorted(client.qos1)
        client.puback(first, _NotAuthorized())
        t0 = time.monotonic()
        assert not pub.wait_drained(0.3)  # r2 not acknowledged yet: this waits its timeout
        assert time.monotonic() - t0 >= 0.3
        client.puback(second)
        t0 = time.monotonic()
        assert not pub.wait_drained(5)
        assert time.monotonic() - t0 < 1, "waited for a read that will not be sent again"
        assert ob.read_ids() == ["r1"] and pub.refused == 1 and "Not authorized" in pub.last_error
    finally:
        pub.stop()
        ob.close()


def test_reads_refused_one_after_another_are_one_error_line_not_one_each(tmp_path, caplog):
    """A login that may not write the camera's topic has every read refused: an error line per
    read buried the log (a busy camera: thousands an hour)."""
    ob, client, pub = _started(tmp_path)
    try:
        for i in range(5):
            ob.put("alpr/raw/cam-2", b"{}", f"r{i}")
        pub.notify()
        assert _wait(lambda: len(client.qos1) == 5)
        for mid in sorted(client.qos1):
            client.puback(mid, _NotAuthorized())
        assert pub.refused == 5 and len(ob) == 5
        lines = [r.getMessage() for r in caplog.records if "refused read" in r.getMessage()]
        assert len(lines) == 1 and "Not authorized" in lines[0] and "stays in the outbox" in lines[0]
    finally:
        pub.stop()
        ob.close()
