"""Retention: remove the read data of audit records older than N days, unless held for a listed reason.

`alpr-edge retention AUDIT --max-age-days 60 [--holds holds.yaml] [--dry-run] [--json]`

A read's data in the audit log (plate, read id, capture time, dedup key, free-text detail) is removed
once the read is older than the limit (by capture time; by decision time for messages that had
none). What stays of each record is the access-log skeleton SB 34 asks for: when the gate decided,
which camera and operating agency, and for every agency what was decided, by which rule, for which
purpose and login.

The hash chain stays verifiable. Each run appends one `retention` record to the chain that lists
the records it redacted (as sequence ranges), the cut-off, the holds it honoured (counts per
reason) and a digest of what it left of those records. `alpr-edge audit verify` then checks each
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
    record_seq: int | None  # the retention record appended (None: dry run or nothing to do)

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


def kept_digest(rows: list[list]) -> str:
    """sha256 over [seq, kept fields...] of every redacted record, in sequence order."""
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r[0]):
        h.update(_CANONICAL.encode([row[0], *[row[1 + i] for i in _KEPT_IDX]]).encode())
        h.update(b"\n")
    return h.hexdigest()


def redaction_problems(redacted: dict[int, int], kept: dict[int, list[list]], runs: dict[int, str]) -> list[str]:
    """Called by AuditStore.verify: each redacted record must be listed by an intact retention record,
    and what is left of the records a run redacted must still hash to the digest it recorded."""
    problems: list[str] = []
    listed: dict[int, int] = {}
    digests: dict[int, str] = {}
    for run_seq, detail in runs.items():
        try:
            d = json.loads(detail)
            for a, b in d["redacted"]:
                for s in range(int(a), int(b) + 1):
                    listed[s] = run_seq
            digests[run_seq] = d["kept_digest"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"record {run_seq}: retention record is unreadable")
    for seq, run_seq in sorted(redacted.items()):
        if listed.get(seq) != run_seq:
            problems.append(f"record {seq}: content removed without a retention record listing it (edited)")
    for run_seq, rows in kept.items():
        if run_seq in digests and kept_digest(rows) != digests[run_seq]:
            problems.append(f"retention record {run_seq}: what is left of the records it redacted was edited")
    for seq, run_seq in listed.items():
        if seq not in redacted:
            problems.append(f"record {seq}: listed by retention record {run_seq} but not marked redacted")
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


def _select(rows: list[dict], redacted: set[int], cutoff: datetime, holds: Holds) -> tuple[list[int], dict[str, int], int]:
    by_plate = {h.plate: h.reason for h in holds.holds if h.plate}
    by_id = {h.read_id: h.reason for h in holds.holds if h.read_id}
    chosen: list[int] = []
    held: dict[str, int] = {}
    already = 0
    for r in rows:
        if r["outcome"] == RETENTION_OUTCOME:
            continue
        if r["seq"] in redacted:
            already += 1
            continue
        t = _age_reference(r)
        if t is None or t >= cutoff:
            continue
        reason = by_id.get(r["read_id"]) or by_plate.get(r["plate"])
        if reason:
            held[reason] = held.get(reason, 0) + 1
            continue
        chosen.append(r["seq"])
    return chosen, held, already


def _retention_record(now: datetime, cutoff: datetime, max_age_days: float, seqs: list[int], kept_rows: list[list],
                      held: dict[str, int], label: str) -> AuditRecord:
    detail = json.dumps({"max_age_days": max_age_days, "cutoff": cutoff.isoformat(), "redacted": ranges(seqs),
                         "count": len(seqs), "fields_removed": list(REMOVED_FIELDS), "held": held,
                         "kept_digest": kept_digest(kept_rows)}, separators=(",", ":"), sort_keys=True)
    return AuditRecord(recorded_at=now.isoformat(), gate_id=label, read_key=None, read_id=None, camera_id=None,
                       operating_agency=None, plate=None, captured_at=None, topic="-", policy=f"retention:{max_age_days:g}d",
                       outcome=RETENTION_OUTCOME, decisions="[]", detail=detail)


def _redacted_row(row: dict) -> list:
    return [row["seq"], *[None if f in REMOVED_FIELDS else row[f] for f in _FIELDS]]


def enforce_retention(store: AuditStore, max_age_days: float, holds: Holds | None = None, now: datetime | None = None,
                      dry_run: bool = False, label: str = "retention") -> RetentionResult:
    if not (0 < max_age_days < math.inf):  # NaN fails both
        raise RetentionError(f"max_age_days must be positive and finite, got {max_age_days:g}")
    holds = holds or Holds()
    now = now or datetime.now(timezone.utc)
    try:
        cutoff = now - timedelta(days=max_age_days)
    except OverflowError:  # more days than a timedelta holds, or a cut-off before year 1
        raise RetentionError(f"max_age_days {max_age_days:g} before {now.isoformat()}: the cut-off would be "
                             "before year 1") from None
    if isinstance(store, SQLiteAuditStore):
        return _enforce_sqlite(store, max_age_days, holds, now, cutoff, dry_run, label)
    if isinstance(store, PostgresAuditStore):
        return _enforce_postgres(store, max_age_days, holds, now, cutoff, dry_run, label)
    raise RetentionError(f"no retention for {type(store).__name__}")


_SET_NULL = ", ".join(f"{f} = NULL" for f in REMOVED_FIELDS)


def _enforce_sqlite(store: SQLiteAuditStore, max_age_days, holds, now, cutoff, dry_run, label) -> RetentionResult:
    with store._lock:  # noqa: SLF001 - one writer with the gate on this connection
        c = store.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("CREATE TABLE IF NOT EXISTS audit_redacted (seq INTEGER PRIMARY KEY, run_seq INTEGER NOT NULL)")
            cur = c.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            redacted = {s for (s,) in c.execute("SELECT seq FROM audit_redacted")}
            seqs, held, already = _select(rows, redacted, cutoff, holds)
            if dry_run or not seqs:
                c.execute("ROLLBACK")
                return RetentionResult(cutoff.isoformat(), len(seqs), held, already, None)
            chosen = set(seqs)
            keys = [r["read_key"] for r in rows if r["seq"] in chosen and r["read_key"]]
            kept_rows = [_redacted_row(r) for r in rows if r["seq"] in chosen]
            head_seq, head_hash = c.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            rec = _retention_record(now, cutoff, max_age_days, seqs, kept_rows, held, label)
            run_seq = head_seq + 1
            h = record_hash(head_hash, run_seq, rec.values())
            # The append-only trigger is lifted only inside this transaction, which also writes
            # the retention record that accounts for every change.
            c.execute("DROP TRIGGER IF EXISTS audit_no_update")
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                c.execute(f"UPDATE audit SET {_SET_NULL} WHERE seq IN ({','.join('?' * len(chunk))})", chunk)
            c.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
                      "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END")
            c.executemany("INSERT INTO audit_redacted VALUES (?, ?)", [(s, run_seq) for s in seqs])
            c.executemany("DELETE FROM forwarded WHERE read_key = ?", [(k,) for k in keys])
            c.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES ({','.join('?' * 16)})",
                      (run_seq, *rec.values(), head_hash, h))
            c.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (run_seq, h))
            _raise_expiry(c.execute, "", "?", cutoff)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
    return RetentionResult(cutoff.isoformat(), len(seqs), held, already, run_seq)


def _enforce_postgres(store: PostgresAuditStore, max_age_days, holds, now, cutoff, dry_run, label) -> RetentionResult:
    t = store.t
    with store._lock:  # noqa: SLF001
        conn = store.conn
        with conn.transaction():
            cur = conn.cursor()
            head_seq, head_hash = cur.execute(f"SELECT seq, hash FROM {t}audit_head WHERE id = 1 FOR UPDATE").fetchone()
            cur.execute(f"CREATE TABLE IF NOT EXISTS {t}audit_redacted (seq BIGINT PRIMARY KEY, run_seq BIGINT NOT NULL)")
            cur.execute(f"SELECT {_COLUMNS} FROM {t}audit ORDER BY seq")
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            redacted = {s for (s,) in cur.execute(f"SELECT seq FROM {t}audit_redacted").fetchall()}
            seqs, held, already = _select(rows, redacted, cutoff, holds)
            if dry_run or not seqs:
                result = RetentionResult(cutoff.isoformat(), len(seqs), held, already, None)
            else:
                chosen = set(seqs)
                keys = [r["read_key"] for r in rows if r["seq"] in chosen and r["read_key"]]
                kept_rows = [_redacted_row(r) for r in rows if r["seq"] in chosen]
                rec = _retention_record(now, cutoff, max_age_days, seqs, kept_rows, held, label)
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
                result = RetentionResult(cutoff.isoformat(), len(seqs), held, already, run_seq)
        conn.commit()
    return result


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
              + (f"; audited as record {result.record_seq}" if result.record_seq else ""))
    return 0
