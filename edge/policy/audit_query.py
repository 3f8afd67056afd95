"""Questions an auditor asks the audit log: who got which read, who was refused, and why.

`alpr-edge audit show` filters records (plate, camera, operating agency, recipient agency, decision,
rule, outcome, decision time); `alpr-edge audit summary` counts, per recipient agency, the reads
forwarded and refused and the rule behind each. Both read the log in one snapshot and never write
to it, so they can run beside a live gate.

A record's `decisions` is the gate's decision for every registered agency at the time:
[agency, "forward" | "refuse", rule, purpose, login]. "forward" means the policy allowed it and the
gate published it to that agency's topic (QoS 2); what the agency stored is in its own inbox.
Records emptied by `alpr-edge retention` keep their decisions but no plate, read id or capture time,
so a plate or read filter no longer finds them (that is what retention is for).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Iterator

from edge.policy.audit import _COLUMNS, AuditStore, PostgresAuditStore, SQLiteAuditStore

OUTCOMES = ("decided", "rejected", "retention")
DECISIONS = ("forward", "refuse")
_COLUMN_NAMES = tuple(c.strip() for c in _COLUMNS.split(","))
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AuditQueryError(ValueError):
    """A filter the query cannot use (bad time, unknown outcome); the message names the option."""


def parse_time(option: str, text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 with a UTC offset (`2026-11-28T09:00:00Z`), a date (`2026-11-28`: its start, UTC) or a
    time before now (`90m`, `24h`, `7d`)."""
    now = now or datetime.now(timezone.utc)
    t = text.strip()
    m = _RELATIVE.fullmatch(t)
    if m:
        return now - timedelta(seconds=float(m[1]) * _UNIT_S[m[2]])
    try:
        value = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AuditQueryError(f"{option} {text!r}: expected an ISO 8601 time with a UTC offset "
                              "(2026-11-28T09:00:00Z), a date (2026-11-28) or a span before now (90m, 24h, 7d)") from None
    if value.tzinfo is None:
        if len(t) == 10:  # a bare date: its start, in UTC like every time in the log
            return value.replace(tzinfo=timezone.utc)
        raise AuditQueryError(f"{option} {text!r}: needs a UTC offset (Z or +00:00): the log's times are UTC")
    return value


def normalize_plate(text: str) -> str:
    """'6enx 049', '6ENX-049' -> '6ENX049': plates are stored as their characters, upper case."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _record_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def decisions_of(record: dict) -> tuple[tuple, ...]:
    """The record's per-agency decisions; () when the field is not a JSON list (a damaged record
    shows up in `audit verify`, not as a crash here)."""
    return _parse_decisions(record.get("decisions") or "[]")


@lru_cache(maxsize=4096)
def _parse_decisions(text: str) -> tuple[tuple, ...]:
    # A gate writes the same few decision lists (one per camera owner) over and over: parsing each
    # once made `audit summary` of 200,000 records 4x faster.
    try:
        d = json.loads(text)
    except (TypeError, ValueError):
        return ()
    return tuple(tuple(row) for row in d if isinstance(row, list) and len(row) >= 3) if isinstance(d, list) else ()


@dataclass(frozen=True)
class RecordFilter:
    """Every given field must match (AND). `agency` with `decision`/`rule`: that agency's decision;
    without `agency`: any agency's."""
    plate: str | None = None
    camera: str | None = None
    owner: str | None = None  # the agency operating the camera
    agency: str | None = None  # a recipient the gate decided for
    decision: str | None = None  # forward | refuse
    rule: str | None = None
    outcome: str | None = None  # decided | rejected | retention
    since: datetime | None = None  # decision time (recorded_at), inclusive
    until: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise AuditQueryError(f"--outcome {self.outcome!r}: one of {', '.join(OUTCOMES)}")
        if self.decision is not None and self.decision not in DECISIONS:
            raise AuditQueryError(f"--decision {self.decision!r}: one of {', '.join(DECISIONS)}")
        if self.since and self.until and self.since >= self.until:
            raise AuditQueryError(f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}")
        if self.plate is not None:
            plate = normalize_plate(self.plate)
            if not plate:
                raise AuditQueryError(f"--plate {self.plate!r}: no letters or digits")
            object.__setattr__(self, "plate", plate)

    def matches(self, r: dict) -> bool:
        if self.outcome and r.get("outcome") != self.outcome:
            return False
        if self.plate and r.get("plate") != self.plate:
            return False
        if self.camera and r.get("camera_id") != self.camera:
            return False
        if self.owner and r.get("operating_agency") != self.owner:
            return False
        if self.since or self.until:
            t = _record_time(r.get("recorded_at"))
            if t is None or (self.since and t < self.since) or (self.until and t >= self.until):
                return False
        if self.agency or self.decision or self.rule:
            rows = decisions_of(r)
            if self.agency:
                rows = [row for row in rows if row[0] == self.agency]
            if self.decision:
                rows = [row for row in rows if row[1] == self.decision]
            if self.rule:
                rows = [row for row in rows if row[2] == self.rule]
            if not rows:
                return False
        return True


