"""Append-only, hash-chained audit log of every gate decision (SQLite by default, PostgreSQL option).

One record per raw message the gate handled: when it decided, the data (read id, camera, operating
agency, plate, capture time), and for every registered agency what was decided, by which rule,
for which declared purpose and login: what SB 34's access log needs (Civil Code 1798.90.52).

Each record stores the hash of the record before it; `verify()` recomputes the chain and detects an
edited, removed, inserted or reordered record (a removed tail is caught by the head row, unless
that is rewritten too: publish `head()` elsewhere to anchor it).

Writes come in batches, one transaction per batch (SQLite in WAL mode): no fsync per read.
`append()` also answers, in the same transaction, which reads were already audited (the gate
forwards a redelivered read once) and records which reads' forwards were acknowledged.

Retention (edge.policy.retention) removes old reads' keys, after which a replay of such a read is no
longer recognised. Each run raises the audit log's expiry cut-off (table `audit_expiry`: the latest
cut-off of any retention run); `append(..., expire=...)` turns a decided read captured before it,
and not in the log, into a refusal inside the same transaction, so a retention run that commits
while a batch is being decided is still seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

from edge.private_files import create_private

GENESIS = "0" * 64

_FIELDS = ("recorded_at", "gate_id", "read_key", "read_id", "camera_id", "operating_agency", "plate",
           "captured_at", "topic", "policy", "outcome", "decisions", "detail")


@dataclass(frozen=True)
class AuditRecord:
    recorded_at: str  # ISO 8601 UTC, when the gate decided
    gate_id: str
    read_key: str | None  # "<camera from topic>/<read id>": the dedup key; None when unparseable
    read_id: str | None
    camera_id: str | None
    operating_agency: str | None
    plate: str | None
    captured_at: str | None
    topic: str
    policy: str
    outcome: str  # "decided" (policy applied per agency) or "rejected" (the whole message refused)
    decisions: str  # JSON list of [agency, "forward"|"refuse", rule, purpose, username]
    detail: str | None = None

    def values(self) -> tuple:
        return tuple(getattr(self, f) for f in _FIELDS)


_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def record_hash(prev_hash: str, seq: int, values: Sequence) -> str:
    """sha256 of the previous hash, a newline and the record as compact ASCII JSON [seq, *fields]."""
    canonical = _CANONICAL.encode([seq, *values])
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class AppendResult:
    first_seq: int
    inserted: int
    # read_key -> (decisions JSON as audited, forwards already acknowledged?) for reads audited before
    already: dict[str, tuple[str, bool]]
    # read keys of the records append(expire=...) audited as expired instead of as given
    expired: frozenset[str] = frozenset()


# expire(record, cutoff) -> the record to audit instead (see AuditStore.append)
ExpireFn = Callable[[AuditRecord, str], AuditRecord]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    head: str
    problems: list[str]

    def summary(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.records} records, head {self.head[:16]}"
        return f"audit chain BROKEN ({len(self.problems)} problem(s)): " + "; ".join(self.problems[:5])


class AuditStore:
    """Common logic; subclasses provide the SQL dialect and connection."""

    placeholder = "?"

    def append(self, records: Sequence[AuditRecord], done_keys: Iterable[str] = (),
               expire: ExpireFn | None = None) -> AppendResult:
        """Audit `records` (those whose read_key is in the log already are left out and reported in
        `already`) and note `done_keys` as forwarded, in one transaction.

        expire: for a "decided" record not in the log whose capture time is before the log's expiry
        cut-off (the latest retention run's), `expire(record, cutoff)` is audited instead and its key
        reported in `expired`: retention may have removed that read's key, so whether it was decided
        before can no longer be told (the gate refuses it). Read in the append's own transaction."""
        raise NotImplementedError

    def verify(self, anchors: dict[int, str] | None = None) -> VerifyResult:
        """anchors: {seq: hash, or its first 16+ hex digits} noted earlier (a head `audit verify`
        printed, kept elsewhere). The chain alone cannot show a rewrite from an edited record on (every
        later hash recomputed, the head updated); an anchored record whose hash changed, or that is
        gone, does."""
        # The head, the redactions and the rows as of one moment: a gate appending while this reads
        # (a live audit log) is not a removed tail, nor a retention run a record without its listing.
        with self._snapshot_with_expiry() as (head, redacted, rows, expiry):
            return self._verify(head, redacted, rows, anchors or {}, expiry)

    def _verify(self, head: tuple[int, str] | None, redacted: Iterable[tuple[int, int]], rows,
                anchors: dict[int, str], expiry: list | None = None) -> VerifyResult:
        """redacted: (seq, run_seq) of each record retention emptied, in sequence order, read along
        with the rows (both stream: nothing held per record but ranges of sequence numbers)."""
        problems: list[str] = []
        prev = GENESIS
        expected_seq = 1
        n = 0
        # Records whose read data retention removed (edge.policy.retention): their stored hash still
        # links the chain; their remains are checked against the retention record that lists them.
        from edge.policy.retention import KeptDigests, RedactionMarks

        kept = KeptDigests()
        marks = RedactionMarks()
        pending = iter(redacted)
        mark = next(pending, None)
        runs: dict[int, str] = {}
        anchored: set[int] = set()
        for row in rows:
            seq, values, prev_hash, h = row[0], row[1:-2], row[-2], row[-1]
            while mark is not None and mark[0] < seq:  # marked, but no such record
                marks.add(*mark)
                mark = next(pending, None)
            run_seq = None
            if mark is not None and mark[0] == seq:
                run_seq = mark[1]
                marks.add(*mark)
                mark = next(pending, None)
            n += 1
            if seq != expected_seq:
                problems.append(f"record {seq}: expected sequence {expected_seq} (record removed or reordered)")
            if prev_hash != prev:
                problems.append(f"record {seq}: previous-hash link broken (record before it removed, inserted or reordered)")
            if seq in anchors:
                anchored.add(seq)
            if seq in anchors and not (isinstance(h, str) and h.startswith(anchors[seq])):
                problems.append(f"record {seq}: hash {str(h)[:16]} is not the anchored {anchors[seq][:16]} "
                                "(the chain was rewritten from this record or before)")
            if run_seq is not None:
                kept.add(run_seq, [seq, *values])
            elif record_hash(prev_hash, seq, values) != h:
                problems.append(f"record {seq}: content does not match its hash (edited)")
            elif values[_OUTCOME] == "retention":
                runs[seq] = values[_DETAIL]
            prev = h
            expected_seq = seq + 1
            if len(problems) > 50:
                break
        while mark is not None:
            marks.add(*mark)
            mark = next(pending, None)
        problems.extend(f"record {s}: anchored but not in the chain (removed)" for s in sorted(set(anchors) - anchored))
        if marks.count or runs:
            from edge.policy.retention import redaction_problems

            problems.extend(redaction_problems(marks, kept.hexdigests(), runs))
        if runs and expiry is not None:
            from edge.policy.retention import expiry_problems

            problems.extend(expiry_problems(expiry, runs))
        if head is None:
            problems.append("the head row is missing (audit_head emptied)")
        elif not problems and (head[0] != n or head[1] != prev):
            problems.append(f"chain ends at record {n} but the head says {head[0]} (records removed at the end)")
        return VerifyResult(not problems, n, prev, problems)

    @contextmanager
    def _snapshot(self):
        """A context manager yielding (head or None, redactions: (seq, run_seq) pairs in sequence order,
        rows in sequence order), all read in one transaction; iterate them inside the `with`."""
        with self._snapshot_with_expiry() as (head, redacted, rows, _expiry):
            yield head, redacted, rows

    def _snapshot_with_expiry(self):
        """As _snapshot, and the audit_expiry table's rows in the same transaction: None when there is
        no such table (a log no gate of this version opened), [] when its row is missing, [cutoff]."""
        raise NotImplementedError

    def head(self) -> tuple[int, str]:
        raise NotImplementedError

    def is_locked(self, err: BaseException) -> bool:
        """Did append() fail only because another writer held the log past the wait allowed (the
        transaction changed nothing: the same append may be tried again)?"""
        return False

    def redactions(self) -> dict[int, int]:
        """seq of each record emptied by retention -> seq of the retention record that did it."""
        return {}

    def records(self, limit: int | None = None) -> list[dict]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _parse_utc(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _captured_before(captured_at: str | None, cutoff: datetime) -> bool:
    """A capture time that is missing or unreadable cannot be shown to be after the cut-off."""
    try:
        return captured_at is None or _parse_utc(captured_at) < cutoff
    except ValueError:
        return True


def _decide_batch(records: Sequence[AuditRecord], existing: dict[str, tuple[str, bool]],
                  head_seq: int, head_hash: str, expiry_cutoff: str | None = None,
                  expire: ExpireFn | None = None) -> tuple[list[tuple], int, str, frozenset[str]]:
    rows = []
    seq, h = head_seq, head_hash
    expired: set[str] = set()
    cutoff = _parse_utc(expiry_cutoff) if expire is not None and expiry_cutoff else None
    for r in records:
        if r.read_key is not None and r.read_key in existing:
            continue
        if cutoff is not None and r.outcome == "decided" and _captured_before(r.captured_at, cutoff):
            r = expire(r, expiry_cutoff)
            expired.add(r.read_key)
        seq += 1
        values = r.values()
        new_h = record_hash(h, seq, values)
        rows.append((seq, *values, h, new_h))
        h = new_h
    return rows, seq, h, frozenset(expired)


EXPIRY_TABLE = "audit_expiry"  # one row: the latest retention cut-off (UTC ISO 8601), or NULL


def ensure_expiry(execute, table_prefix: str, placeholder: str) -> None:
    """Create the expiry table and its row when missing, in the caller's transaction. A log that had
    retention runs before the table existed gets their latest cut-off (one scan, once)."""
    from edge.policy.retention import RETENTION_OUTCOME, latest_cutoff

    t = f"{table_prefix}{EXPIRY_TABLE}"
    execute(f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY CHECK (id = 1), cutoff TEXT)")
    if execute(f"SELECT 1 FROM {t} WHERE id = 1").fetchone() is None:
        details = [d for (d,) in execute(f"SELECT detail FROM {table_prefix}audit WHERE outcome = {placeholder}",
                                         (RETENTION_OUTCOME,)).fetchall()]
        execute(f"INSERT INTO {t} VALUES (1, {placeholder})", (latest_cutoff(details),))


def _expiry_cutoff(execute, table_prefix: str) -> str | None:
    row = execute(f"SELECT cutoff FROM {table_prefix}{EXPIRY_TABLE} WHERE id = 1").fetchone()
    if row is None:  # never so from this code: every path that creates the table writes the row
        raise AuditStoreError(f"audit log: the {table_prefix}{EXPIRY_TABLE} row is missing (edited?): the gate "
                              "cannot tell which reads retention may have removed; restart the gate to restore it")
    return row[0]


_COLUMNS = "seq, " + ", ".join(_FIELDS) + ", prev_hash, hash"
_OUTCOME = _FIELDS.index("outcome")
_DETAIL = _FIELDS.index("detail")


class AuditStoreError(RuntimeError):
    """The audit store named on the command line cannot be opened."""


_TABLES = ("audit", "audit_head")


class SQLiteAuditStore(AuditStore):
    def __init__(self, path: str | os.PathLike, synchronous: str = "FULL", create: bool = True):
        """create=False (audit verify, show, retention): open an existing audit log only, changing
        nothing in it; a missing file, or a database without the audit tables, is an AuditStoreError."""
        self.path = str(path)
        self._lock = threading.Lock()
        if os.path.isdir(self.path):  # before: 'no such file' (verify, show, retention) or 'unable to open database file' (gate)
            raise AuditStoreError(f"audit database {self.path}: is a folder; name a file, e.g. "
                                  f"{os.path.join(self.path, 'audit.db')}")
        if not create and not os.path.isfile(self.path):
            raise AuditStoreError(f"audit database {self.path}: no such file")
        if create:
            try:
                create_private(self.path)  # plates and read ids: readable by the gate's account only
            except OSError as err:
                raise AuditStoreError(f"audit database {self.path}: cannot create it: {err.strerror or err}") from None
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        if not create:
            have = {n for (n,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [t for t in _TABLES if t not in have]
            if missing:
                self.conn.close()
                raise AuditStoreError(f"audit database {self.path}: not an audit log (no table {', '.join(missing)})")
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: each batch's commit is durable (one fsync per batch, never one per read).
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS audit (
                seq INTEGER PRIMARY KEY,
                recorded_at TEXT NOT NULL, gate_id TEXT NOT NULL,
                read_key TEXT UNIQUE, read_id TEXT, camera_id TEXT, operating_agency TEXT,
                plate TEXT, captured_at TEXT, topic TEXT NOT NULL, policy TEXT NOT NULL,
                outcome TEXT NOT NULL, decisions TEXT NOT NULL, detail TEXT,
                prev_hash TEXT NOT NULL, hash TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
            INSERT OR IGNORE INTO audit_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
            CREATE TABLE IF NOT EXISTS forwarded (read_key TEXT PRIMARY KEY);
            -- Append-only: the gate never updates or deletes a record.
            CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
            CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
            """
        )
        with self._write() as c:
            ensure_expiry(c.execute, "", "?")

    @contextmanager
    def _write(self):
        """One write transaction on the store's connection (callers hold self._lock, or are __init__)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")  # one writer at a time: the chain stays linear across gates
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back on some errors (SQLITE_FULL): a second ROLLBACK
            # would raise "no transaction is active" and hide the real cause.
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def append(self, records: Sequence[AuditRecord], done_keys: Iterable[str] = (),
               expire: ExpireFn | None = None) -> AppendResult:
        done = [(k,) for k in done_keys]
        keys = [r.read_key for r in records if r.read_key is not None]
        with self._lock, self._write() as c:
            if done:
                # Only keys still in the log: a retention run may have emptied the read since its
                # forwards went out, and its key would stay here past the limit, in no retention record.
                c.executemany("INSERT OR IGNORE INTO forwarded SELECT read_key FROM audit WHERE read_key = ?", done)
            existing: dict[str, tuple[str, bool]] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = ("SELECT a.read_key, a.decisions, f.read_key IS NOT NULL FROM audit a "
                     "LEFT JOIN forwarded f ON f.read_key = a.read_key "
                     f"WHERE a.read_key IN ({','.join('?' * len(chunk))})")
                for k, d, fwd in c.execute(q, chunk):
                    existing[k] = (d, bool(fwd))
            head_seq, head_hash = c.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            cutoff = _expiry_cutoff(c.execute, "") if expire is not None else None
            rows, seq, h, expired = _decide_batch(records, existing, head_seq, head_hash, cutoff, expire)
            if rows:
                c.executemany(f"INSERT INTO audit ({_COLUMNS}) VALUES ({','.join('?' * 16)})", rows)
                c.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, h))
        return AppendResult(head_seq + 1, len(rows), existing, expired)

    def head(self) -> tuple[int, str]:
        with self._lock:
            return tuple(self.conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone())

    def is_locked(self, err: BaseException) -> bool:
        # SQLITE_BUSY, SQLITE_LOCKED and their extended codes (the low byte)
        return isinstance(err, sqlite3.OperationalError) and (getattr(err, "sqlite_errorcode", 0) & 0xFF) in (5, 6)

    def redactions(self) -> dict[int, int]:
        c = sqlite3.connect(self.path, timeout=30)
        try:
            return self._redactions(c)
        finally:
            c.close()

    @staticmethod
    def _redactions(c: sqlite3.Connection) -> dict[int, int]:
        if not c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_redacted'").fetchone():
            return {}
        return dict(c.execute("SELECT seq, run_seq FROM audit_redacted").fetchall())

    @contextmanager
    def _snapshot_with_expiry(self):
        # Its own connection (the gate keeps writing on self.conn), one read transaction: in WAL
        # mode every statement in it sees the database as of its first read. Rows stream.
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            c.execute("BEGIN")
            head = c.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            expiry = None
            if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (EXPIRY_TABLE,)).fetchone():
                expiry = [v for (v,) in c.execute(f"SELECT cutoff FROM {EXPIRY_TABLE} WHERE id = 1")]
            redacted = ()
            if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_redacted'").fetchone():
                redacted = c.execute("SELECT seq, run_seq FROM audit_redacted ORDER BY seq")
            yield head, redacted, c.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"), expiry
        finally:
            c.close()

    def records(self, limit: int | None = None) -> list[dict]:
        c = sqlite3.connect(self.path, timeout=30)
        c.row_factory = sqlite3.Row
        try:
            q = f"SELECT {_COLUMNS} FROM audit ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
            return [dict(r) for r in c.execute(q)]
        finally:
            c.close()

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class PostgresAuditStore(AuditStore):
    """Several gates (shared subscription) writing one chain: the head row is locked per batch."""

    def __init__(self, dsn: str, table_prefix: str = "alpr_", create: bool = True):
        import psycopg  # the `postgres` extra

        self.dsn = dsn
        self.t = table_prefix
        self._lock = threading.Lock()
        self.conn = psycopg.connect(dsn, autocommit=False)
        t = self.t
        if not create:  # as SQLiteAuditStore: an existing audit log only, nothing created
            missing = [f"{t}{n}" for n in _TABLES
                       if self.conn.execute("SELECT to_regclass(%s)", (f"{t}{n}",)).fetchone()[0] is None]
            self.conn.rollback()
            if missing:
                self.conn.close()
                raise AuditStoreError(f"no audit log in this database (no table {', '.join(missing)})")
            return
        with self.conn.transaction():
            self.schema_lock(self.conn)
            self.conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {t}audit (
                    seq BIGINT PRIMARY KEY,
                    recorded_at TEXT NOT NULL, gate_id TEXT NOT NULL,
                    read_key TEXT UNIQUE, read_id TEXT, camera_id TEXT, operating_agency TEXT,
                    plate TEXT, captured_at TEXT, topic TEXT NOT NULL, policy TEXT NOT NULL,
                    outcome TEXT NOT NULL, decisions TEXT NOT NULL, detail TEXT,
                    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
                )"""
            )
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {t}audit_head (id INT PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL)")
            self.conn.execute(f"INSERT INTO {t}audit_head VALUES (1, 0, %s) ON CONFLICT DO NOTHING", (GENESIS,))
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {t}forwarded (read_key TEXT PRIMARY KEY)")
            ensure_expiry(self.conn.execute, t, "%s")
        self.conn.commit()

    def schema_lock(self, conn) -> None:
        """Until the end of the caller's transaction, the one creator of this log's tables. Two gates
        (or a gate and a retention run) creating a table at once: CREATE TABLE IF NOT EXISTS is not
        atomic in PostgreSQL, and one of them failed with 'duplicate key value violates unique
        constraint "pg_type_typname_nsp_index"'."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"alpr-edge audit schema {self.t}",))

    def append(self, records: Sequence[AuditRecord], done_keys: Iterable[str] = (),
               expire: ExpireFn | None = None) -> AppendResult:
        t = self.t
        done = [(k,) for k in done_keys]
        keys = [r.read_key for r in records if r.read_key is not None]
        with self._lock, self.conn.transaction():
            cur = self.conn.cursor()
            head_seq, head_hash = cur.execute(f"SELECT seq, hash FROM {t}audit_head WHERE id = 1 FOR UPDATE").fetchone()
            if done:
                # Only keys still in the log (see SQLiteAuditStore.append).
                cur.executemany(f"INSERT INTO {t}forwarded SELECT read_key FROM {t}audit WHERE read_key = %s "
                                "ON CONFLICT DO NOTHING", done)
            existing: dict[str, tuple[str, bool]] = {}
            if keys:
                q = (f"SELECT a.read_key, a.decisions, f.read_key IS NOT NULL FROM {t}audit a "
                     f"LEFT JOIN {t}forwarded f ON f.read_key = a.read_key WHERE a.read_key = ANY(%s)")
                for k, d, fwd in cur.execute(q, (keys,)):
                    existing[k] = (d, bool(fwd))
            # After the head row's lock: a retention run (which takes it too) has committed or waits.
            cutoff = _expiry_cutoff(cur.execute, t) if expire is not None else None
            rows, seq, h, expired = _decide_batch(records, existing, head_seq, head_hash, cutoff, expire)
            if rows:
                cur.executemany(f"INSERT INTO {t}audit ({_COLUMNS}) VALUES ({','.join(['%s'] * 16)})", rows)
                cur.execute(f"UPDATE {t}audit_head SET seq = %s, hash = %s WHERE id = 1", (seq, h))
        self.conn.commit()
        return AppendResult(head_seq + 1, len(rows), existing, expired)

    def head(self) -> tuple[int, str]:
        with self._lock:
            row = self.conn.execute(f"SELECT seq, hash FROM {self.t}audit_head WHERE id = 1").fetchone()
            self.conn.commit()
            return tuple(row)

    def is_locked(self, err: BaseException) -> bool:
        # lock_timeout (55P03): PostgreSQL waits without one, unless the DSN or role sets it
        return getattr(err, "sqlstate", None) == "55P03"

    def redactions(self) -> dict[int, int]:
        with self._lock:
            exists = self.conn.execute("SELECT to_regclass(%s)", (f"{self.t}audit_redacted",)).fetchone()[0]
            rows = self.conn.execute(f"SELECT seq, run_seq FROM {self.t}audit_redacted").fetchall() if exists else []
            self.conn.commit()
        return dict(rows)

    @contextmanager
    def _snapshot_with_expiry(self):
        t = self.t
        with self._lock:
            try:
                # One snapshot for all the reads (READ COMMITTED, the default, takes one per statement).
                self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                head = self.conn.execute(f"SELECT seq, hash FROM {t}audit_head WHERE id = 1").fetchone()
                exists = self.conn.execute("SELECT to_regclass(%s)", (f"{t}audit_redacted",)).fetchone()[0]
                expiry = None
                if self.conn.execute("SELECT to_regclass(%s)", (f"{t}{EXPIRY_TABLE}",)).fetchone()[0]:
                    expiry = [v for (v,) in self.conn.execute(f"SELECT cutoff FROM {t}{EXPIRY_TABLE} WHERE id = 1")]
                # A server-side cursor: the rows stream in pages, as SQLite's do (fetchall() held the
                # whole log in memory, about 1 KB a record: gigabytes for a few million records).
                with self.conn.cursor(name="alpr_edge_audit_snapshot") as rows, \
                        self.conn.cursor(name="alpr_edge_audit_redacted") as redacted:
                    rows.itersize = redacted.itersize = 2000
                    rows.execute(f"SELECT {_COLUMNS} FROM {t}audit ORDER BY seq")
                    if exists:
                        redacted.execute(f"SELECT seq, run_seq FROM {t}audit_redacted ORDER BY seq")
                    yield (tuple(head) if head else None), (redacted if exists else ()), rows, expiry
            finally:
                self.conn.rollback()

    def records(self, limit: int | None = None) -> list[dict]:
        with self._lock:
            cur = self.conn.execute(f"SELECT {_COLUMNS} FROM {self.t}audit ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else ""))
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            self.conn.commit()
        return rows

    def drop(self) -> None:
        """Remove this store's tables (benches and tests on a shared database)."""
        with self._lock, self.conn.transaction():
            for t in ("audit", "audit_head", "forwarded", "audit_redacted", EXPIRY_TABLE):
                self.conn.execute(f"DROP TABLE IF EXISTS {self.t}{t}")

    def close(self) -> None:
        self.conn.close()


def open_audit(target: str, create: bool = True) -> AuditStore:
    """`postgresql://...` (or `postgres://`) for PostgreSQL, anything else is a SQLite file path.

    A `table_prefix=NAME_` query parameter (ours, not libpq's) picks the tables (default `alpr_`).
    create=False: an existing audit log only (verify, show, retention), nothing created or changed.
    """
    if target.startswith(("postgresql://", "postgres://")):
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(target)
        query = parse_qsl(parts.query)
        prefix = dict(query).get("table_prefix", "alpr_")
        if not prefix.replace("_", "").isalnum():
            raise ValueError(f"table_prefix {prefix!r}: letters, digits and '_' only")
        dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "table_prefix"])))
        try:
            return PostgresAuditStore(dsn, table_prefix=prefix, create=create)
        except AuditStoreError as err:
            raise AuditStoreError(f"audit database {parts.hostname or 'localhost'}:{parts.port or 5432}"
                                  f"{parts.path}: {err}") from None
        except Exception as err:
            if not type(err).__module__.startswith("psycopg"):
                raise
            # libpq's messages run over several lines ("...Connection refused\n\tIs the server
            # running...?"): one line, as every error of the command line
            raise AuditStoreError(f"audit database {parts.hostname or 'localhost'}:{parts.port or 5432}"
                                  f"{parts.path}: {' '.join(str(err).split())}") from err
    try:
        return SQLiteAuditStore(target, create=create)
    except sqlite3.Error as err:  # a missing folder, a file that is not a database: name the file
        raise AuditStoreError(f"audit database {target}: {err}") from err
