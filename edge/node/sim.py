"""`alpr-edge sim`: a camera network on one machine, one `alpr-edge run` process per camera."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def camera_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(1, n + 1)]


def camera_source(source: str, index: int) -> str:
    """Synthetic sources get a different seed per camera, so cameras see different traffic."""
    if source.startswith(("synthetic:", "synth:")) and "seed=" not in source:
        return f"{source}{'&' if '?' in source else '?'}seed={index}"
    return source


def run_sim(args) -> int:
    import yaml

    from edge.bench.report import print_json_last, print_table

    if args.cameras < 1:
        print("alpr-edge sim: --cameras must be at least 1", file=sys.stderr)
        return 2
    passwords: dict = {}
    if args.passwords:
        passwords = yaml.safe_load(Path(args.passwords).read_text()) or {}
    extra = [a for a in args.run_args if a != "--"]
    procs: list[tuple[str, subprocess.Popen]] = []
    for i, cam in enumerate(camera_ids(args.camera_prefix, args.cameras), start=1):
        if "{password}" in args.broker and cam not in passwords:
            print(f"alpr-edge sim: no password for {cam} in {args.passwords}", file=sys.stderr)
            return 2
        url = args.broker.replace("{camera}", cam).replace("{password}", str(passwords.get(cam, "")))
        cmd = [
            sys.executable, "-m", "edge.cli", "run",
            "--camera-id", cam, "--agency-id", args.agency_id, "--broker", url,
            "--source", camera_source(args.source, i),
            "--output-dir", str(Path(args.output_dir) / cam), "--no-progress", "--json", *extra,
        ]  # fmt: skip
        procs.append((cam, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))

    stopping = threading.Event()

    def forward(signum, frame):
        stopping.set()
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)

    t0 = time.monotonic()
    rows, results, rc = [], {}, 0
    for cam, p in procs:
        out, _ = p.communicate()
        last = (out or "").strip().splitlines()[-1:] or ["{}"]
        try:
            summary = json.loads(last[0])
        except json.JSONDecodeError:
            summary = {}
        results[cam] = {"exit": p.returncode, **summary}
        rc = rc or p.returncode
        rows.append([cam, p.returncode, summary.get("frames", 0), summary.get("fps", 0.0), summary.get("reads", 0), summary.get("acked", 0), summary.get("outbox_waiting", 0)])
    wall = time.monotonic() - t0
    print_table(f"alpr-edge sim: {args.cameras} cameras, {wall:.1f} s", ["camera", "exit", "frames", "fps", "reads", "acked", "outbox"], rows)
    if args.json:
        print_json_last({
            "cameras": args.cameras,
            "wall_s": round(wall, 2),
            "reads": sum(r.get("reads", 0) for r in results.values()),
            "acked": sum(r.get("acked", 0) for r in results.values()),
            "per_camera": results,
        })  # fmt: skip
    return rc
