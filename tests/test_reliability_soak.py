"""A short `bench soak`: cameras -> outbox -> Mosquitto -> gate process -> agencies, with a broker
restart, a camera process killed with SIGKILL and the gate killed with SIGKILL in the middle.

Counted from the outside (camera logs of stored reads, what is left in the outboxes, the audit
database, what each agency login received): nothing lost, nothing leaked, every read audited once.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

from edge.bench.soak import SoakConfig, run_soak


def test_short_soak_with_broker_restart_edge_kill_and_gate_kill(tmp_path):
    # Random moments (each in its own slot, so that the faults do not overlap); the seed is in any
    # failure message to replay the run.
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    at = {"broker": rng.uniform(3, 6), "edge": rng.uniform(8, 10), "gate": rng.uniform(12, 15)}
    cfg = SoakConfig(cameras=5, seconds=20, rate=1.0, broker_restart_at=[at["broker"]], edge_kill_at=[at["edge"]],
                     gate_kill_at=[at["gate"]], outage_s=2.0, camera_procs=2, mem_sample_s=2.0)
    r = run_soak(cfg, tmp_path / "soak", log=lambda m: None)
    r["seed"] = seed
    assert [f["kind"] for f in r["faults"]] == ["broker", "edge", "gate"], r
    assert r["produced"] >= 50, r  # 5 cameras x ~20 s, minus the killed worker's downtime
    assert r["lost"] == 0, (seed, r["per_agency"])
    assert r["leaked"] == 0, (seed, r["per_agency"])
    assert r["acknowledged"] == r["produced"]  # every outbox drained
    assert r["unexpected_exits"] == []  # no component died on its own
    assert r["audited"] == r["produced"] and r["not_audited"] == 0
    assert r["audit_ok"], r["audit_problems"]
    assert r["audit_records"] == r["produced"]  # each read audited exactly once despite redeliveries
    assert r["forwarded"] == 2 * r["produced"]  # both in-state agencies, nobody else
    for a in ("nv-pd", "fed", "task-force"):
        assert r["per_agency"][a]["received"] == 0
    # Forwards are QoS 2 (a broker restart does not deliver twice), but a gate killed after
    # forwarding a batch and before recording it done forwards it again as new packets. Never in
    # steady state: each duplicate delivery arrives inside a fault's window...
    for t in r["duplicates_at_s"]:
        assert any(f["at_s"] <= t <= f["at_s"] + f["window_s"] + 1.0 for f in r["faults"]), (seed, t, r["faults"])
    # ...and the agencies' inboxes (`alpr-edge agency receive`) hold every read exactly once.
    assert r["inbox_lost"] == 0 and r["inbox_duplicates"] == 0, (seed, r["per_agency"])
    for a in ("ca-pd", "ca-so"):
        assert r["per_agency"][a]["inbox"]["rows"] == r["produced"], (seed, r["per_agency"][a])
    assert r["p99_ms_outside_outage"] is not None and r["deliveries_outside_outage"] > 0


def test_soak_cli_prints_json_last(tmp_path):
    cmd = [sys.executable, "-m", "edge.cli", "bench", "soak", "--cameras", "2", "--minutes", "0.1",
           "--camera-procs", "1", "--workdir", str(tmp_path / "w"), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("reads_per_s", "p99_ms", "p99_ms_outside_outage", "lost", "leaked", "duplicates", "inbox_lost",
                "inbox_duplicates", "mem_growth_mb_per_h"):
        assert key in out
    assert out["lost"] == 0 and out["leaked"] == 0 and out["produced"] > 0
    assert "soak" in r.stdout  # the table
