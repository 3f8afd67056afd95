"""`alpr-edge bench gate --json`: a short run checks the report's keys, leaks and audit (never speed)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_gate_json_last_line():
    r = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "gate", "--reads", "2000", "--latency-reads", "200",
                        "--json"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("reads_per_s", "p50_ms", "p99_ms", "leaks", "broker_baseline_per_s"):
        assert key in result, key
    assert result["leaks"] == 0
    assert result["reads_forwarded_all"] and result["audit_verified"]
    assert result["audit_records"] == 2200
    assert result["reads_per_s"] > 0 and result["broker_baseline_per_s"] > 0
    assert result["p50_ms"] <= result["p99_ms"]
    gate = result["gate"]
    assert gate["forwarded"] == {"sac-pd": 2200, "sac-so": 2200}
    assert gate["refused"] == {"reno-pd": 2200, "ice": 2200, "task-force": 2200}


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_bench_with_its_broker_and_gate():
    # `timeout` sends SIGTERM: the bench must not leave Mosquitto and the gate running behind it
    import os
    import signal
    import time

    kids: set[int] = set()
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "bench", "gate", "--reads", "1000000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not kids and time.monotonic() < deadline:  # the broker (the gate comes after its baseline)
            kids |= _children(p.pid)
            time.sleep(0.2)
        assert kids
        time.sleep(1.0)
        kids |= _children(p.pid)
        p.terminate()
        assert p.wait(timeout=60) != 0
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)]
    finally:
        if p.poll() is None:
            p.kill()
        for k in kids | _children(p.pid):  # a failed run must not leave them behind either
            if _alive(k):
                os.kill(k, signal.SIGKILL)
