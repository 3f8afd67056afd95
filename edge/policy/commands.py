"""CLI: `broker-config`, `gate`, `audit verify|show|summary`, `verify-acl`, `policy check`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("broker-config", help="write Mosquitto config (listeners, logins, ACL) from a registry")
    p.add_argument("registry", help="registry YAML (agencies, cameras, gate); 'demo': the demo's registry")
    p.add_argument("--out", default="broker_config/generated", help="output directory (default %(default)s)")
    p.add_argument("--secrets", help="directory of `file:` credentials (default OUT/secrets; missing ones are created)")
    p.add_argument("--port", type=int, default=1883, help="plain listener port (default %(default)s)")
    p.add_argument("--bind", default="127.0.0.1", help="plain listener address (default %(default)s: loopback only)")
    p.add_argument("--tls-port", type=int, help="add a TLS listener on this port (needs --tls-cert and --tls-key)")
    p.add_argument("--tls-cert", help="the broker's certificate (PEM; `tls-certs` writes server.crt)")
    p.add_argument("--tls-key", help="its private key (PEM; `tls-certs` writes server.key)")
    p.add_argument("--tls-ca", help="CA file (optional; `tls-certs` writes ca.crt)")
    p.add_argument("--run-as", help="user mosquitto switches to when started as root (must own the logins file)")
    p.add_argument("--auth", choices=("dynsec", "acl-file"), default="dynsec",
                   help="dynsec (default): logins and rules in Mosquitto's dynamic-security plugin, which binds each "
                        "camera/agency login to its client id (edge-CAMERA, agency-AGENCY: no login can take over the "
                        "gate's session) and checks subscriptions (no joining the gates' $share group). acl-file: "
                        "passwd + acl, for a Mosquitto without the plugin (both gaps open)")
    p.add_argument("--policy", default="ca-sb34",
                   help="the gate's policy (name or YAML file; default %(default)s): an agency it refuses for every "
                        "camera owner gets no broker rights at all, not even on its own share topic. Give the gate's "
                        "--policy; 'none': every agency may read its own share topic (the gate alone refuses)")
    p.add_argument("--dynsec-plugin", metavar="PATH",
                   help="mosquitto_dynamic_security.so (default: found in the usual library directories)")
    p.set_defaults(func=_broker_config)

    p = sub.add_parser("gate", help="run the policy gate: raw reads in, allowed agencies out, every decision audited")
    _common(p)
    p.add_argument("--audit", default="audit.db", help="SQLite file or postgresql:// DSN (default %(default)s)")
    p.add_argument("--gate-id", default="gate-1", help="this gate's id (audit records, client id)")
    p.add_argument("--shared-group", default="",
                   help="several gates: MQTT 5 shared subscription group ($share/GROUP/alpr/raw/#). Default: a plain "
                        "subscription, which Mosquitto 2.0 restores after a restart (it does not restore shared ones: "
                        "reads published before the gates resubscribe are dropped)")
    p.add_argument("--mqtt311", action="store_true",
                   help="MQTT 3.1.1 (Mosquitto still honours $share/ with --shared-group)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="most raw reads decided and audited in one transaction (default %(default)s)")
    p.add_argument("--batch-ms", type=float, default=10.0, help="longest wait to fill a batch (default %(default)s)")
    p.add_argument("--forward-qos", type=int, choices=(1, 2), default=2,
                   help="QoS of the forwards to agencies (default %(default)s: exactly once per hop, so a broker "
                        "restart does not deliver a read twice; 1 saves a round trip)")
    p.add_argument("--run-for", type=float, help="stop after this many seconds (default: until SIGTERM/SIGINT)")
    p.add_argument("--stats-every", type=float, default=0.0, help="log counters every N seconds")
    p.add_argument("--json", action="store_true", help="print the final counters as one JSON line")
    p.set_defaults(func=_gate)

    p = sub.add_parser("audit", help="audit log: verify the hash chain, show records")
    asub = p.add_subparsers(dest="audit_cmd", metavar="ACTION")
    v = asub.add_parser("verify", help="recompute the hash chain; exit 1 on any edited, removed or reordered record")
    v.add_argument("target", nargs="?", default="audit.db", help="SQLite file or postgresql:// DSN")
    v.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                   help="a head noted earlier (record number and hash, or its first 16+ hex digits; repeatable): "
                        "that record must still be in the chain with that hash, which a chain rewritten from an "
                        "edited record onwards cannot keep")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_audit_verify)
    s = asub.add_parser("show", help="print audit records (JSON lines, or --brief lines), filtered: who got which "
                                     "read, who was refused, why")
    s.add_argument("target", nargs="?", default="audit.db", help="SQLite file or postgresql:// DSN (default %(default)s)")
    s.add_argument("--limit", type=int, default=20, help="matching records to print, from the first (default 20; 0: all)")
    s.add_argument("--last", type=int, metavar="N", help="the last N matching records instead (the newest decisions)")
    s.add_argument("--brief", action="store_true",
                   help="one line per record: the read, who it was forwarded to, who was refused by which rule")
    _audit_filters(s)
    s.set_defaults(func=_audit_show)
    m = asub.add_parser("summary", help="per recipient agency: reads forwarded and refused, and the rules that decided "
                                        "them; whole messages rejected, by rule")
    m.add_argument("target", nargs="?", default="audit.db", help="SQLite file or postgresql:// DSN (default %(default)s)")
    _audit_filters(m)
    m.add_argument("--json", action="store_true", help="also print the counts as one JSON object (last line)")
    m.add_argument("--html", metavar="OUT.html",
                   help="also write a self-contained HTML report (decisions per agency, timeline of the last "
                        f"{AUDIT_REPORT_TIMELINE:,} reads, chain check), as the demo's")
    m.add_argument("--registry", help="registry YAML ('demo': the demo's) for agency names, kinds and states in --html")
    m.set_defaults(func=_audit_summary)

    p = sub.add_parser("verify-acl", help="log in as each agency and camera, try what the ACL must refuse, report")
    _common(p, policy=False)
    p.add_argument("--policy", default="ca-sb34",
                   help="the policy broker-config was given (default %(default)s): agencies it refuses for every "
                        "camera owner must get nothing, not even on their own share topic; 'none' as for broker-config")
    p.add_argument("--mqtt311", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_verify_acl)

    p = sub.add_parser("policy", help="show the decision table a registry and policy compile to")
    p.add_argument("registry", help="registry YAML ('demo': the demo's registry)")
    p.add_argument("--policy", default="ca-sb34", help="policy file or shipped policy name (default %(default)s)")
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.set_defaults(func=_policy_table)


def _common(p: argparse.ArgumentParser, policy: bool = True) -> None:
    p.add_argument("--registry", required=True, help="registry YAML ('demo': the demo's registry)")
    if policy:
        p.add_argument("--policy", default="ca-sb34", help="policy file or shipped policy name (default %(default)s)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL (default %(default)s)")
    p.add_argument("--secrets", help="directory of `file:` credentials (default: secrets/ next to the registry)")


def _policy_or_none(name: str):
    """--policy for broker-config and verify-acl: a policy name or file, or 'none' (rules from the
    registry alone: every agency may read its own share topic)."""
    from edge.policy.policy import load_policy

    return None if name == "none" else load_policy(name)


def _load_registry(path: str):
    """A registry file; "demo" names the packaged demo registry (edge/demo/registry.yaml)."""
    from edge.policy.registry import load_registry

    if path == "demo" and not Path(path).exists():
        from edge.demo.run import demo_registry

        return demo_registry()
    return load_registry(path)


def _secrets(args):
    from edge.policy.registry import Secrets

    return Secrets(args.secrets or Path(args.registry).parent / "secrets")


def _broker_config(args) -> int:
    from edge.policy.brokerconf import TlsListener, write_broker_config

    # Bad input (a RegistryError is a ValueError) is reported by the CLI's one handler: exit 2
    registry = _load_registry(args.registry)
    for flag, port in (("--port", args.port), ("--tls-port", args.tls_port)):
        if port is not None and not 1 <= port <= 65535:  # before: written as given, and --tls-port 0 meant no TLS
            raise SystemExit(f"broker-config: {flag} {port}: must be 1 to 65535")
    tls = None
    if args.tls_port is not None:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("broker-config: --tls-port needs --tls-cert and --tls-key")
        # Mosquitto is started from OUT (the written paths are relative to it): a path relative to
        # where broker-config ran (--tls-cert tls/server.crt) was not found there. Written absolute;
        # one not on this machine is said (the configuration may be for another machine).
        files = {}
        for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key), ("--tls-ca", args.tls_ca)):
            if path is None:
                continue
            files[flag] = os.path.abspath(path)
            if not os.path.isfile(files[flag]):
                print(f"alpr-edge broker-config: warning: {flag} {files[flag]}: no such file on this machine "
                      "(Mosquitto will not start without it)", file=sys.stderr)
        tls = TlsListener(args.tls_port, files["--tls-cert"], files["--tls-key"], files.get("--tls-ca"))
    out = Path(args.out)
    files = write_broker_config(registry, out, secrets_dir=args.secrets or out / "secrets", port=args.port,
                                bind=args.bind, tls=tls, run_as=args.run_as, auth=args.auth,
                                dynsec_plugin=args.dynsec_plugin,
                                policy=_policy_or_none(args.policy))
    for f in files:
        print(f)
    print(f"start it with: cd {out} && mosquitto -c mosquitto.conf", file=sys.stderr)
    return 0


def _gate(args) -> int:
    from edge.policy.audit import open_audit
    from edge.policy.gate import Gate, GateConfig
    from edge.policy.policy import load_policy
    from edge.transport import mqtt as transport

    # A bad registry, policy or broker URL (ValueErrors) exits 2 and an unreachable broker
    # (MQTTError) exits 1, both in one line from the CLI's one handler
    import math

    if args.run_for is not None and not (0 < args.run_for < math.inf):
        # before: 0 and nan ran until killed, a negative value stopped at once
        raise SystemExit(f"gate: --run-for {args.run_for:g}: must be more than 0 seconds (leave it out to run until "
                         "SIGTERM/SIGINT)")
    registry = _load_registry(args.registry)
    policy = load_policy(args.policy)
    broker = transport.parse_broker_url(args.broker)
    if broker.username is None:
        broker = broker.with_login(registry.gate.username, _secrets(args).password(registry.gate))
    config = GateConfig(
        gate_id=args.gate_id, protocol=transport.MQTT_V311 if args.mqtt311 else transport.MQTT_V5,
        shared_group=args.shared_group or None,
        batch_size=args.batch_size, batch_wait_s=args.batch_ms / 1000, forward_qos=args.forward_qos,
    )
    audit = open_audit(args.audit)
    gate = Gate(registry, policy, broker, audit, config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        gate.start()
    except transport.MQTTError:
        audit.close()
        raise
    print(f"gate {args.gate_id}: policy {policy.label}, broker {broker.redacted()}, audit {args.audit}", file=sys.stderr)
    deadline = time.monotonic() + args.run_for if args.run_for else None
    last = time.monotonic()
    while not stop.is_set() and gate.error is None:
        stop.wait(0.2)
        if deadline and time.monotonic() > deadline:
            break
        if args.stats_every and time.monotonic() - last >= args.stats_every:
            last = time.monotonic()
            print(json.dumps(gate.snapshot()), file=sys.stderr, flush=True)
    gate.stop()
    audit.close()
    if args.json:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"gate_id": args.gate_id, **gate.snapshot(),
                          "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}))
    if gate.error is not None:
        print(f"alpr-edge gate: error: gate stopped: {gate.error}", file=sys.stderr)
        return 1
    return 0


def _audit_verify(args) -> int:
    from edge.policy.audit import open_audit

    import re

    anchors: dict[int, str] = {}
    for a in args.anchor:
        m = re.fullmatch(r"([1-9][0-9]*):([0-9a-fA-F]{16,64})", a.strip())
        if not m:
            raise SystemExit(f"audit verify: --anchor {a!r}: expected SEQ:HASH (a record number, ':', 16 to 64 hex digits)")
        anchors[int(m[1])] = m[2].lower()
    if not args.target.startswith(("postgres", "host=")) and not Path(args.target).exists():
        raise SystemExit(f"audit verify: no audit database {args.target}")
    store = open_audit(args.target, create=False)
    result = store.verify(anchors)
    store.close()
    if args.json:
        print(json.dumps({"ok": result.ok, "records": result.records, "head": result.head, "problems": result.problems}))
    else:
        print(result.summary())  # its first 5 problems; before, problems 2-5 were printed twice
        for p in result.problems[5:20]:
            print(f"  {p}")
        if len(result.problems) > 20:
            print(f"  ... and {len(result.problems) - 20} more (--json lists them all)")
    return 0 if result.ok else 1


def _audit_filters(p) -> None:
    from edge.policy.audit_query import DECISIONS, OUTCOMES

    g = p.add_argument_group("filters (all given must match)")
    g.add_argument("--plate", help="this plate (case, spaces and dashes ignored)")
    g.add_argument("--camera", help="reads of this camera id")
    g.add_argument("--owner", help="reads of cameras this agency operates")
    g.add_argument("--agency", help="records deciding for this recipient agency (with --decision/--rule: its decision)")
    g.add_argument("--decision", choices=DECISIONS, help="forwarded to / refused for (--agency, or any agency)")
    g.add_argument("--rule", help="decided by this policy rule, e.g. refuse:recipient-kind (`alpr-edge policy` lists them)")
    g.add_argument("--outcome", choices=OUTCOMES,
                   help="decided (the policy applied per agency), rejected (the whole message refused), retention (runs)")
    g.add_argument("--since", help="decided at or after: ISO time with offset (2026-11-28T09:00Z), a date, or 90m/24h/7d ago")
    g.add_argument("--until", help="decided before (same forms as --since)")


def _audit_query(args, verb: str):
    """The filter the options name, and the store opened read-only (exit 2 with one line on bad input)."""
    from edge.policy.audit import open_audit
    from edge.policy.audit_query import AuditQueryError, RecordFilter, parse_time

    try:
        where = RecordFilter(
            plate=args.plate, camera=args.camera, owner=args.owner, agency=args.agency, decision=args.decision,
            rule=args.rule, outcome=args.outcome,
            since=parse_time("--since", args.since) if args.since else None,
            until=parse_time("--until", args.until) if args.until else None)
    except AuditQueryError as err:
        raise SystemExit(f"audit {verb}: {err}") from None
    if not args.target.startswith(("postgresql://", "postgres://")) and not Path(args.target).exists():
        raise SystemExit(f"audit {verb}: no audit database {args.target}")  # as audit verify and retention: exit 2
    return where, open_audit(args.target, create=False)


def _audit_show(args) -> int:
    from edge.policy.audit_query import brief, select

    if args.limit < 0:  # SQLite read LIMIT -1 as no limit, PostgreSQL refused it with a traceback
        raise SystemExit(f"audit show: --limit must be 0 (all) or more, got {args.limit}")
    if args.last is not None and args.last < 1:
        raise SystemExit(f"audit show: --last must be 1 or more, got {args.last}")
    where, store = _audit_query(args, "show")
    try:
        shown = select(store, where, first=None if args.last else args.limit or None, last=args.last)
    finally:
        store.close()
    for r in shown:
        print(brief(r) if args.brief else json.dumps(r))
    if not shown:
        print("audit show: no record matches", file=sys.stderr)
    return 0


AUDIT_REPORT_TIMELINE = 2000  # reads drawn in --html's timeline: one SVG dot each


def _audit_summary(args) -> int:
    from collections import deque

    from edge.bench.report import print_json_last, print_table
    from edge.policy.audit_query import iter_records, summarize

    registry = _load_registry(args.registry) if args.registry else None  # bad registry: exit 2 before reading
    where, store = _audit_query(args, "summary")
    recent: deque = deque(maxlen=AUDIT_REPORT_TIMELINE)  # for --html: the newest decided reads
    policies: set[str] = set()

    def remember(records):
        for r in records:
            if r.get("outcome") == "decided":
                recent.append(r)
                policies.add(r.get("policy") or "?")
            yield r

    try:
        s = summarize(remember(iter_records(store, where)))
        verified = store.verify() if args.html else None
    finally:
        store.close()
    if args.html:
        _audit_html(args.html, args.target, s, list(recent), sorted(policies), verified, registry)
    rows = [[a, c["forwarded"], c["refused"], ", ".join(f"{rule} x{n}" for rule, n in c["rules"].items())]
            for a, c in sorted(s["agencies"].items(), key=lambda kv: (-kv[1]["forwarded"], kv[0]))]
    span = f"{s['first_recorded_at']} .. {s['last_recorded_at']}" if s["records"] else "no record matches"
    print_table(f"audit {args.target}: {s['records']} records ({span})",
                ["agency", "forwarded", "refused", "decided by (rule x records)"], rows)
    print(f"reads decided: {s['reads_decided']} ({s['records_redacted_by_retention']} emptied by retention); "
          f"messages rejected whole: {s['messages_rejected']}"
          + (f" ({', '.join(f'{k} x{v}' for k, v in s['rejected_by_rule'].items())})" if s["rejected_by_rule"] else "")
          + f"; retention runs: {s['retention_runs']}")
    if args.html:
        print(f"report: {args.html}")
    if args.json:
        print_json_last(s)
    return 0


def _audit_html(path: str, target: str, s: dict, recent: list[dict], policies: list[str], verified, registry) -> None:
    """The demo's HTML report drawn from an audit log alone (no leaks count, no frames)."""
    from datetime import datetime

    from edge.demo.report import AgencyRow, DemoReport, TimelineEvent, write_report
    from edge.demo.run import decided_by_text
    from edge.policy.audit_query import decisions_of

    rows = []
    for a_id, c in sorted(s["agencies"].items(), key=lambda kv: (-kv[1]["forwarded"], kv[0])):
        agency = registry.agency(a_id) if registry is not None else None
        rows.append(AgencyRow(a_id, agency.name if agency else "", agency.kind.value if agency else "",
                              agency.jurisdiction if agency else "", c["forwarded"], c["refused"],
                              (decided_by_text({"decided_by": c["rules"], "rules": []}),)))
    timeline = []
    for r in recent:
        try:
            at = datetime.fromisoformat((r.get("captured_at") or r["recorded_at"]).replace("Z", "+00:00"))
        except (TypeError, ValueError):
            continue  # emptied by retention and no decision time: nothing to place
        d = decisions_of(r)
        timeline.append(TimelineEvent(at, r.get("camera_id") or "?", r.get("plate") or "(removed by retention)",
                                      tuple(x[0] for x in d if x[1] == "forward"), tuple(x[0] for x in d if x[1] != "forward")))
    first = datetime.fromisoformat(s["first_recorded_at"]) if s["first_recorded_at"] else datetime.now()
    last = datetime.fromisoformat(s["last_recorded_at"]) if s["last_recorded_at"] else first
    try:
        write_report(DemoReport(
            title=f"alpr-edge audit report: {target}", policy=", ".join(policies) or "-", started_at=first,
            finished_at=last, broker="", reads_published=s["reads_decided"], leaks=None,
            audit_verified=verified.ok, audit_records=verified.records, audit_detail=verified.summary(),
            agencies=rows, timeline=timeline), path)
    except OSError as err:
        raise SystemExit(f"audit summary: --html {path}: {err.strerror or err}") from None


