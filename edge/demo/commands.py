"""CLI: `alpr-edge demo`: cameras -> edge pipeline -> gate -> agencies, on an embedded broker unless
--broker is given. By default two cameras play synthetic footage through the real detector and OCR;
--source plays your own footage instead; --synthetic-reads skips vision and publishes made-up reads."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="cameras -> gate -> agencies on an embedded broker (or --broker URL): who gets what")
    p.add_argument("--source", action="append", metavar="SRC",
                   help="footage for the next camera of the registry (video file, image folder, stream URL or "
                        "synthetic:<scenario>); repeat for more cameras. Default: two synthetic scenes")
    p.add_argument("--synthetic-reads", type=int, metavar="N",
                   help="no vision: publish N made-up read events instead of running cameras")
    p.add_argument("--seed", type=int,
                   help="seed (0 or more) of the made-up reads (default 7) and of the synthetic footage (camera i gets "
                        "SEED+i; default: the demo's fixed footage). A synthetic --source that names its own seed keeps it")
    p.add_argument("--detector-model", help="ONNX detector (default: models/detector.onnx)")
    p.add_argument("--ocr-model", help="ONNX OCR, one or several comma-separated (default: models/ocr.onnx,models/ocr-camera.onnx)")
    p.add_argument("--broker", help="use this Mosquitto (configured by `broker-config demo`) instead of the embedded broker")
    p.add_argument("--secrets", help="with --broker: the secrets directory broker-config wrote")
    p.add_argument("--registry", help="registry YAML (default: the packaged demo registry)")
    p.add_argument("--policy", default="ca-sb34", help="policy file or shipped name (default %(default)s)")
    p.add_argument("--audit", help="keep the audit log in this SQLite file (default: a temp file, removed at the end "
                   "with the agencies' inboxes); a kept file grows run after run, and the agencies' inboxes beside it "
                   "(inbox-<agency>.db) are fresh each run")
    p.add_argument("--out", help="keep the cameras' plate crops in this folder, one subfolder per camera (default: a temp "
                   "folder, removed at the end)")
    p.add_argument("--no-forgeries", action="store_true", help="do not publish the forged and malformed messages")
    p.add_argument("--report", "--html", dest="report", metavar="OUT.html",
                   help="also write the self-contained HTML report here")
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.set_defaults(func=_demo)


def _progress_thread(cams, stop):
    """Live per-camera progress on stderr (stdout stays clean for the table and the JSON line)."""
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[reads]} reads"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    tasks = [progress.add_task(f"{r.camera_id:<12}", total=r.total, reads=0) for r in cams.runs]

    def loop():
        with progress:
            while not stop.wait(0.25):
                for t, r in zip(tasks, cams.runs):
                    progress.update(t, completed=r.progress(), reads=r.reads)
            for t, r in zip(tasks, cams.runs):
                progress.update(t, completed=r.progress(), reads=r.reads)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th


def _demo(args) -> int:
    import os
    import tempfile
    from pathlib import Path

    from edge.demo.run import demo_registry
    from edge.policy.policy import load_policy
    from edge.policy.registry import Secrets, load_registry

    # a bad registry or policy (ValueErrors) exits 2 in one line from the CLI's handler
    registry = load_registry(args.registry) if args.registry else demo_registry()
    policy = load_policy(args.policy)
    if args.broker and not args.secrets:
        raise SystemExit("demo: --broker needs --secrets DIR (from `alpr-edge broker-config demo --out DIR`: DIR/secrets)")
    secrets = Secrets(args.secrets) if args.secrets else None
    if args.synthetic_reads is not None and args.synthetic_reads < 0:
        raise SystemExit(f"demo: --synthetic-reads must be 0 or more, got {args.synthetic_reads}")
    if args.synthetic_reads is not None:  # before: these were ignored without a word
        given = [f for f, v in (("--source", args.source), ("--detector-model", args.detector_model),
                                ("--ocr-model", args.ocr_model)) if v]
        if given:
            raise SystemExit(f"demo: --synthetic-reads runs no cameras: {', '.join(given)} would not be used")
    if args.seed is not None and args.seed < 0:  # before: camera 1 failed mid-demo on numpy's 'expected non-negative integer'
        raise SystemExit(f"demo: --seed must be 0 or more, got {args.seed}")
    if not registry.cameras:  # before: a ZeroDivisionError traceback, or '2 sources but only 0 cameras'
        raise SystemExit(f"demo: the registry {args.registry or 'demo'} has no cameras: the demo needs at least one")
    if args.report:  # a report that cannot be written is said now, not after the whole demo has run
        report, existed = Path(args.report), os.path.lexists(args.report)
        try:
            with open(report, "a"):
                pass
        except OSError as err:
            raise SystemExit(f"demo: --report {args.report}: {err.strerror or err}") from None
        if not existed:
            report.unlink()

    # Without --out / --audit the crops, the audit log and the agencies' inboxes (plates, times, places)
    # go to a temporary folder that is removed at the end: a demo run leaves no read data behind.
    with tempfile.TemporaryDirectory(prefix="alpr-demo-", ignore_cleanup_errors=True) as scratch:
        return _run(args, registry, policy, secrets, Path(scratch))


def _run(args, registry, policy, secrets, scratch) -> int:
    import sys
    import threading
    from pathlib import Path

    from edge.bench.report import print_json_last, print_table
    from edge.demo.run import decided_by_text, run_demo, synthetic_reads, write_html

    cams = None
    if args.synthetic_reads is not None:
        reads = synthetic_reads(registry, args.synthetic_reads, 7 if args.seed is None else args.seed)
    else:
        from edge.demo.cameras import DEFAULT_SOURCES, DemoCameras, without_seed
        from edge.sources import SourceError

        out = Path(args.out) if args.out else scratch / "out"
        try:
            sources = args.source or DEFAULT_SOURCES
            if args.seed is not None and not args.source:  # other traffic on the default scenes
                sources = tuple(without_seed(s) for s in DEFAULT_SOURCES)
            cams = DemoCameras(registry.cameras, sources, out, args.detector_model, args.ocr_model,
                               seed=7 if args.seed is None else args.seed)
        except (SourceError, ValueError, FileNotFoundError, ImportError) as err:
            print(f"alpr-edge demo: error: cannot start the cameras: {err}", file=sys.stderr)
            return 2
        for r in cams.runs:
            print(f"camera {r.camera_id} ({r.agency_id}): {r.source}", file=sys.stderr)
        cams.start()
        reads = iter(cams)
    stop = threading.Event()
    shower = _progress_thread(cams, stop) if cams is not None else None
    try:
        result = run_demo(reads, registry, policy, broker_url=args.broker, secrets=secrets,
                          audit_path=args.audit or str(scratch / "audit.db"), with_forgeries=not args.no_forgeries)
    finally:
        stop.set()
        if cams is not None:
            cams.stop()  # and wait for the camera threads (on an error too: see DemoCameras.stop)
        if shower is not None:
            shower.join(timeout=2)
    camera_errors = [f"{r.camera_id}: {r.error}" for r in (cams.runs if cams else []) if r.error]

    rows = [(a_id, a["kind"], a["jurisdiction"], a["purpose"] + (f" (for {a['on_behalf_of']})" if a["on_behalf_of"] else ""),
             a["forwarded"], a["refused"], a["received"], decided_by_text(a))
            for a_id, a in result.agencies.items()]
    print_table(f"alpr-edge demo: policy {result.policy}, {result.reads_published} reads, broker {result.broker}",
                ["agency", "kind", "state", "purpose", "forwarded", "refused", "stored by agency (own login)",
                 "decided by (rule x messages)"], rows)
    if cams is not None:
        print_table("cameras", ["camera", "agency", "source", "frames", "reads", "fps", "error"],
                    [(r.camera_id, r.agency_id, r.source, r.progress(), r.reads,
                      round((r.metrics or {}).get("fps", 0.0), 1), r.error or "") for r in cams.runs])
    print(f"forged/malformed messages published: {result.forged_published}, refused by the gate: "
          f"{sum(result.rules.values())} ({', '.join(f'{k} x{v}' for k, v in sorted(result.rules.items())) or '-'})")
    for q in result.agency_searches:
        asked = f"{q['agency']}: {q['user']} searches {q['plate']} for {q['purpose']}" + (
            f" on behalf of {q['on_behalf_of']}" if q["on_behalf_of"] else "")
        told = f"{q['reads']} read(s)" if q["answered"] else f"refused ({q['reason']})"
        print(f"{asked}: {told}; access log entry {q['access_log_entry']}")
    print(f"leaks: {result.leaks}   audit: {result.audit_detail}"
          + (f"   access log: {'intact' if result.access_log_intact else 'BROKEN'}" if result.agency_searches else ""))
    if args.report:
        write_html(result, args.report, cams.sample_frames() if cams is not None else None)
        print(f"report: {args.report}")
    if args.json:
        obj = result.as_json()
        if cams is not None:
            obj["cameras"] = {r.camera_id: {"source": r.source, "frames": r.progress(), "reads": r.reads, "error": r.error}
                              for r in cams.runs}
        print_json_last(obj)
    return 0 if result.leaks == 0 and result.audit_verified and result.access_log_intact and not camera_errors else 1