def _prefilter(where: RecordFilter, mark: str, contains) -> tuple[str, list]:
    """SQL narrowing `where` to a superset of its matches (`matches` decides exactly): equality on
    the plain columns, a substring test on the decisions JSON, and the time bounds widened by a
    day (the log's times are compared as text there, and a record written with another UTC offset
    must not be lost)."""
    clauses, params = [], []
    for column, value in (("plate", where.plate), ("camera_id", where.camera), ("operating_agency", where.owner),
                          ("outcome", where.outcome)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    for value in (where.agency, where.rule):
        if value is not None:
            clauses.append(contains)
            params.append(json.dumps(value))  # as it is written inside the decisions list, quotes included
    if where.since is not None:
        clauses.append(f"recorded_at >= {mark}")
        params.append((where.since.astimezone(timezone.utc) - timedelta(days=1)).isoformat())
    if where.until is not None:
        clauses.append(f"recorded_at < {mark}")
        params.append((where.until.astimezone(timezone.utc) + timedelta(days=1)).isoformat())
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def iter_records(store: AuditStore, where: RecordFilter | None = None, newest_first: bool = False) -> Iterator[dict]:
    """The records matching `where` (all when None), in log order or newest first, streamed from one
    read-only snapshot (a gate may keep appending): the database narrows them first, so asking
    for one plate in a log of millions does not move millions of rows through Python."""
    where = where or RecordFilter()
    order = " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
    if isinstance(store, SQLiteAuditStore):
        rows = _sqlite_rows(store.path, *_prefilter(where, "?", "instr(decisions, ?) > 0"), order)
    elif isinstance(store, PostgresAuditStore):
        rows = _postgres_rows(store, *_prefilter(where, "%s", "strpos(decisions, %s) > 0"), order)
    else:  # another store: its snapshot, filtered here
        rows = _snapshot_rows(store, newest_first)
    for row in rows:
        r = dict(zip(_COLUMN_NAMES, row))
        if where.matches(r):
            yield r


def _sqlite_rows(path: str, sql_where: str, params: list, order: str) -> Iterator[tuple]:
    # Its own connection (the store's is the gate's writer): in WAL mode one statement reads one
    # snapshot; query_only: this command cannot change the log whatever it runs.
    c = sqlite3.connect(path, timeout=30)
    try:
        c.execute("PRAGMA query_only = ON")
        yield from c.execute(f"SELECT {_COLUMNS} FROM audit{sql_where}{order}", params)
    finally:
        c.close()


def _postgres_rows(store: PostgresAuditStore, sql_where: str, params: list, order: str) -> Iterator[tuple]:
    with store._lock:  # noqa: SLF001 - the store's one connection
        conn = store.conn
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            with conn.cursor(name="alpr_audit_query") as cur:  # server-side: rows arrive in chunks
                cur.itersize = 2000
                cur.execute(f"SELECT {_COLUMNS} FROM {store.t}audit{sql_where}{order}", params)
                yield from cur
        finally:
            conn.rollback()


def _snapshot_rows(store: AuditStore, newest_first: bool) -> Iterator[tuple]:
    with store._snapshot() as (_head, _redacted, rows):  # noqa: SLF001
        yield from (reversed(list(rows)) if newest_first else rows)


def select(store: AuditStore, where: RecordFilter, first: int | None = None, last: int | None = None) -> list[dict]:
    """The matching records in log order: all, the first `first` or the last `last` of them."""
    if last:
        newest = []
        for r in iter_records(store, where, newest_first=True):
            newest.append(r)
            if len(newest) >= last:
                break
        return newest[::-1]
    out = []
    for r in iter_records(store, where):
        out.append(r)
        if first and len(out) >= first:
            break
    return out


def brief(r: dict) -> str:
    """One line for people: when, which read, who got it, who was refused and by which rule."""
    head = f"#{r['seq']} {r['recorded_at']} {r.get('gate_id') or '-'}"
    if r.get("outcome") == "retention":
        return f"{head} retention run ({r.get('policy')}): {(r.get('detail') or '')[:160]}"
    read = f"{r.get('camera_id') or '?'} {r.get('plate') or '(no plate)'} captured {r.get('captured_at') or '?'}"
    rows = decisions_of(r)
    if r.get("outcome") == "rejected":
        return f"{head} REJECTED {read} on {r.get('topic')!r}: {(r.get('detail') or '')[:160]}"
    to = ", ".join(row[0] for row in rows if row[1] == "forward") or "nobody"
    refused = ", ".join(f"{row[0]} ({row[2]})" for row in rows if row[1] != "forward") or "nobody"
    return f"{head} {read}: forwarded to {to}; refused {refused}"


def summarize(records: Iterable[dict]) -> dict:
    """Counts for `audit summary` (and the demo's table): per recipient agency the records whose
    read it was forwarded / refused and the rules that decided them; whole messages rejected by
    rule; retention runs; the time span."""
    by_decisions: Counter = Counter()  # each distinct decision list once, with how many records carry it
    rejected: Counter = Counter()
    n = decided = redacted = 0
    retention_runs: set = set()  # one run writes a record per chunk of 5,000, all with its recorded_at
    first = last = None
    for r in records:
        n += 1
        first = first or r.get("recorded_at")
        last = r.get("recorded_at") or last
        outcome = r.get("outcome")
        if outcome == "retention":
            retention_runs.add(r.get("recorded_at"))
            continue
        if outcome == "rejected":
            # detail is "<rule>: <why>", e.g. "refuse:malformed: invalid read event: ..."
            rejected[(r.get("detail") or "?").split(": ", 1)[0]] += 1
        else:
            decided += 1
            if r.get("plate") is None:
                redacted += 1
        by_decisions[r.get("decisions") or "[]"] += 1
    agencies: dict[str, dict] = {}
    for text, count in by_decisions.items():
        for agency, decision, rule, *_ in _parse_decisions(text):
            a = agencies.setdefault(agency, {"forwarded": 0, "refused": 0, "rules": Counter()})
            a["forwarded" if decision == "forward" else "refused"] += count
            a["rules"][rule] += count
    for a in agencies.values():
        a["rules"] = dict(a["rules"].most_common())
    return {
        "records": n, "reads_decided": decided, "messages_rejected": sum(rejected.values()),
        "records_redacted_by_retention": redacted, "retention_runs": len(retention_runs),
        "first_recorded_at": first, "last_recorded_at": last, "agencies": agencies,
        "rejected_by_rule": dict(rejected.most_common()),
    }