def _verify_acl(args) -> int:
    from edge.bench.report import print_json_last, print_table
    from edge.policy.verify_acl import verify_acl
    from edge.transport import mqtt as transport

    registry = _load_registry(args.registry)
    broker = transport.parse_broker_url(args.broker)
    checks = verify_acl(registry, broker, _secrets(args),
                        protocol=transport.MQTT_V311 if args.mqtt311 else transport.MQTT_V5,
                        policy=_policy_or_none(args.policy))
    print_table("verify-acl: what each login must not be able to do",
                ["principal", "attempt", "result", "how"],
                [(c.principal, c.attempt, "ok" if c.ok else "GAP" if c.gap else "FAIL", c.how) for c in checks])
    failed = [c for c in checks if not c.ok and not c.gap]
    gaps = [c for c in checks if c.gap]
    if gaps:
        print(f"verify-acl: {len(gaps)} attempt(s) not refused because of this broker's mode (GAP): "
              "regenerate with `broker-config --auth dynsec` to close them", file=sys.stderr)
    if args.json:
        print_json_last({"checks": len(checks), "failed": len(failed), "gaps": len(gaps),
                         "failures": [c.__dict__ for c in failed]})
    return 0 if not failed else 1


def _policy_table(args) -> int:
    from edge.bench.report import print_json_last, print_table
    from edge.policy.policy import compile_decisions, load_policy

    registry = _load_registry(args.registry)
    policy = load_policy(args.policy)
    table = compile_decisions(policy, registry)
    owners = sorted({c.agency for c in registry.cameras}) or [a.id for a in registry.agencies]
    rows = [(o, r, "forward" if d.allowed else "refuse", d.rule, d.reason)
            for o in owners for r in table.recipients for d in [table.decide(o, r)]]
    print_table(f"policy {policy.label}: reads of (owner) go to (recipient)?",
                ["owner", "recipient", "decision", "rule", "why"], rows)
    if args.json:
        print_json_last({"policy": policy.label, "decisions": [dict(zip(("owner", "recipient", "decision", "rule", "reason"), r)) for r in rows]})
    return 0
