"""CLI: `alpr-edge demo`: the policy gate end to end, on an embedded broker unless --broker is given."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="cameras -> gate -> agencies on an embedded broker (or --broker URL): who gets what")
    p.add_argument("--reads", type=int, default=60, help="synthetic reads to publish (default %(default)s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--broker", help="use this Mosquitto (configured by `broker-config demo`) instead of the embedded broker")
    p.add_argument("--secrets", help="with --broker: the secrets directory broker-config wrote")
    p.add_argument("--registry", help="registry YAML (default: the packaged demo registry)")
    p.add_argument("--policy", default="ca-sb34", help="policy file or shipped name (default %(default)s)")
    p.add_argument("--audit", help="keep the audit log in this SQLite file (default: a temp file)")
    p.add_argument("--no-forgeries", action="store_true", help="do not publish the forged and malformed messages")
    p.add_argument("--html", help="also write the self-contained HTML report here")
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    import sys

    from edge.bench.report import print_json_last, print_table
    from edge.demo.run import demo_registry, run_demo, synthetic_reads, write_html
    from edge.policy.policy import load_policy
    from edge.policy.registry import Secrets, load_registry

    registry = load_registry(args.registry) if args.registry else demo_registry()
    if args.broker and not args.secrets:
        print("error: --broker needs --secrets DIR (from `alpr-edge broker-config demo --out DIR`: DIR/secrets)",
              file=sys.stderr)
        return 2
    secrets = Secrets(args.secrets) if args.secrets else None
    result = run_demo(synthetic_reads(registry, args.reads, args.seed), registry, load_policy(args.policy),
                      broker_url=args.broker, secrets=secrets, audit_path=args.audit,
                      with_forgeries=not args.no_forgeries)
    rows = [(a_id, a["kind"], a["jurisdiction"], a["purpose"] + (f" (for {a['on_behalf_of']})" if a["on_behalf_of"] else ""),
             a["forwarded"], a["refused"], a["received"], ", ".join(a["rules"]))
            for a_id, a in result.agencies.items()]
    print_table(f"alpr-edge demo: policy {result.policy}, {result.reads_published} reads, broker {result.broker}",
                ["agency", "kind", "state", "purpose", "forwarded", "refused", "received (own login)", "rule"], rows)
    print(f"forged/malformed messages published: {result.forged_published}, refused by the gate: "
          f"{sum(result.rules.values())} ({', '.join(f'{k} x{v}' for k, v in sorted(result.rules.items())) or '-'})")
    print(f"leaks: {result.leaks}   audit: {result.audit_detail}")
    if args.html:
        write_html(result, args.html)
        print(f"report: {args.html}")
    if args.json:
        print_json_last(result.as_json())
    return 0 if result.leaks == 0 and result.audit_verified else 1
