"""Searching an agency's inbox, with the access log SB 34 requires (Civil Code 1798.90.52).

An agency that holds ALPR reads must record every access to them: the date and time, the data
accessed, the person who accessed it and the purpose. So a search here names a user and a purpose,
is checked against the sharing policy's purposes before a row is read (a purpose the policy
refuses, e.g. immigration enforcement under `ca-sb34`, or a search made on behalf of an agency the
policy would not share with, is refused), and is written to the inbox's `access_log` table whether
it was answered or refused, in the same transaction as the read of the results. Entries form a hash
chain like the gate's audit log (`edge.policy.audit.record_hash`) and the table refuses updates and
deletes, so `alpr-edge agency access-log INBOX --verify` shows an edited or removed entry.

    gate -> receiver -> inbox (reads) -> search (user, purpose) -> results + access_log entry
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.policy.audit import GENESIS, record_hash
from edge.policy.policy import Policy, qualifies
from edge.policy.registry import Registry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL, user TEXT NOT NULL, purpose TEXT NOT NULL, reference TEXT,
    on_behalf_of TEXT, query TEXT NOT NULL, outcome TEXT NOT NULL, results INTEGER NOT NULL,
    read_ids TEXT NOT NULL, detail TEXT, policy TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
-- The newest entry's seq and hash: removing entries from the end of the chain shows as a mismatch.
CREATE TABLE IF NOT EXISTS access_log_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
    BEGIN SELECT RAISE(ABORT, 'access log entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
    BEGIN SELECT RAISE(ABORT, 'access log entries are append-only'); END;
"""
_FIELDS = ("at", "user", "purpose", "reference", "on_behalf_of", "query", "outcome", "results", "read_ids", "detail",
           "policy")
_READ_FIELDS = ("read_id", "plate", "camera_id", "owner_agency", "captured_at", "received_at", "rule")
_PLATE = re.compile(r"[A-Z0-9*?]{1,12}")
_USER = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


class AccessError(ValueError):
    """A search that cannot be run as asked (bad plate pattern, no user, no inbox); nothing logged."""


