"""The last stage of the data flow: an agency's receiver stores the reads the gate shared with it.

    gate -> alpr/share/<agency>/reads -> AgencyReceiver -> AgencyInbox (SQLite)

Delivery is exactly once into the inbox, not merely into the MQTT client:
  - a persistent session: reads shared while the receiver is away, or across a broker restart,
    wait for it;
  - QoS 1 with manual acknowledgement, and the inbox keyed by read id: a read is acknowledged
    only after the transaction that stores it commits, so a receiver killed in between gets the
    read again and stores nothing twice. A read delivered twice for any other reason (a broker
    restart before it saw the PUBACK; a gate killed between forwarding and noting it, a new
    packet MQTT cannot deduplicate) is also stored once.
    Not QoS 2: paho answers PUBREC before the application has the message and hands it over on
    PUBREL, so a receiver killed between the two would lose the read (the broker then resends
    only PUBREL, which a new process cannot match to a message);
  - a message that is not a valid forwarded read addressed to this agency is kept in the
    `rejected` table with the reason and acknowledged (it must not block the reads behind it),
    never stored as a read.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from edge.policy.brokerconf import share_topic
from edge.private_files import create_private
from edge.schema import SchemaError, parse_forwarded
from edge.transport import mqtt as transport

log = logging.getLogger("edge.agency")

SESSION_EXPIRY_S = 7 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reads (
    read_id TEXT PRIMARY KEY,
    plate TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    owner_agency TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    policy TEXT NOT NULL,
    rule TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class InboxResult:
    stored: int
    duplicates: int
    rejected: int


class AgencyInbox:
    """The agency's store of received reads (SQLite, WAL, one transaction per batch)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            create_private(self.path)  # plate reads: readable by the agency's account only
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a read acknowledged to the broker is on disk
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise OSError(f"{self.path}: cannot open the agency inbox: {getattr(err, 'strerror', None) or err}") from err
        self._lock = threading.Lock()

    def add(self, reads: list[tuple], rejected: list[tuple]) -> InboxResult:
        """reads: (read_id, plate, camera_id, owner, captured_at, received_at, policy, rule, payload);
        rejected: (received_at, topic, reason, size). Stored in one transaction."""
        with self._lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                before = self.db.total_changes
                cur.executemany("INSERT OR IGNORE INTO reads VALUES (?,?,?,?,?,?,?,?,?)", reads)
                stored = self.db.total_changes - before
                cur.executemany("INSERT INTO rejected (received_at, topic, reason, size) VALUES (?,?,?,?)", rejected)
                cur.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back on some errors (SQLITE_FULL): a second ROLLBACK
                # would raise "no transaction is active" and hide the real cause.
                if self.db.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        return InboxResult(stored, len(reads) - stored, len(rejected))

    def count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM reads").fetchone()[0]

    def read_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT read_id FROM reads ORDER BY received_at, read_id")]

    def rejected(self) -> list[dict]:
        with self._lock:
            rows = self.db.execute("SELECT received_at, topic, reason, size FROM rejected ORDER BY id").fetchall()
        return [dict(zip(("received_at", "topic", "reason", "size"), r)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self.db.close()


@dataclass
class ReceiverStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class AgencyReceiver:
    """Subscribes as `agency_id` to its share topic and stores each read once in `inbox`."""

    agency_id: str
    broker: transport.BrokerURL
    inbox: AgencyInbox
    client_id: str | None = None
    protocol: int = transport.MQTT_V5
    batch_wait_s: float = 0.02
    # Filters this agency also tries to subscribe to on the same connection (the demo tries '#'):
    # the broker may refuse them at SUBACK (probe_refused) or grant them and filter each delivery;
    # anything arriving off the share topic is rejected and counted, never stored.
    probe_topics: tuple[str, ...] = ()
    # False: a refused subscription to its own share topic is recorded (own_refused), not an error
    # (the demo runs a receiver for agencies the broker gives no rights, to show they get nothing).
    require_subscription: bool = True
    qos: int = 1  # of the subscriptions (the soak counts deliveries at 2, as the gate forwards)
    # Called with (time.time(), topic, payload) for every delivery, before any check (the soak's count).
    on_delivery: Callable[[float, str, bytes], None] | None = None
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.topic = share_topic(self.agency_id)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self.probe_refused: dict[str, bool] = {}  # probe filter -> refused at SUBACK
        self.own_refused = False  # its own share topic refused at SUBACK (require_subscription=False)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self.on_delivery is not None:
            self.on_delivery(time.time(), msg.topic, msg.payload)
        self._queue.put((msg.mid, msg.qos, msg.topic, msg.payload))

    def start(self) -> "AgencyReceiver":
        self._client = transport.connect(
            self.broker, self.client_id or f"agency-{self.agency_id}", protocol=self.protocol, clean_start=False,
            session_expiry_s=SESSION_EXPIRY_S, manual_ack=True, on_message=self._on_message,
            subscriptions=[(t, self.qos) for t in (self.topic, *self.probe_topics)],  # ack after commit
        )
        code = self._client.suback_codes.get(self.topic)
        self.own_refused = code is not None and transport.suback_refused(code)
        if self.own_refused and self.require_subscription:
            transport.close(self._client)
            raise transport.MQTTError(f"broker refused {self.agency_id}'s subscription to {self.topic}: {code} "
                                      "(a broker configured with the gate's policy gives an agency it refuses "
                                      "no rights, not even on its own share topic)")
        self.probe_refused = {t: transport.suback_refused(c) for t, c in self._client.suback_codes.items()
                              if t in self.probe_topics}
        self._worker = threading.Thread(target=self._run, name=f"agency-{self.agency_id}", daemon=True)
        self._worker.start()
        log.info("agency %s receiving %s into %s", self.agency_id, self.topic, self.inbox.path)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._client is not None:
            transport.close(self._client)
            self._client = None

    def _check(self, topic: str, payload: bytes, received_at: str):
        """The stored row, or the reason the message is refused."""
        if topic != self.topic:
            return None, f"topic {topic!r} is not {self.topic!r}"
        try:
            fwd = parse_forwarded(payload)
        except SchemaError as err:
            return None, str(err)
        if fwd.recipient != self.agency_id:
            return None, f"addressed to {fwd.recipient!r}, not {self.agency_id!r}"
        r = fwd.read
        return (r.read_id, r.plate, r.camera_id, r.agency_id, r.captured_at.isoformat(), received_at, fwd.policy,
                fwd.rule, bytes(payload)), None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = transport.take_batch(self._queue, 500, self.batch_wait_s, first_timeout=0.1)
                if batch:
                    self._store(batch)
        except BaseException as err:  # stop acknowledging: the broker keeps what is not stored
            self.error = err
            log.exception("agency %s receiver stopped on error", self.agency_id)

    def _store(self, batch: list[tuple]) -> None:
        now = datetime.now(timezone.utc).isoformat()
        reads, rejected = [], []
        for _mid, _qos, topic, payload in batch:
            try:
                row, reason = self._check(topic, payload, now)
            except Exception as err:  # one message that cannot be checked must not stop the inbox
                log.exception("agency %s could not check a message on %r", self.agency_id, topic[:100])
                row, reason = None, f"could not be checked: {err!r}"
            if row is None:
                log.warning("agency %s refused a message on %r (%d bytes): %s", self.agency_id, topic[:100],
                            len(payload), reason)
                rejected.append((now, topic[:256], reason[:500], len(payload)))
            else:
                reads.append(row)
        result = self.inbox.add(reads, rejected)
        client = self._client
        for mid, qos, _topic, _payload in batch:  # only after the commit
            if qos > 0 and client is not None:
                client.ack(mid, qos)
        with self._lock:
            s = self.stats
            s.received += len(batch)
            s.stored += result.stored
            s.duplicates += result.duplicates
            s.rejected += result.rejected

    def snapshot(self) -> dict:
        with self._lock:
            return self.stats.as_dict()

    def wait_received(self, n: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.stats.received >= n:
                    return True
            if self.error is not None:
                return False
            time.sleep(0.01)
        return False
