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