@dataclass(frozen=True)
class Search:
    user: str
    purpose: str
    plate: str  # characters, '*' any run, '?' one character
    reference: str | None = None  # the case or incident number the search is for
    on_behalf_of: str | None = None
    since: datetime | None = None  # capture time, inclusive
    until: datetime | None = None

    def __post_init__(self) -> None:
        plate = re.sub(r"[\s-]", "", self.plate.upper())
        if not _PLATE.fullmatch(plate) or not re.search(r"[A-Z0-9]", plate):
            raise AccessError(f"--plate {self.plate!r}: letters and digits, with * (any run) or ? (one character), "
                              "at least one letter or digit")
        object.__setattr__(self, "plate", plate)
        for name in ("user", "purpose"):
            value = getattr(self, name)
            if not value or not _USER.fullmatch(value) or not value.strip():
                raise AccessError(f"--{name}: required, 1-100 printable characters (the access log names "
                                  f"who searched and why), got {value!r}")

    def query(self) -> dict:
        return {"plate": self.plate, "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None}


@dataclass(frozen=True)
class SearchResult:
    entry: int  # the access log entry written for this search
    allowed: bool
    reason: str  # why refused, or the policy rule that allowed the purpose
    reads: tuple[dict, ...]


def refusal(policy: Policy, search: Search, registry: Registry | None) -> str | None:
    """Why the policy refuses this search, or None. Fail closed: an agency named as the beneficiary
    that the registry does not know is refused."""
    if search.purpose in policy.purposes.refused:
        return f"purpose {search.purpose}: {policy.purposes.refused[search.purpose]}"
    if search.purpose not in policy.purposes.allowed:
        return (f"purpose {search.purpose!r} is not one the policy {policy.label} allows "
                f"({', '.join(policy.purposes.allowed)})")
    if search.on_behalf_of is not None:
        beneficiary = registry.agency(search.on_behalf_of) if registry is not None else None
        if beneficiary is None:
            return f"on behalf of {search.on_behalf_of!r}: not an agency in the registry"
        why = qualifies(policy, beneficiary)
        if why is not None:
            return f"on behalf of {beneficiary.id}: {why.reason} (the policy does not share reads with it)"
    return None


class AccessLog:
    """The inbox file's reads, searched only through `search`, and its access log."""

    def __init__(self, path: str | Path, create: bool = True):
        """create=False (reading the log): an inbox never searched is left as it is, its log empty."""
        self.path = Path(path)
        if not self.path.is_file():
            raise AccessError(f"{self.path}: no agency inbox (`alpr-edge agency receive` creates it)")
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            have = {n for (n,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "reads" not in have:
                self.db.close()
                raise AccessError(f"{self.path}: not an agency inbox (no reads table)")
            self.searched = "access_log" in have  # False: never searched, no log yet
            if create:
                self.db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise AccessError(f"{self.path}: cannot open the agency inbox: {err}") from None

    def search(self, search: Search, policy: Policy, registry: Registry | None = None) -> SearchResult:
        """Decide, read the matching reads (only when allowed) and log the access, in one transaction:
        no result leaves the inbox without its log entry."""
        try:
            why = refusal(policy, search, registry)
        except Exception as err:  # fail closed: a search the policy check cannot decide is refused, and logged
            why = f"the policy check failed: {type(err).__name__}: {err}"
        reads: list[dict] = []
        c = self.db
        c.execute("BEGIN IMMEDIATE")
        try:
            if why is None:
                sql = f"SELECT {', '.join(_READ_FIELDS)} FROM reads WHERE plate GLOB ?"
                params: list = [search.plate]
                rows = c.execute(sql + " ORDER BY captured_at, read_id", params).fetchall()
                for row in rows:
                    r = dict(zip(_READ_FIELDS, row))
                    t = datetime.fromisoformat(r["captured_at"].replace("Z", "+00:00"))
                    if (search.since and t < search.since) or (search.until and t >= search.until):
                        continue
                    reads.append(r)
            entry = self._append(c, search, policy.label, why, reads)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return SearchResult(entry, why is None, why or "allowed", tuple(reads))

    @staticmethod
    def _append(c: sqlite3.Connection, search: Search, label: str, why: str | None, reads: list[dict]) -> int:
        last = c.execute("SELECT seq, hash FROM access_log_head WHERE id = 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        values = (datetime.now(timezone.utc).isoformat(), search.user, search.purpose, search.reference,
                  search.on_behalf_of, json.dumps(search.query(), sort_keys=True), "refused" if why else "answered",
                  len(reads), json.dumps([r["read_id"] for r in reads]), why, label)
        h = record_hash(prev, seq, values)
        c.execute(f"INSERT INTO access_log (seq, {', '.join(_FIELDS)}, prev_hash, hash) "
                  f"VALUES ({','.join('?' * (len(_FIELDS) + 3))})", (seq, *values, prev, h))
        c.execute("INSERT OR REPLACE INTO access_log_head VALUES (1, ?, ?)", (seq, h))
        return seq

    def entries(self) -> list[dict]:
        if not self.searched and not self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'access_log'").fetchone():
            return []
        cols = ("seq", *_FIELDS, "prev_hash", "hash")
        return [dict(zip(cols, row)) for row in self.db.execute(f"SELECT {', '.join(cols)} FROM access_log ORDER BY seq")]

    def verify(self) -> list[str]:
        """Problems with the chain (an edited, removed or reordered entry); [] when intact."""
        problems = []
        prev, expect = GENESIS, 1
        for e in self.entries():
            if e["seq"] != expect:
                problems.append(f"entry {expect}: missing (the next is {e['seq']})")
            if e["prev_hash"] != prev or record_hash(prev, e["seq"], [e[f] for f in _FIELDS]) != e["hash"]:
                problems.append(f"entry {e['seq']}: edited (its hash does not match its content and the entry before)")
            prev, expect = e["hash"], e["seq"] + 1
        has_head = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'access_log_head'").fetchone()
        head = self.db.execute("SELECT seq, hash FROM access_log_head WHERE id = 1").fetchone() if has_head else None
        if (head or (0, GENESIS)) != (expect - 1, prev):
            problems.append(f"the chain ends at entry {expect - 1} but the head says {head[0] if head else 0} "
                            "(entries removed at the end, or the head edited)")
        return problems

    def close(self) -> None:
        self.db.close()
