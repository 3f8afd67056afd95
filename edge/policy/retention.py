"""Retention: remove the read data of audit records older than N days, unless held for a listed reason.

`alpr-edge retention AUDIT --max-age-days 60 [--holds holds.yaml] [--dry-run] [--json]`

A read's data in the audit log (plate, read id, capture time, dedup key, free-text detail) is removed
once the read is older than the limit (by capture time; by decision time for messages that had
none). What stays of each record is the access-log skeleton SB 34 asks for: when the gate decided,
which camera and operating agency, and for every agency what was decided, by which rule, for which
purpose and login.

The hash chain stays verifiable. A run empties the expired records in chunks of CHUNK_SIZE, each in
its own short transaction (a gate appending to the same log waits for one chunk, not the run), and
appends per chunk one `retention` record to the chain that lists the records it redacted (as
sequence ranges), the cut-off, the holds it honoured since the chunk before (counts per reason) and
a digest of what it left of those records. `alpr-edge audit verify` then checks each
redacted record against it: its link in the chain (its stored hash is still the one the next
record points to), that a retention record lists it, and that what remains of it is what the
retention run left. A record emptied without a retention record, or edited after one, is detected.

Once a read's key is gone the gate cannot recognise a replay of it, so each run also raises the log's
expiry cut-off (`audit_expiry`, never lowered): the gate refuses a read captured before it that is not
in the log (`refuse:expired`), in the same transaction as it audits the batch (AuditStore.append).

Holds (YAML): reads kept whatever their age, each with the reason (a case number, a court order):

    holds:
      - plate: 7ABC123
        reason: "case 2026-00042, Sacramento PD"
      - read_id: 3f2a9c0e5b7d4e1f
        reason: "subpoena 26-118"

A read several holds keep is counted under all their reasons, joined with '; '.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from edge.policy.audit import _CANONICAL, _COLUMNS, _FIELDS, EXPIRY_TABLE, AuditRecord, AuditStore, \
    PostgresAuditStore, SQLiteAuditStore, ensure_expiry, record_hash
from edge.policy.registry import describe_yaml_error, load_yaml
from edge.schema import PlateText, ReadId, describe_validation_error

# Removed from a record when its read expires (set to NULL); every other field stays.
REMOVED_FIELDS = ("read_key", "read_id", "plate", "captured_at", "detail")
RETENTION_OUTCOME = "retention"
_KEPT_IDX = [i for i, f in enumerate(_FIELDS) if f not in REMOVED_FIELDS]


class RetentionError(ValueError):
    """Invalid holds file or retention settings. The text names the problem."""


class Hold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    plate: PlateText | None = None
    read_id: ReadId | None = None
    reason: Annotated[str, StringConstraints(min_length=3, max_length=200)]

    @model_validator(mode="after")
    def _one_key(self) -> "Hold":
        if (self.plate is None) == (self.read_id is None):
            raise ValueError("a hold names exactly one of plate or read_id")
        return self


class Holds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    holds: list[Hold] = []


def load_holds(path: str | Path | None) -> Holds:
    if path is None:
        return Holds()
    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RetentionError(f"holds {path} is not valid YAML: {describe_yaml_error(err)}") from None
    except (OSError, UnicodeDecodeError, RecursionError) as err:
        raise RetentionError(f"cannot read holds {path}: {err}") from None
    try:
        return Holds.model_validate(data if data is not None else {})
    except ValidationError as err:
        msg, _ = describe_validation_error(err)
        raise RetentionError(f"holds {path}: {msg}") from None


@dataclass(frozen=True)
class RetentionResult:
    cutoff: str
    redacted: int
    held: dict[str, int]
    already_redacted: int
    record_seq: int | None  # the last retention record appended (None: dry run or nothing to do)
    records: int = 0  # retention records appended: one per chunk of emptied records

    def as_dict(self) -> dict:
        return self.__dict__.copy()


# -- shared by verify() and the runs ----------------------------------------------------------------

def ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _kept_line(row: list) -> bytes:
    return _CANONICAL.encode([row[0], *[row[1 + i] for i in _KEPT_IDX]]).encode() + b"\n"


def kept_digest(rows: list[list]) -> str:
    """sha256 over [seq, kept fields...] of every redacted record, in sequence order."""
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r[0]):
        h.update(_kept_line(row))
    return h.hexdigest()


class KeptDigests:
    """kept_digest per retention run, fed one record at a time in sequence order (verify streams the
    log: keeping every redacted record's fields until the end took about 1 KB per record)."""

    def __init__(self) -> None:
        self._hashes: dict[int, "hashlib._Hash"] = {}

    def add(self, run_seq: int, row: list) -> None:
        self._hashes.setdefault(run_seq, hashlib.sha256()).update(_kept_line(row))

    def hexdigests(self) -> dict[int, str]:
        return {run: h.hexdigest() for run, h in self._hashes.items()}


class RedactionMarks:
    """audit_redacted's rows, fed in sequence order, as ranges of sequence numbers per retention run
    (verify streams the log: a dict of every emptied record took about 190 bytes a record)."""

    def __init__(self) -> None:
        self.by_run: dict[int, list[list[int]]] = {}
        self.count = 0

    def add(self, seq: int, run_seq: int) -> None:
        spans = self.by_run.setdefault(run_seq, [])
        if spans and spans[-1][1] == seq - 1:
            spans[-1][1] = seq
        else:
            spans.append([seq, seq])
        self.count += 1


def _union(span_lists: Iterable[list[list[int]]]) -> list[list[int]]:
    """The sequence numbers in any of these lists of [first, last] spans, as sorted disjoint spans."""
    out: list[list[int]] = []
    for a, b in sorted(span for spans in span_lists for span in spans):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _minus(spans: list[list[int]], other: list[list[int]]) -> list[list[int]]:
    """The numbers in `spans` and not in `other` (both sorted and disjoint)."""
    out: list[list[int]] = []
    j = 0
    for a, b in spans:
        while j < len(other) and other[j][1] < a:
            j += 1
        k, start = j, a
        while k < len(other) and other[k][0] <= b:
            if other[k][0] > start:
                out.append([start, other[k][0] - 1])
            start = max(start, other[k][1] + 1)
            k += 1
        if start <= b:
            out.append([start, b])
    return out


def _each(spans: list[list[int]], most: int = 51):
    """The first `most` numbers of these spans."""
    n = 0
    for a, b in spans:
        for s in range(a, b + 1):
            if n >= most:
                return
            yield s
            n += 1


def redaction_problems(marks: RedactionMarks, kept: dict[int, str], runs: dict[int, str]) -> list[str]:
    """Called by AuditStore.verify: each redacted record must be listed by an intact retention record,
    and what is left of the records a run redacted must still hash to the digest it recorded
    (`kept`: run -> KeptDigests' digest of what is left of the records marked as its)."""
    problems: list[str] = []
    listed: dict[int, list[list[int]]] = {}
    digests: dict[int, str] = {}
    for run_seq, detail in runs.items():
        try:
            d = json.loads(detail)
            listed[run_seq] = _union([[[int(a), int(b)] for a, b in d["redacted"]]])
            digests[run_seq] = d["kept_digest"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"record {run_seq}: retention record is unreadable")
    unlisted = _union(_minus(spans, listed.get(run_seq, [])) for run_seq, spans in marks.by_run.items())
    problems.extend(f"record {s}: content removed without a retention record listing it (edited)" for s in _each(unlisted))
    for run_seq, digest in kept.items():
        if run_seq in digests and digest != digests[run_seq]:
            problems.append(f"retention record {run_seq}: what is left of the records it redacted was edited")
    marked = _union(marks.by_run.values())
    for run_seq, spans in sorted(listed.items()):
        problems.extend(f"record {s}: listed by retention record {run_seq} but not marked redacted"
                        for s in _each(_minus(spans, marked)))
    twice: list[list[int]] = []  # numbers in the spans of two runs (each run's own are disjoint)
    end = None
    for a, b in sorted(span for spans in listed.values() for span in spans):
        if end is not None and a <= end:
            twice.append([a, min(b, end)])
        end = b if end is None else max(end, b)
    problems.extend(f"record {s}: listed by two retention records" for s in _each(twice))
    return problems[:50]


def _utc_iso(t: datetime) -> str:
    """Fixed width, so that stored cut-offs also compare as text."""
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def latest_cutoff(details: Iterable[str | None]) -> str | None:
    """The latest cut-off among retention records' details (UTC ISO 8601), None when none has one."""
    latest: datetime | None = None
    for detail in details:
        try:
            t = datetime.fromisoformat(json.loads(detail)["cutoff"])
        except (ValueError, KeyError, TypeError):
            continue  # verify() reports an unreadable retention record
        t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        latest = t if latest is None or t > latest else latest
    return None if latest is None else _utc_iso(latest)


def expiry_problems(expiry: list, runs: dict[int, str]) -> list[str]:
    """Called by AuditStore.verify on a log with retention records and an expiry table: the gate
    refuses reads captured before the expiry cut-off, which must not be earlier than any retention
    run's (lowered, a replay of a read whose key a run removed would be forwarded again)."""
    if not expiry:
        return ["the expiry cut-off row (audit_expiry) is missing: the gate stops rather than forward replays "
                "of reads whose keys retention removed"]
    latest = latest_cutoff(runs.values())
    if latest is None:
        return []
    if expiry[0] is None or datetime.fromisoformat(expiry[0]) < datetime.fromisoformat(latest):
        run = max(runs, key=lambda s: latest_cutoff([runs[s]]) or "")
        return [f"the expiry cut-off {expiry[0]} is before retention record {run}'s cut-off {latest} (lowered: "
                "replays of reads retention emptied would be forwarded again)"]
    return []


def _raise_expiry(execute, table_prefix: str, placeholder: str, cutoff: datetime) -> None:
    """In a retention run's transaction: the expiry cut-off becomes this run's, unless already later
    (a run with a longer limit, or --now in the past, must not lower it)."""
    ensure_expiry(execute, table_prefix, placeholder)
    t = f"{table_prefix}{EXPIRY_TABLE}"
    (stored,) = execute(f"SELECT cutoff FROM {t} WHERE id = 1").fetchone()
    if stored is None or datetime.fromisoformat(stored) < cutoff:
        execute(f"UPDATE {t} SET cutoff = {placeholder} WHERE id = 1", (_utc_iso(cutoff),))


def _age_reference(values: dict) -> datetime | None:
    for f in ("captured_at", "recorded_at"):
        v = values.get(f)
        if v:
            try:
                t = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                continue
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return None


def _retention_record(now: datetime, cutoff: datetime, max_age_days: float, seqs: list[int], kept_rows: list[list],
                      held: dict[str, int], label: str, chunk: int = 1) -> AuditRecord:
    # One run writes one record per chunk, all with the run's recorded_at; `chunk` counts them from 1.
    detail = json.dumps({"max_age_days": max_age_days, "cutoff": cutoff.isoformat(), "redacted": ranges(seqs),
                         "count": len(seqs), "fields_removed": list(REMOVED_FIELDS), "held": held,
                         "kept_digest": kept_digest(kept_rows), "chunk": chunk}, separators=(",", ":"), sort_keys=True)
    return AuditRecord(recorded_at=now.isoformat(), gate_id=label, read_key=None, read_id=None, camera_id=None,
                       operating_agency=None, plate=None, captured_at=None, topic="-", policy=f"retention:{max_age_days:g}d",
                       outcome=RETENTION_OUTCOME, decisions="[]", detail=detail)


def _redacted_row(row: dict) -> list:
    return [row["seq"], *[None if f in REMOVED_FIELDS else row[f] for f in _FIELDS]]


# --now may be this much ahead of the clock (another machine's clock; the gate's own clock skew limit).
FUTURE_NOW_GRACE = timedelta(minutes=5)
# Records emptied per transaction (and retention record): SQLite's write lock, or PostgreSQL's head
# row lock, is held for one chunk, a fraction of a second, while gates wait to append.
CHUNK_SIZE = 5000


def enforce_retention(store: AuditStore, max_age_days: float, holds: Holds | None = None, now: datetime | None = None,
                      dry_run: bool = False, label: str = "retention", chunk_size: int = CHUNK_SIZE) -> RetentionResult:
    """Empty the expired records `chunk_size` at a time, each chunk in its own short transaction with
    its own retention record: a gate appending to the same log waits for one chunk, never for the
    whole run (a run over a large log held SQLite's write lock past the gate's 30 s busy timeout,
    which stopped the gate, and read every record into memory)."""
    if not (0 < max_age_days < math.inf):  # NaN fails both
        raise RetentionError(f"max_age_days must be positive and finite, got {max_age_days:g}")
    if chunk_size < 1:
        raise RetentionError(f"chunk_size must be at least 1, got {chunk_size}")
    holds = holds or Holds()
    clock = datetime.now(timezone.utc)
    now = now or clock
    if now > clock + FUTURE_NOW_GRACE:
        # The run would empty reads younger than the limit and, through the expiry cut-off it
        # raises, make the gates refuse every live read (refuse:expired) until the clock catches up.
        raise RetentionError(f"now {now.isoformat()} (--now) is after this machine's clock {clock.isoformat()}: "
                             "retention runs as of the present or the past only")
    try:
        cutoff = now - timedelta(days=max_age_days)
        # Stored times are UTC ISO 8601 text; one written with another offset differs from its UTC
        # text by at most 14 hours, so this text bound lets SQL pass over the rest.
        bound = _utc_iso(cutoff + timedelta(days=1))
    except OverflowError:  # more days than a timedelta holds, or a cut-off before year 1
        raise RetentionError(f"max_age_days {max_age_days:g} before {now.isoformat()}: the cut-off would be "
                             "before year 1") from None
    if isinstance(store, SQLiteAuditStore):
        log: _RetentionLog = _SQLiteLog(store)
    elif isinstance(store, PostgresAuditStore):
        log = _PostgresLog(store)
    else:
        raise RetentionError(f"no retention for {type(store).__name__}")
    held_reason = _hold_reasons(holds)
    already = log.count_redacted()
    redacted = 0
    held: dict[str, int] = {}
    chunk_held: dict[str, int] = {}  # held since the last chunk written: listed by the next one
    chunk: list[dict] = []
    run_seqs: list[int] = []

    def write_chunk() -> None:
        nonlocal redacted
        run_seq, n = log.redact(chunk, lambda rows: _retention_record(
            now, cutoff, max_age_days, [r["seq"] for r in rows], [_redacted_row(r) for r in rows], chunk_held, label,
            len(run_seqs) + 1), cutoff)
        redacted += n
        if run_seq is not None:
            run_seqs.append(run_seq)
        chunk.clear()
        chunk_held.clear()

    after = 0
    while True:
        page = log.candidates(after, bound, chunk_size)
        if not page:
            break
        after = page[-1]["seq"]
        for r in page:
            reason = _expired(r, cutoff, held_reason)
            if reason is _KEEP:
                continue
            if reason is not None:
                held[reason] = held.get(reason, 0) + 1
                chunk_held[reason] = chunk_held.get(reason, 0) + 1
                continue
            if dry_run:
                redacted += 1
                continue
            if len(chunk) >= chunk_size:
                write_chunk()
            chunk.append(r)
    if chunk:
        write_chunk()
    return RetentionResult(cutoff.isoformat(), redacted, held, already, run_seqs[-1] if run_seqs else None,
                           len(run_seqs))


_KEEP = object()  # not expired


def _hold_reasons(holds: Holds):
    """row -> the reasons of every hold that keeps it, joined with '; ' (read id holds first, then
    plate holds, each in file order), or None. Before, one reason won: two cases holding one plate, or
    a subpoena for a read of a held plate, were counted under one of them only."""
    by_id: dict[str, list[str]] = {}
    by_plate: dict[str, list[str]] = {}
    for h in holds.holds:
        (by_id.setdefault(h.read_id, []) if h.read_id else by_plate.setdefault(h.plate, [])).append(h.reason)

    def reasons(row: dict) -> str | None:
        found = by_id.get(row["read_id"], []) + by_plate.get(row["plate"], [])
        return "; ".join(dict.fromkeys(found)) or None

    return reasons


def _expired(row: dict, cutoff: datetime, held_reason):
    """None: to be emptied; a hold's reason: expired but held; _KEEP: not expired."""
    t = _age_reference(row)
    if t is None or t >= cutoff:
        return _KEEP
    return held_reason(row)


_SET_NULL = ", ".join(f"{f} = NULL" for f in REMOVED_FIELDS)
_CANDIDATES = (f"SELECT {_COLUMNS} FROM {{t}}audit a WHERE seq > {{p}} AND outcome != '{RETENTION_OUTCOME}' "
               "AND (captured_at < {p} OR recorded_at < {p}) {not_redacted} ORDER BY seq LIMIT {p}")
# NOT EXISTS, an index probe per row: PostgreSQL runs NOT IN (subquery) as a hash only while the
# emptied records' numbers fit in work_mem, and past that rescans them for every candidate.
_NOT_REDACTED = "AND NOT EXISTS (SELECT 1 FROM {t}audit_redacted r WHERE r.seq = a.seq)"


class _RetentionLog:
    """What a retention run needs of one backend."""

    def count_redacted(self) -> int:
        raise NotImplementedError

    def candidates(self, after_seq: int, bound: str, limit: int) -> list[dict]:
        """Up to `limit` records after `after_seq`, in order, not emptied yet, that may be older than
        the cut-off (decided or captured before `bound`); read outside any write transaction."""
        raise NotImplementedError

    def redact(self, rows: list[dict], record, cutoff: datetime) -> tuple[int | None, int]:
        """Empty these records (less any a concurrent run emptied) and append `record(rows)`, raise the
        expiry cut-off, in one transaction: (its sequence number or None, records emptied)."""
        raise NotImplementedError


class _SQLiteLog(_RetentionLog):
    def __init__(self, store: SQLiteAuditStore):
        self.store = store

    def _has_redacted(self, c) -> bool:
        return c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_redacted'").fetchone() is not None

    def count_redacted(self) -> int:
        with self.store._lock:  # noqa: SLF001 - the store's connection is shared with a gate in tests
            c = self.store.conn
            return c.execute("SELECT COUNT(*) FROM audit_redacted").fetchone()[0] if self._has_redacted(c) else 0

    def candidates(self, after_seq, bound, limit):
        with self.store._lock:  # noqa: SLF001
            c = self.store.conn
            q = _CANDIDATES.format(t="", p="?", not_redacted=_NOT_REDACTED.format(t="")
                                   if self._has_redacted(c) else "")
            cur = c.execute(q, (after_seq, bound, bound, limit))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def redact(self, rows, record, cutoff):
        with self.store._lock, self.store._write() as c:  # noqa: SLF001 - one writer with the gate
            c.execute("CREATE TABLE IF NOT EXISTS audit_redacted (seq INTEGER PRIMARY KEY, run_seq INTEGER NOT NULL)")
            seqs = [r["seq"] for r in rows]
            done = set()
            for i in range(0, len(seqs), 500):
                part = seqs[i:i + 500]
                done.update(s for (s,) in c.execute(
                    f"SELECT seq FROM audit_redacted WHERE seq IN ({','.join('?' * len(part))})", part))
            rows = [r for r in rows if r["seq"] not in done]
            if not rows:
                return None, 0
            seqs = [r["seq"] for r in rows]
            head_seq, head_hash = c.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            rec = record(rows)
            run_seq = head_seq + 1
            h = record_hash(head_hash, run_seq, rec.values())
            # The append-only trigger is lifted only inside this transaction, which also writes
            # the retention record that accounts for every change.
            c.execute("DROP TRIGGER IF EXISTS audit_no_update")
            for i in range(0, len(seqs), 500):
                part = seqs[i:i + 500]
                c.execute(f"UPDATE audit SET {_SET_NULL} WHERE seq IN ({','.join('?' * len(part))})", part)
            c.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
                      "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END")
            c.executemany("INSERT INTO audit_redacted VALUES (?, ?)", [(s, run_seq) for s in seqs])
            c.executemany("DELETE FROM forwarded WHERE read_key = ?", [(r["read_key"],) for r in rows if r["read_key"]])
            c.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES ({','.join('?' * 16)})",
                      (run_seq, *rec.values(), head_hash, h))
            c.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (run_seq, h))
            _raise_expiry(c.execute, "", "?", cutoff)
        return run_seq, len(rows)


