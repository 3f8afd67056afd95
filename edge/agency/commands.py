"""CLI: `agency receive`: an agency's receiver (persistent session, QoS 1 acknowledged after the inbox
commit, each read stored once); `agency search` and `agency access-log`: searching the inbox as a
named user for a declared purpose, every search logged (edge/agency/access.py)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time


def register(sub) -> None:
    p = sub.add_parser("agency", help="the agency side: receive the reads the gate shares with one agency")
    asub = p.add_subparsers(dest="agency_cmd", metavar="ACTION")
    r = asub.add_parser("receive", help="subscribe as AGENCY and store each shared read once (SQLite inbox)")
    r.add_argument("agency", help="the agency id, as in the registry")
    r.add_argument("--registry", required=True, help="registry YAML ('demo': the demo's registry)")
    r.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL (default %(default)s)")
    r.add_argument("--secrets", help="directory of `file:` credentials (default: secrets/ next to the registry)")
    r.add_argument("--inbox", default=None, help="SQLite file (default: AGENCY-inbox.db)")
    r.add_argument("--mqtt311", action="store_true")
    r.add_argument("--run-for", type=float, help="stop after this many seconds (default: until SIGTERM/SIGINT)")
    r.add_argument("--print", action="store_true", dest="print_reads",
                   help="print each stored read as a JSON line (read_id, plate, camera_id, owner_agency, captured_at, "
                        "received_at, policy, rule)")
    r.add_argument("--json", action="store_true", help="print the final counters as one JSON line")
    r.set_defaults(func=_receive)

    s = asub.add_parser("search", help="search the inbox for a plate as a named user for a declared purpose; every "
                                       "search, answered or refused, goes to the inbox's access log (SB 34 1798.90.52)")
    s.add_argument("inbox", help="the agency's inbox (SQLite, written by `agency receive`)")
    s.add_argument("--plate", required=True, help="the plate; * matches any run of characters, ? one (7ABC*)")
    s.add_argument("--user", required=True, help="who searches (logged)")
    s.add_argument("--purpose", required=True,
                   help="why (logged); must be a purpose the policy allows, e.g. stolen-vehicle-recovery")
    s.add_argument("--reference", help="case or incident number (logged)")
    s.add_argument("--on-behalf-of", metavar="AGENCY",
                   help="the search is made for another agency (needs --registry): refused when the policy would "
                        "not share reads with it")
    s.add_argument("--registry", help="registry YAML ('demo': the demo's), for --on-behalf-of")
    s.add_argument("--policy", default="ca-sb34", help="policy file or shipped name (default %(default)s)")
    s.add_argument("--since", help="captured at or after: ISO time with offset, a date, or 90m/24h/7d ago")
    s.add_argument("--until", help="captured before (same forms)")
    s.add_argument("--json", action="store_true", help="print the result as one JSON object (last line)")
    s.set_defaults(func=_search)

    a = asub.add_parser("access-log", help="show the inbox's access log and check its hash chain (exit 1 if broken)")
    a.add_argument("inbox", help="the agency's inbox (SQLite)")
    a.add_argument("--json", action="store_true", help="entries as JSON lines, then the check as one JSON object")
    a.set_defaults(func=_access_log)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def _search(args) -> int:
    from edge.agency.access import AccessLog, Search
    from edge.policy.audit_query import parse_time
    from edge.policy.commands import _load_registry
    from edge.policy.policy import load_policy

    # bad input (AccessError, AuditQueryError, PolicyError: ValueErrors) exits 2 in one line, nothing logged
    if args.on_behalf_of and not args.registry:
        raise SystemExit("agency search: --on-behalf-of needs --registry (to know what kind of agency it names)")
    policy = load_policy(args.policy)
    registry = _load_registry(args.registry) if args.registry else None
    search = Search(user=args.user, purpose=args.purpose, plate=args.plate, reference=args.reference,
                    on_behalf_of=args.on_behalf_of,
                    since=parse_time("--since", args.since) if args.since else None,
                    until=parse_time("--until", args.until) if args.until else None)
    log = AccessLog(args.inbox)
    try:
        result = log.search(search, policy, registry)
    finally:
        log.close()
    if result.allowed:
        for r in result.reads:
            print(f"{r['captured_at']}  {r['plate']:<9} {r['camera_id']} ({r['owner_agency']})  read {r['read_id']}")
        print(f"agency search: {len(result.reads)} read(s) for {search.plate}; access logged as entry {result.entry}",
              file=sys.stderr)
    else:
        print(f"agency search: refused: {result.reason}; the refusal is logged as entry {result.entry}", file=sys.stderr)
    if args.json:
        print(json.dumps({"entry": result.entry, "allowed": result.allowed, "reason": result.reason,
                          "reads": list(result.reads)}))
    return 0 if result.allowed else 1


def _access_log(args) -> int:
    from edge.agency.access import AccessLog

    log = AccessLog(args.inbox, create=False)
    try:
        entries, problems = log.entries(), log.verify()
    finally:
        log.close()
    for e in entries:
        if args.json:
            print(json.dumps(e))
        else:
            who = f"{e['user']} for {e['purpose']}" + (f" (ref {e['reference']})" if e["reference"] else "") + (
                f" on behalf of {e['on_behalf_of']}" if e["on_behalf_of"] else "")
            what = json.loads(e["query"])["plate"]
            told = f"{e['results']} read(s)" if e["outcome"] == "answered" else f"REFUSED: {e['detail']}"
            print(f"#{e['seq']} {e['at']} {who}: plate {what}: {told}")
    ok = not problems
    if args.json:
        print(json.dumps({"ok": ok, "entries": len(entries), "problems": problems}))
    else:
        print(f"access log: {len(entries)} entries, chain {'intact' if ok else 'BROKEN'}", file=sys.stderr)
        for p in problems[:20]:
            print(f"  {p}", file=sys.stderr)
    return 0 if ok else 1


def _receive(args) -> int:
    from edge.agency.receiver import AgencyInbox, AgencyReceiver
    from edge.policy.commands import _load_registry, _secrets
    from edge.policy.registry import RegistryError
    from edge.transport import mqtt as transport

    import math

    # bad input (ValueErrors, an unopenable inbox) exits 2 in one line from the CLI's handler
    if args.run_for is not None and not (0 < args.run_for < math.inf):
        # before: 0 and nan ran until killed, a negative value stopped at once
        raise SystemExit(f"agency receive: --run-for {args.run_for:g}: must be more than 0 seconds (leave it out "
                         "to run until SIGTERM/SIGINT)")
    registry = _load_registry(args.registry)
    agency = registry.agency(args.agency)
    if agency is None:
        known = ", ".join(a.id for a in registry.agencies)
        raise RegistryError(f"agency {args.agency!r} is not in the registry (known: {known})")
    broker = transport.parse_broker_url(args.broker)
    if broker.username is None:
        broker = broker.with_login(agency.username, _secrets(args).password(agency))
    inbox = AgencyInbox(args.inbox or f"{agency.id}-inbox.db")
    receiver = AgencyReceiver(agency.id, broker, inbox,
                              protocol=transport.MQTT_V311 if args.mqtt311 else transport.MQTT_V5)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        receiver.start()
    except transport.MQTTError:  # unreachable broker: exit 1 from the CLI's handler
        inbox.close()
        raise
    print(f"agency {agency.id}: receiving {receiver.topic} from {broker.redacted()} into {inbox.path}",
          file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.run_for if args.run_for else None
    printer = _Printer(inbox.path) if args.print_reads else None
    try:
        while not stop.is_set() and receiver.error is None:
            stop.wait(0.2)
            if printer is not None:
                printer.print_new()
            if deadline and time.monotonic() > deadline:
                break
        receiver.stop()
        if printer is not None:  # what the receiver stored while it stopped
            printer.print_new()
    finally:
        if printer is not None:
            printer.close()
        inbox.close()
    if args.json:
        print(json.dumps({"agency": agency.id, **receiver.snapshot()}))
    if receiver.error is not None:
        print(f"alpr-edge agency receive: error: receiver stopped: {receiver.error}", file=sys.stderr)
        return 1
    return 0


class _Printer:
    """--print: each read stored since the last call, in storing order, as one JSON line. Its own
    read-only connection to the inbox (WAL: it never holds up the receiver's commits); only the new
    rows are read each time, not every id in the inbox."""

    FIELDS = ("read_id", "plate", "camera_id", "owner_agency", "captured_at", "received_at", "policy", "rule")

    def __init__(self, path):
        import sqlite3
        from pathlib import Path

        self.db = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        self.last = 0  # rowid of the last printed read

    def print_new(self) -> None:
        rows = self.db.execute(f"SELECT rowid, {', '.join(self.FIELDS)} FROM reads WHERE rowid > ? ORDER BY rowid",
                               (self.last,)).fetchall()
        for rowid, *values in rows:
            print(json.dumps(dict(zip(self.FIELDS, values))), flush=True)
            self.last = rowid

    def close(self) -> None:
        self.db.close()
