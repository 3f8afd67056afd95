"""`alpr-edge sim`: a camera network on one machine, one `alpr-edge run` process per camera."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

from edge.node.commands import BROKER_ENV, PARENT_ENV

log = logging.getLogger(__name__)


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


# A camera process killed by a signal sim did not send (the OOM killer, a crash in a native library,
# kill -9) is restarted after a growing pause (1, 2, 4... s, at most RESTART_MAX_DELAY_S), as a
# service manager would; one that dies this many times in a row, each within STABLE_RUN_S of its
# start, is left stopped. A camera that exits with a status (a bad config, a source that cannot be
# opened) is not restarted: the same error would come back at once. Either is logged when it happens.
MAX_CRASHES_IN_A_ROW = 5
STABLE_RUN_S = 60.0
RESTART_MAX_DELAY_S = 30.0


class _Camera:
    """One camera's `alpr-edge run` process, started again after a crash."""

    def __init__(self, cam: str, cmd: list[str], env: dict[str, str]):
        self.cam, self.cmd, self.env = cam, cmd, env
        self.proc: subprocess.Popen | None = None
        self.output: str | None = None  # the finished process's stdout (set by the collecting thread)
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.restarts = 0
        self.crashes: list[int] = []  # exit statuses of the runs that crashed
        self.crashes_in_a_row = 0
        self.summaries: list[dict] = []  # each run's --json summary (a killed run has none)
        self.exit: int | None = None  # the last run's exit status
        self.signals_sent = 0  # SIGTERMs passed on to the running process

    def start(self) -> None:
        # Own session: a Ctrl-C on the terminal reaches sim alone, which passes one SIGTERM on. In
        # sim's process group each camera also had the terminal's SIGINT, took the two as "again:
        # stop now" and exited 130 without its summary or its final drain.
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True, env=self.env,
                                     start_new_session=True)
        self.started_at, self.restart_at, self.output, self.signals_sent = time.monotonic(), None, None, 0
        threading.Thread(target=self._collect, args=(self.proc,), daemon=True).start()

    def _collect(self, proc: subprocess.Popen) -> None:
        out, _ = proc.communicate()  # reads stdout as it comes: a full pipe never blocks the camera
        self.output = out or ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.output is None


def _summary(output: str) -> dict:
    last = output.strip().splitlines()[-1:] or ["{}"]
    try:
        summary = json.loads(last[0])
    except json.JSONDecodeError:
        return {}
    return summary if isinstance(summary, dict) else {}


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with status {rc}"


def _ended(c: _Camera, stopping: bool) -> None:
    """A camera process ended: keep its summary; restart it if it crashed (see MAX_CRASHES_IN_A_ROW)."""
    rc = c.proc.returncode
    c.exit, c.proc = rc, None
    summary = _summary(c.output or "")
    if summary:
        c.summaries.append(summary)
    if stopping or rc == 0:
        return
    ran_s = time.monotonic() - c.started_at
    if rc > 0:
        log.error("camera %s %s after %.0f s; not restarted (the same error would come back), the other "
                  "cameras go on", c.cam, _describe_exit(rc), ran_s)
        return
    c.crashes.append(rc)
    c.crashes_in_a_row = 1 if ran_s >= STABLE_RUN_S else c.crashes_in_a_row + 1
    if c.crashes_in_a_row >= MAX_CRASHES_IN_A_ROW:
        log.error("camera %s %s, %d times in a row within %.0f s of starting: left stopped, the other "
                  "cameras go on", c.cam, _describe_exit(rc), c.crashes_in_a_row, STABLE_RUN_S)
        return
    delay = min(2.0 ** (c.crashes_in_a_row - 1), RESTART_MAX_DELAY_S)
    log.error("camera %s %s after %.0f s; restarting it in %.0f s (its outbox keeps the reads it stored)",
              c.cam, _describe_exit(rc), ran_s, delay)
    c.restart_at = time.monotonic() + delay


def run_sim(args) -> int:
    from edge.bench.report import print_json_last, print_table

    try:
        plan = plan_cameras(args)
    except (ValueError, OSError) as err:
        print(f"alpr-edge sim: error: {err}", file=sys.stderr)
        return 2
    extra = [a for a in args.run_args if a != "--"]
    cameras: list[_Camera] = []
    for i, (cam, agency, url) in enumerate(plan, start=1):
        cmd = [
            sys.executable, "-m", "edge.cli", *["-v"] * getattr(args, "verbose", 0), "run",  # `sim -vv`: debug logs too
            "--camera-id", cam, "--agency-id", agency,
            "--source", camera_source(args.source, i),
            "--output-dir", str(Path(args.output_dir) / cam), "--no-progress", "--json", *extra,
        ]  # fmt: skip
        # The URL (with the camera's password) goes through the environment, not the command line;
        # PARENT_ENV: a camera whose sim is gone (killed with SIGKILL) stops by itself.
        env = {**os.environ, BROKER_ENV: url, PARENT_ENV: str(os.getpid())}
        cameras.append(_Camera(cam, cmd, env))

    stopping = threading.Event()
    signals = [0]  # SIGTERM/SIGINT received: each is passed on to every camera once (again: stop now)

    def pass_signals_on() -> None:
        for c in cameras:
            while c.running and c.signals_sent < signals[0]:
                c.signals_sent += 1
                if c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGTERM)

    def forward(signum, frame):
        stopping.set()
        signals[0] += 1
        pass_signals_on()

    # before the first camera starts: a SIGTERM while they start is passed on, not sim's death
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)

    t0 = time.monotonic()
    for c in cameras:
        if not stopping.is_set():
            c.start()
    while True:
        for c in cameras:
            if c.proc is not None and c.output is not None:
                _ended(c, stopping.is_set())
            if c.restart_at is not None and (stopping.is_set() or time.monotonic() >= c.restart_at):
                if stopping.is_set():
                    c.restart_at = None
                else:
                    c.restarts += 1
                    c.start()
        pass_signals_on()  # a camera started as the signal came
        if not any(c.proc is not None or c.restart_at is not None for c in cameras):
            break
        stopping.wait(0.2)
    wall = time.monotonic() - t0

    rows, results, rc = [], {}, 0
    for c in cameras:
        last = c.summaries[-1] if c.summaries else {}
        exit_status = c.exit if c.exit is not None else 0
        results[c.cam] = {"exit": exit_status, "restarts": c.restarts, "crashes": c.crashes, **last,
                          # every run's reads, not only the last run's (a restarted camera read before)
                          "reads": sum(s.get("reads", 0) for s in c.summaries),
                          "acked": sum(s.get("acked", 0) for s in c.summaries)}
        # a camera that ended by a signal: status 1 (a negative status is 256 - n in the shell)
        rc = rc or (exit_status if exit_status > 0 else 1 if exit_status < 0 else 0)
        r = results[c.cam]
        rows.append([c.cam, exit_status, c.restarts, r.get("frames", 0), r.get("fps", 0.0), r["reads"], r["acked"],
                     r.get("outbox_waiting", 0)])
    print_table(f"alpr-edge sim: {len(cameras)} cameras, {wall:.1f} s",
                ["camera", "exit", "restarts", "frames", "fps", "reads", "acked", "outbox"], rows)
    if args.json:
        print_json_last({
            "cameras": len(cameras),
            "wall_s": round(wall, 2),
            "reads": sum(r["reads"] for r in results.values()),
            "acked": sum(r["acked"] for r in results.values()),
            "per_camera": results,
        })  # fmt: skip
    return rc