class _PostgresLog(_RetentionLog):
    def __init__(self, store: PostgresAuditStore):
        self.store = store
        self.t = store.t

    def _has_redacted(self) -> bool:
        return self.store.conn.execute("SELECT to_regclass(%s)", (f"{self.t}audit_redacted",)).fetchone()[0] is not None

    def count_redacted(self) -> int:
        with self.store._lock, self.store.conn.transaction():  # noqa: SLF001
            if not self._has_redacted():
                return 0
            return self.store.conn.execute(f"SELECT COUNT(*) FROM {self.t}audit_redacted").fetchone()[0]

    def candidates(self, after_seq, bound, limit):
        t = self.t
        with self.store._lock, self.store.conn.transaction():  # noqa: SLF001
            q = _CANDIDATES.format(t=t, p="%s", not_redacted=_NOT_REDACTED.format(t=t)
                                   if self._has_redacted() else "")
            cur = self.store.conn.execute(q, (after_seq, bound, bound, limit))
            names = [d.name for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def redact(self, rows, record, cutoff):
        t = self.t
        conn = self.store.conn
        with self.store._lock, conn.transaction():  # noqa: SLF001
            cur = conn.cursor()
            # The head row's lock first, as the gates take it: one writer at a time on the chain.
            head_seq, head_hash = cur.execute(f"SELECT seq, hash FROM {t}audit_head WHERE id = 1 FOR UPDATE").fetchone()
            self.store.schema_lock(cur)  # creates audit_redacted, audit_expiry as a starting gate may
            cur.execute(f"CREATE TABLE IF NOT EXISTS {t}audit_redacted (seq BIGINT PRIMARY KEY, run_seq BIGINT NOT NULL)")
            done = {s for (s,) in cur.execute(f"SELECT seq FROM {t}audit_redacted WHERE seq = ANY(%s)",
                                              ([r["seq"] for r in rows],)).fetchall()}
            rows = [r for r in rows if r["seq"] not in done]
            if not rows:
                return None, 0
            seqs = [r["seq"] for r in rows]
            keys = [r["read_key"] for r in rows if r["read_key"]]
            rec = record(rows)
            run_seq = head_seq + 1
            h = record_hash(head_hash, run_seq, rec.values())
            cur.execute(f"UPDATE {t}audit SET {_SET_NULL} WHERE seq = ANY(%s)", (seqs,))
            cur.executemany(f"INSERT INTO {t}audit_redacted VALUES (%s, %s)", [(s, run_seq) for s in seqs])
            if keys:
                cur.execute(f"DELETE FROM {t}forwarded WHERE read_key = ANY(%s)", (keys,))
            cur.execute(f"INSERT INTO {t}audit ({_COLUMNS}) VALUES ({','.join(['%s'] * 16)})",
                        (run_seq, *rec.values(), head_hash, h))
            cur.execute(f"UPDATE {t}audit_head SET seq = %s, hash = %s WHERE id = 1", (run_seq, h))
            _raise_expiry(cur.execute, t, "%s", cutoff)
        conn.commit()
        return run_seq, len(rows)


# -- CLI --------------------------------------------------------------------------------------------

def register(sub) -> None:
    p = sub.add_parser("retention", help="remove read data older than N days from the audit log (unless held); "
                                         "the run is itself audited")
    p.add_argument("target", help="audit SQLite file or postgresql:// DSN (as for `audit verify`)")
    p.add_argument("--max-age-days", type=float, required=True,
                   help="remove the read data (plate, read id, capture time) of records captured more than this many "
                        "days ago (by decision time for a message without a capture time); fractions allowed")
    p.add_argument("--holds", help="YAML file of reads kept whatever their age (litigation, open cases): "
                                   "'holds: [{plate: 7ABC123, reason: ...}, {read_id: ..., reason: ...}]'")
    p.add_argument("--now", help="ISO 8601 time to use as now (tests, replays)")
    p.add_argument("--dry-run", action="store_true", help="count only")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from edge.policy.audit import open_audit

    # Bad holds, --now or retention input (ValueErrors) exit 2 in one line from the CLI's handler
    holds = load_holds(args.holds)
    try:
        now = datetime.fromisoformat(args.now.replace("Z", "+00:00")) if args.now else None
    except ValueError as err:
        raise RetentionError(f"--now {args.now!r}: {err}") from None
    if now is not None and now.tzinfo is None:
        raise RetentionError("--now needs a UTC offset")
    if not args.target.startswith(("postgres",)) and not Path(args.target).exists():
        raise SystemExit(f"retention: no audit database {args.target}")
    store = open_audit(args.target, create=False)
    try:
        result = enforce_retention(store, args.max_age_days, holds, now=now, dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        what = "would remove" if args.dry_run else "removed"
        print(f"retention: {what} the read data of {result.redacted} record(s) captured before {result.cutoff}; "
              f"held {sum(result.held.values())} ({', '.join(f'{k}: {v}' for k, v in result.held.items()) or 'none'})"
              + (f"; audited as record {result.record_seq}" if result.records == 1 else
                 f"; audited as {result.records} retention records, the last {result.record_seq}" if result.records else ""))
    return 0
