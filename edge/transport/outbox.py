"""Store-and-forward: a read is on disk before it is published and leaves only on the broker's PUBACK.

`Outbox` is a SQLite table in WAL mode, one row per read (seq, read_id, topic, payload, created).
`OutboxPublisher` drains it in `seq` order over MQTT with QoS 1 and deletes a row when paho's
`on_publish(mid)` reports the broker's PUBACK for it. Consequences:

- killing the edge loses nothing that was written: the next start publishes every row still there;
- a restarted edge does not re-send what was acknowledged (those rows are gone);
- while the broker is down, rows accumulate (bounded by `max_rows`; `put` raises `OutboxFull` with
  a message saying why, and the caller holds new frames rather than dropping reads); after a
  reconnect paho re-sends what was in flight and the drain continues in order;
- QoS 1 means a read can arrive twice (a PUBACK lost with the connection): the gate deduplicates by
  read id.

The publisher only hands paho as many messages as fit its in-flight window and only while
connected, so a long outage grows the SQLite file, not the process memory.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from edge.private_files import create_private

log = logging.getLogger(__name__)


class OutboxError(RuntimeError):
    """The outbox cannot store reads (disk full, read-only file or folder, corrupt database)."""


class OutboxFull(OutboxError):
    """The outbox holds max_rows reads that the broker has not acknowledged yet."""


class OutboxInUse(OutboxError):
    """Another edge node holds this outbox (Outbox(..., exclusive=True))."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    read_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
)
"""


class Outbox:
    """exclusive: hold `<path>.lock` (flock) while open, so that a second edge node started on the
    same outbox (two cameras run from one folder share the default edge-data/outbox.db) is refused
    with OutboxInUse instead of draining, counting and bounding the other's reads as its own."""

    def __init__(self, path: str | os.PathLike, max_rows: int = 100_000, exclusive: bool = False):
        if max_rows < 1:
            raise ValueError("outbox max_rows must be at least 1")
        self.path = Path(path)
        self.max_rows = int(max_rows)
        self._lock = threading.Lock()
        self._holder = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._hold()
            create_private(self.path)  # reads with plates and crops' paths: the node's account only
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._check_is_an_outbox()  # before anything is changed in the file
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process being killed (it is in the OS page
            # cache); only a power cut can lose the last few, which FULL would cost an fsync per read.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except (sqlite3.Error, OSError) as err:
            self._close_db()
            self._release()
            raise OutboxError(f"cannot open outbox {self.path}: {err}") from None
        except OutboxError:
            self._close_db()
            self._release()
            raise

    def _check_is_an_outbox(self) -> None:
        """Refuse another program's SQLite database (an audit log, an agency inbox given as --outbox
        by mistake): the outbox table was added into it, or, where it had a table named outbox of
        its own, the node opened it and then failed every read ('no column named read_id') while
        blocking the camera as if the disk were full."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        others = sorted(t for t in tables if t not in ("outbox", "sqlite_sequence"))
        if others:
            raise OutboxError(f"{self.path} is another database (tables: {', '.join(others[:5])}), not an "
                              "alpr-edge outbox: give the outbox a file of its own (--outbox)")
        if "outbox" in tables:
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
            missing = sorted({"seq", "read_id", "topic", "payload", "created"} - columns)
            if missing:
                raise OutboxError(f"{self.path}: its outbox table lacks column(s) {', '.join(missing)}: "
                                  "not an alpr-edge outbox")

    def _close_db(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:  # pragma: no cover
                pass

    def _hold(self) -> None:
        import fcntl

        lock_path = self.path.with_name(self.path.name + ".lock")
        f = open(lock_path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "another process"
            f.close()
            raise OutboxInUse(
                f"outbox {self.path} is in use by another edge node ({who}, holding {lock_path}): "
                "give each camera its own --output-dir or --outbox"
            ) from None
        except OSError as err:  # a file system without locks: run as before, unguarded
            f.close()
            log.warning("cannot lock %s (%s): a second node started on this outbox would not be refused",
                        lock_path, err)
            return
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        self._holder = f

    def _release(self) -> None:
        if self._holder is not None:
            self._holder.close()  # the flock goes with it
            self._holder = None

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.max_rows

    def put(self, topic: str, payload: bytes, read_id: str) -> int:
        """Store one read durably; return its sequence number."""
        with self._lock:
            if self._count >= self.max_rows:
                raise OutboxFull(
                    f"outbox {self.path} is full ({self._count} unacknowledged reads, bound "
                    f"{self.max_rows}): the broker has not acknowledged reads for a while"
                )
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (read_id, topic, payload, created) VALUES (?, ?, ?, ?)",
                    (read_id, topic, bytes(payload), time.time()),
                )
            except sqlite3.Error as err:
                raise OutboxError(f"cannot write to outbox {self.path}: {err}") from None
            self._count += 1
            return int(cur.lastrowid)

    def after(self, seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to `limit` rows with a sequence number above `seq`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [(int(s), t, bytes(p)) for s, t, p in rows]

    def delete(self, seq: int) -> None:
        with self._lock:
            try:
                cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            except sqlite3.Error as err:
                # The row stays: it will be sent again (a duplicate the gate drops), never lost.
                log.error("cannot delete acknowledged read %d from outbox %s: %s", seq, self.path, err)
                return
            self._count -= cur.rowcount

    def read_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT read_id FROM outbox ORDER BY seq")]

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover
                pass
            self._release()


ClientFactory = Callable[[], object]


class OutboxPublisher:
    """Drains an Outbox over a paho client (QoS 1), deleting rows on PUBACK.

    `client` is a configured but not yet connected `paho.mqtt.client.Client` (callback API v2);
    `connect` is a callable that starts the connection (e.g. `client.connect_async(host, port)`).
    The publisher installs its own on_connect/on_disconnect/on_publish callbacks and runs paho's
    network loop in paho's thread plus one drain thread of its own.
    """

    def __init__(self, outbox: Outbox, client, connect: Callable[[], None], window: int = 64):
        self.outbox = outbox
        self.client = client
        self._connect = connect
        self.window = int(window)
        self._cond = threading.Condition()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._early: set[int] = set()  # PUBACKs that beat us to recording their mid
        self._last_seq = 0
        self._connected = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.published = 0
        self.acked = 0
        self.refused = 0
        self._refused_seqs: set[int] = set()  # rows the broker refused: kept, not sent again by this process
        self._refused_logged_at, self._refused_logged = float("-inf"), 0
        self.connects = 0
        self.last_error: str | None = None
        self.broker = "broker"
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.connect_failures = 0
        self._fail_logged_at = 0.0
        self.connect_refusals = 0  # CONNACKs refusing the login (wrong password, client id not its own)
        self._refused_pending = False  # a refusing CONNACK came; paho's disconnect for it is next
        self._refusal_logged_at = 0.0
        self._read_error_logged_at = float("-inf")

    # paho callbacks (network thread) -------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if getattr(reason_code, "is_failure", False):
            # paho retries every few seconds: say it at once, then at most once a minute (with a count).
            self.connect_refusals += 1
            cid = getattr(client, "_client_id", b"")
            cid = cid.decode("utf-8", "replace") if isinstance(cid, bytes) else str(cid)
            hint = ""
            if "authori" in str(reason_code).lower():
                hint = (f" (a wrong login or password, or a login the broker binds to another client id than "
                        f"{cid!r}: camera C's login may connect only as edge-C, so --camera-id must be the "
                        "login's camera)")
            self.last_error = f"broker refused the connection as {cid!r}: {reason_code}{hint}"
            self._refused_pending = True  # paho ends the connection next: not a broker without an answer
            now = time.monotonic()
            if self.connect_refusals == 1 or now - self._refusal_logged_at >= 60:
                self._refusal_logged_at = now
                log.error("%s; refused %d time(s) so far, reads stay in the outbox", self.last_error,
                          self.connect_refusals)
            return
        with self._cond:
            self._connected = True
            self.connects += 1
            self._cond.notify_all()
        if self.connect_failures:
            self.connect_failures = 0
            self.last_error = None
        log.info("connected to broker (%d unacknowledged reads in the outbox)", len(self.outbox))

    def _on_connect_fail(self, client, userdata):
        # No TCP connection at all (refused, unreachable, name not resolved): paho retries on its own.
        self._connect_failed(f"cannot reach {self.broker}")

    def _connect_failed(self, why: str) -> None:
        """A connection attempt that got no CONNACK: said at once and then every minute, so a broker
        that cannot be reached, or does not answer, is never silent."""
        with self._cond:
            self.connect_failures += 1
            self.last_error = f"{why}: {self.connect_failures} connection attempt(s) failed"
            self._cond.notify_all()  # wait_connected: no need to wait for it any longer
        now = time.monotonic()
        if self.connect_failures == 1 or now - self._fail_logged_at >= 60:
            self._fail_logged_at = now
            log.warning("%s; reads stay in the outbox and are sent when it answers", self.last_error)

    def _on_disconnect(self, client, userdata, flags, reason_code=None, properties=None):
        with self._cond:
            was = self._connected
            self._connected = False
            refused, self._refused_pending = self._refused_pending, False
        if self._stop:
            return
        if was:
            log.warning("broker connection lost (%s); reads stay in the outbox until it returns", reason_code)
        elif not refused:  # (a refusal's CONNACK was logged by _on_connect)
            # A connection the other end took but never answered with a CONNACK (a hung broker, a TLS
            # port given as mqtt://, another service on that port) ended: before, nothing was logged
            # at all, however long, and the reads piled up in the outbox without a word about why.
            self._connect_failed(f"{self.broker} took the connection but sent no MQTT answer ({reason_code}; "
                                 "not an MQTT broker on that port, a TLS port given as mqtt://, or a hung broker)")

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        with self._cond:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
            self._cond.notify_all()
        if seq is not None:
            self._settle(seq, reason_code)

    def _settle(self, seq: int, reason_code) -> None:
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            # The broker refused the read (e.g. not authorised for this topic). It stays in the
            # outbox, loudly, rather than being deleted as if delivered.
            self.refused += 1
            self._refused_seqs.add(seq)
            self.last_error = f"broker refused read #{seq}: {reason_code}"
            # A login that may not write this camera's topic has every read refused: the first
            # is logged, then a count once a minute, not an error line per read.
            now = time.monotonic()
            if now - self._refused_logged_at >= 60:
                more = self.refused - self._refused_logged
                log.error("%s; it stays in the outbox%s", self.last_error,
                          f" ({more} refused since the last such line)" if more > 1 else "")
                self._refused_logged_at, self._refused_logged = now, self.refused
            return
        self.outbox.delete(seq)
        self.acked += 1

    # lifecycle ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def start(self) -> None:
        self._connect()
        self.client.loop_start()
        self._thread = threading.Thread(target=self._drain, name="outbox-drain", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A new row is in the outbox."""
        with self._cond:
            self._cond.notify_all()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._connected or len(self._inflight) >= self.window):
                    self._cond.wait(0.5)
                if self._stop:
                    return
                room = self.window - len(self._inflight)
            try:
                rows = self.outbox.after(self._last_seq, room)
            except sqlite3.Error as err:
                # The drain thread must outlive a bad moment of the file (an I/O error, a lock held
                # too long): dead, it would leave every read unsent, the node storing on, silently.
                self.last_error = f"cannot read outbox {self.outbox.path}: {err}"
                now = time.monotonic()
                if now - self._read_error_logged_at >= 60:
                    self._read_error_logged_at = now
                    log.error("%s; retrying (the reads stay in it)", self.last_error)
                with self._cond:
                    self._cond.wait(1.0)
                continue
            if not rows:
                with self._cond:
                    self._cond.wait(0.2)
                continue
            for seq, topic, payload in rows:
                if not self._connected:
                    break
                with self._cond:
                    # Only this publish's own PUBACK can beat us to recording its mid. Anything
                    # else in _early is stale: paho calls on_publish for the QoS 0 status messages
                    # too, and once its mids wrap (65535 publishes) such a leftover would settle a
                    # read, deleting it from the outbox without any PUBACK.
                    self._early.clear()
                info = self.client.publish(topic, payload, qos=1)
                with self._cond:
                    early = info.mid in self._early
                    if early:
                        self._early.discard(info.mid)
                    else:
                        self._inflight[info.mid] = seq
                self.published += 1
                self._last_seq = seq
                if early:
                    self._settle(seq, None)

    def publish_status(self, topic: str, payload: bytes) -> bool:
        """Fire-and-forget retained status (QoS 0); skipped while disconnected."""
        if not self._connected:
            return False
        self.client.publish(topic, payload, qos=0, retain=True)
        return True

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker has accepted the connection (True), or the connection failed
        (refused, unreachable, login refused) or timeout passed (False)."""
        end = time.monotonic() + timeout
        with self._cond:
            while not self._connected and not self.connect_failures and self.last_error is None:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            return self._connected

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every row is acknowledged (or timeout); True when the outbox is empty.
        Returns False at once when only reads the broker refused are left: this process does not
        send them again, so waiting for them would only use up the timeout (all of it, however long)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            left = len(self.outbox)
            if left == 0:
                return True
            if left <= len(self._refused_seqs):
                return False
            with self._cond:
                self._cond.wait(0.05)
        return len(self.outbox) == 0

    def stop(self, drain_timeout: float = 0.0) -> None:
        if drain_timeout > 0 and self._connected:
            self.wait_drained(drain_timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.client.disconnect()
        except Exception:  # pragma: no cover - already gone
            pass
        self.client.loop_stop()


def publisher_for_url(outbox: Outbox, broker_url: str, client_id: str, window: int = 64,
                      will: tuple[str, bytes] | None = None, keepalive_s: int = 15) -> OutboxPublisher:
    """An OutboxPublisher on a paho client for a broker URL (see edge.transport.mqtt).

    MQTT v5, so a broker that refuses a publish (not authorised for the topic) says so in the
    PUBACK instead of dropping it silently. Unlike `mqtt.connect`, this does not wait for the
    broker: an edge starts (and stores reads) while the broker is down, and paho keeps retrying.
    `will` (topic, payload): published by the broker, retained, when the connection ends without a
    DISCONNECT (the process killed, the machine gone). `keepalive_s` is also how long paho waits
    for the CONNACK.
    """
    import ssl

    import paho.mqtt.client as mqtt

    from edge.transport.mqtt import parse_broker_url

    b = parse_broker_url(broker_url)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=True
    )
    if b.username is not None:
        client.username_pw_set(b.username, b.password)
    if b.tls:
        ctx = ssl.create_default_context(cafile=b.ca_file)
        if b.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        client.tls_set_context(ctx)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(window)

    def connect() -> None:
        client.connect_async(b.host, b.port, keepalive=keepalive_s)

    pub = OutboxPublisher(outbox, client, connect, window=window)
    pub.broker = b.redacted()
    return pub
