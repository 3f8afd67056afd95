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
from urllib.parse import quote

from edge.node.commands import BROKER_ENV


def camera_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(1, n + 1)]


def camera_source(source: str, index: int) -> str:
    """Synthetic sources get a different seed per camera, so cameras see different traffic."""
    if source.startswith(("synthetic:", "synth:")) and "seed=" not in source:
        return f"{source}{'&' if '?' in source else '?'}seed={index}"
    return source


def plan_cameras(args) -> list[tuple[str, str, str]]:
    """(camera id, agency id, broker URL with its login) per camera to start."""
    import yaml

    from edge.transport.mqtt import parse_broker_url

    if args.cameras is not None and args.cameras < 1:
        raise ValueError(f"--cameras {args.cameras}: must be at least 1")
    if args.registry:
        from edge.policy.commands import _load_registry
        from edge.policy.registry import RegistryError, Secrets

        try:
            reg = _load_registry(args.registry)  # "demo": the demo's registry, as for gate and verify-acl
            cams = reg.cameras[: args.cameras] if args.cameras else reg.cameras
            if not cams:
                raise ValueError(f"{args.registry}: no cameras")
            if args.cameras and args.cameras > len(cams):
                raise ValueError(f"--cameras {args.cameras}: the registry has {len(cams)} cameras")
            parse_broker_url(args.broker)  # a clear error before any process starts
            # as gate, verify-acl and agency receive: secrets/ next to the registry unless --secrets
            # (before: 'no secrets directory given', naming no flag, whatever lay next to the registry)
            secrets = Secrets(args.secrets or Path(args.registry).parent / "secrets")
            out = []
            for c in cams:
                url = _with_login(args.broker, c.username, secrets.password(c))
                out.append((c.id, args.agency_id or c.agency, url))
            return out
        except RegistryError as err:
            raise ValueError(str(err)) from None
    if not args.cameras or args.cameras < 1:
        raise ValueError("--cameras must be at least 1 (or give --registry)")
    if not args.agency_id:
        raise ValueError("--agency-id is required without --registry")
    passwords: dict = {}
    if args.passwords:
        from edge.policy.registry import describe_yaml_error

        try:
            passwords = yaml.safe_load(Path(args.passwords).read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"--passwords {args.passwords}: {describe_yaml_error(err)}") from None
        if not isinstance(passwords, dict):
            raise ValueError(f"--passwords {args.passwords}: expected a mapping of camera id: password")
    out = []
    for cam in camera_ids(args.camera_prefix, args.cameras):
        if "{password}" in args.broker and cam not in passwords:
            raise ValueError(f"no password for {cam} in {args.passwords}")
        # URL-quoted, as _with_login does: a password with '@', '/', ':' or '%' was pasted in raw, so
        # the URL failed to parse (its error showing the password's tail) or logged in with another password.
        url = args.broker.replace("{camera}", quote(cam, safe="")).replace(
            "{password}", quote(str(passwords.get(cam, "")), safe=""))
        parse_broker_url(url)
        out.append((cam, args.agency_id, url))
    return out


def _with_login(url: str, username: str, password: str) -> str:
    from urllib.parse import quote, urlsplit, urlunsplit

    u = urlsplit(url)
    host = u.hostname + (f":{u.port}" if u.port else "")
    return urlunsplit(u._replace(netloc=f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"))


def run_sim(args) -> int:
    from edge.bench.report import print_json_last, print_table

    try:
        plan = plan_cameras(args)
    except (ValueError, OSError) as err:
        print(f"alpr-edge sim: error: {err}", file=sys.stderr)
        return 2
    extra = [a for a in args.run_args if a != "--"]
    procs: list[tuple[str, subprocess.Popen]] = []
    for i, (cam, agency, url) in enumerate(plan, start=1):
        cmd = [
            sys.executable, "-m", "edge.cli", *["-v"] * getattr(args, "verbose", 0), "run",  # `sim -vv`: debug logs too
            "--camera-id", cam, "--agency-id", agency,
            "--source", camera_source(args.source, i),
            "--output-dir", str(Path(args.output_dir) / cam), "--no-progress", "--json", *extra,
        ]  # fmt: skip
        # The URL (with the camera's password) goes through the environment, not the command line.
        env = {**os.environ, BROKER_ENV: url}
        procs.append((cam, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)))

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
    print_table(f"alpr-edge sim: {len(procs)} cameras, {wall:.1f} s", ["camera", "exit", "frames", "fps", "reads", "acked", "outbox"], rows)
    if args.json:
        print_json_last({
            "cameras": len(procs),
            "wall_s": round(wall, 2),
            "reads": sum(r.get("reads", 0) for r in results.values()),
            "acked": sum(r.get("acked", 0) for r in results.values()),
            "per_camera": results,
        })  # fmt: skip
    return rc
