"""`alpr-edge bench gate`: policy gate throughput and latency on a real Mosquitto, next to the broker's own.

Set-up: a Mosquitto on a free loopback port, configured from a bench registry (5 agencies, of
which 2 are allowed by ca-sb34), one gate process (`alpr-edge gate`, QoS 1 in and out, SQLite
audit on), one camera publishing QoS 1 reads, one subscriber per agency logged in as that agency.

Phases, all in the same run on the same broker:
  1. baseline: the same payloads published QoS 1 to a plain paho subscriber (no gate);
  2. throughput: N reads as fast as the camera can publish; rate = N / (first publish -> last
     read received by both allowed agencies);
  3. latency: reads paced at --latency-rate, publish -> receipt by an allowed agency (p50, p99).
Leaks: every message a refused agency receives, on its own topic or on '#' (the tests also check
what allowed agencies get on '#'; here that would double the load on the measuring process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

BENCH_REGISTRY = {
    "version": 1,
    "gate": {"username": "alpr-gate", "credentials": "file:alpr-gate.pw", "client_id": "alpr-gate"},
    "cameras": [{"id": "cam-1", "agency": "sac-pd", "username": "cam-1", "credentials": "file:cam-1.pw"}],
    "agencies": [
        {"id": "sac-pd", "name": "Sacramento Police Department", "kind": "local", "jurisdiction": "CA",
         "purpose": "criminal-investigation", "username": "sac-pd", "credentials": "file:sac-pd.pw"},
        {"id": "sac-so", "name": "Sacramento County Sheriff", "kind": "local", "jurisdiction": "CA",
         "purpose": "stolen-vehicle-recovery", "username": "sac-so", "credentials": "file:sac-so.pw"},
        {"id": "reno-pd", "name": "Reno Police Department", "kind": "local", "jurisdiction": "NV",
         "purpose": "criminal-investigation", "username": "reno-pd", "credentials": "file:reno-pd.pw"},
        {"id": "ice", "name": "U.S. Immigration and Customs Enforcement", "kind": "federal", "jurisdiction": "DC",
         "purpose": "immigration-enforcement", "username": "ice", "credentials": "file:ice.pw"},
        {"id": "task-force", "name": "State task force (for ICE)", "kind": "state", "jurisdiction": "CA",
         "purpose": "criminal-investigation", "on_behalf_of": "ice", "username": "task-force",
         "credentials": "file:task-force.pw"},
    ],
}


def register(sub) -> None:
    p = sub.add_parser("gate", help="policy gate reads/s, latency and leaks on a real Mosquitto, with a broker baseline")
    p.add_argument("--reads", type=int, default=20000, help="reads in the throughput phase (default %(default)s)")
    p.add_argument("--latency-reads", type=int, default=1000, help="reads in the paced latency phase")
    p.add_argument("--latency-rate", type=float, default=500.0, help="reads/s in the latency phase")
    p.add_argument("--audit", help="audit target (default: a SQLite file in a temp dir; or postgresql://...)")
    p.add_argument("--forward-qos", type=int, choices=(1, 2), default=2,
                   help="QoS of the gate's forwards and of the agencies' subscriptions (default %(default)s, the gate's)")
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.set_defaults(func=_run)


class _Counter:
    """Counts messages and keeps receipt times keyed by read id (parsing only what it must)."""

    def __init__(self, keep_times: bool = False):
        self.n = 0
        self.off_topic = 0
        self.times: dict[str, float] = {}
        self.keep_times = keep_times
        self.expect_topic: str | None = None
        self.lock = threading.Lock()

    def on_message(self, client, userdata, msg) -> None:
        now = time.perf_counter()
        with self.lock:
            self.n += 1
            if self.expect_topic is not None and msg.topic != self.expect_topic:
                self.off_topic += 1
            if self.keep_times:
                # "read_id":"<32 hex>" appears once in a forwarded read
                i = msg.payload.find(b'"read_id":"')
                if i >= 0:
                    rid = msg.payload[i + 11:msg.payload.index(b'"', i + 11)].decode()
                    self.times.setdefault(rid, now)


def _payloads(n: int, prefix: str) -> list[tuple[str, bytes]]:
    from edge.schema import ReadEvent

    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        rid = f"{prefix}{i:012d}"
        ev = ReadEvent(read_id=rid, camera_id="cam-1", agency_id="sac-pd", captured_at=now, plate="7ABC123",
                       confidence=0.93, char_confidence=[0.95] * 7, box={"x": 10, "y": 20, "w": 120, "h": 40},
                       region="CA", region_confidence=0.8, frame_size=(1920, 1080))
        out.append((rid, ev.to_json()))
    return out


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def run_bench(reads: int = 20000, latency_reads: int = 1000, latency_rate: float = 500.0,
              audit: str | None = None, workdir: str | None = None, gate_args: tuple[str, ...] = (),
              forward_qos: int = 2) -> dict:
    import yaml

    from edge.policy.audit import open_audit
    from edge.policy.brokerconf import agency_client_id, camera_client_id
    from edge.policy.registry import parse_registry
    from edge.transport import mqtt as transport
    from edge.transport.mosquitto import MosquittoBroker

    registry = parse_registry(BENCH_REGISTRY, "bench registry")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="alpr-bench-gate-"))
    (tmp / "registry.yaml").write_text(yaml.safe_dump(BENCH_REGISTRY))
    audit_target = audit or str(tmp / "audit.db")
    pg = audit_target.startswith(("postgresql://", "postgres://"))
    if pg:  # tables of our own on the given database, dropped after the run
        audit_target += ("&" if "?" in audit_target else "?") + f"table_prefix=bench{uuid.uuid4().hex[:8]}_"
    allowed = ["sac-pd", "sac-so"]
    refused = ["reno-pd", "ice", "task-force"]
    result: dict = {}
    with MosquittoBroker(registry, tmp / "broker") as broker:
        url = transport.parse_broker_url(broker.url())

        def login(who):
            return url.with_login(*broker.credentials(who))

        cam = transport.connect(login("cam-1"), camera_client_id("cam-1"))  # the id the broker binds to the login

        # 1. Broker baseline: same payloads, same broker, QoS 1 publish -> plain subscriber.
        base = _payloads(reads, "b")
        bc = _Counter()
        sub = transport.connect(login("gate"), "bench-baseline", on_message=bc.on_message,
                                subscriptions=[("alpr/raw/#", 1)], receive_maximum=1000)
        t0 = time.perf_counter()
        for _rid, p in base:
            cam.publish("alpr/raw/cam-1", p, qos=1)
        _wait(lambda: bc.n >= reads, 120)
        baseline_s = time.perf_counter() - t0
        transport.close(sub)
        baseline_per_s = bc.n / baseline_s

        # 2. The gate, a separate process.
        cmd = [sys.executable, "-m", "edge.cli", "gate", "--registry", str(tmp / "registry.yaml"),
               "--broker", broker.url(), "--secrets", str(broker.directory / "secrets"),
               "--audit", audit_target, "--gate-id", "bench-gate", "--json", "--forward-qos", str(forward_qos),
               *gate_args]
        gate = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = gate.stderr.readline()
        if not first.startswith("gate bench-gate:"):
            gate.wait(timeout=30)
            said = (first + gate.stderr.read()).strip().removeprefix("alpr-edge gate: error: ")
            # the gate's own one-line error (an audit file that cannot be opened, a database down)
            raise SystemExit(f"bench gate: the gate did not start: {said or f'exit status {gate.returncode}'}")
        threading.Thread(target=gate.stderr.read, daemon=True).start()

        counters: dict[str, _Counter] = {}
        clients = []
        for a in allowed + refused:
            c = _Counter(keep_times=a == allowed[0])
            c.expect_topic = f"alpr/share/{a}/reads"
            counters[a] = c
            w = _Counter()
            counters[f"{a}#"] = w
            subs = [(f"alpr/share/{a}/#", forward_qos)]
            if a in refused:  # '#' for the refused only: doubling the allowed traffic would load this process
                subs.append(("#", forward_qos))  # on the one connection the login's bound client id allows

            def on_message(client, userdata, msg, own=c, other=w, prefix=f"alpr/share/{a}/"):
                (own if msg.topic.startswith(prefix) else other).on_message(client, userdata, msg)

            clients.append(transport.connect(login(a), agency_client_id(a), on_message=on_message,
                                             subscriptions=subs, receive_maximum=1000))
        try:
            # 3. Throughput.
            loads = _payloads(reads, "t")
            t0 = time.perf_counter()
            for _rid, p in loads:
                cam.publish("alpr/raw/cam-1", p, qos=1)
            ok = _wait(lambda: all(counters[a].n >= reads for a in allowed), 300)
            gate_s = time.perf_counter() - t0
            got = min(counters[a].n for a in allowed)

            # 4. Latency, paced.
            lat = _payloads(latency_reads, "l")
            sent: dict[str, float] = {}
            period = 1.0 / latency_rate
            t_next = time.perf_counter()
            for rid, p in lat:
                while time.perf_counter() < t_next:
                    time.sleep(min(0.001, max(0.0, t_next - time.perf_counter())))
                sent[rid] = time.perf_counter()
                cam.publish("alpr/raw/cam-1", p, qos=1)
                t_next += period
            _wait(lambda: all(counters[a].n >= reads + latency_reads for a in allowed), 60)
            time.sleep(0.5)  # late leaks would show up now
            times = counters[allowed[0]].times
            lats = sorted((times[r] - s) * 1000 for r, s in sent.items() if r in times)
        finally:
            for c in clients:
                transport.close(c)
            transport.close(cam)
            gate.terminate()
            out, _ = gate.communicate(timeout=30)
        gate_stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        leaks = sum(counters[a].n + counters[f"{a}#"].n for a in refused)
        leaks += sum(counters[a].off_topic + counters[f"{a}#"].off_topic for a in allowed)
        store = open_audit(audit_target)
        verified = store.verify()
        if pg:
            store.drop()
        store.close()

        def pct(q):
            return round(lats[min(len(lats) - 1, int(q * len(lats)))], 2) if lats else None

        reads_per_s = got / gate_s if ok else got / gate_s
        result = {
            "reads": reads,
            "reads_forwarded_all": bool(ok),
            "reads_per_s": round(reads_per_s, 1),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "latency_reads": len(lats),
            "latency_rate_per_s": latency_rate,
            "leaks": leaks,
            "broker_baseline_per_s": round(baseline_per_s, 1),
            "ratio_to_baseline": round(reads_per_s / baseline_per_s, 3),
            "agencies": len(allowed) + len(refused),
            "allowed_agencies": len(allowed),
            "forward_qos": forward_qos,
            "gate": gate_stats,
            # CPU the gate process used, startup included: what the gate costs, whatever else runs here
            "gate_cpu_s": gate_stats.get("cpu_s"),
            "gate_cpu_us_per_read": round(gate_stats["cpu_s"] / gate_stats["received"] * 1e6, 1)
            if gate_stats.get("cpu_s") and gate_stats.get("received") else None,
            "audit_records": verified.records,
            "audit_verified": verified.ok,
            "audit": "postgresql" if pg else "sqlite",
        }
    return result


def _run(args) -> int:
    from edge.bench.report import machine_info, print_json_last, print_table

    if args.reads < 1:
        raise SystemExit(f"bench gate: --reads must be at least 1, got {args.reads}")
    if args.latency_reads < 0:
        raise SystemExit(f"bench gate: --latency-reads must be 0 or more, got {args.latency_reads}")
    if not 0 < args.latency_rate < float("inf"):
        raise SystemExit(f"bench gate: --latency-rate must be more than 0 reads/s, got {args.latency_rate}")
    r = run_bench(args.reads, args.latency_reads, args.latency_rate, args.audit, forward_qos=args.forward_qos)
    print_table(
        f"bench gate: 1 gate process, 5 agencies (2 allowed), QoS 1 in, QoS {r['forward_qos']} out, audit on, "
        "Mosquitto on loopback",
        ["what", "value"],
        [("broker baseline (plain QoS 1 pub -> sub), msgs/s", r["broker_baseline_per_s"]),
         ("gate throughput, reads/s", r["reads_per_s"]),
         ("gate / baseline", r["ratio_to_baseline"]),
         (f"latency p50 / p99 at {r['latency_rate_per_s']:.0f} reads/s, ms", f"{r['p50_ms']} / {r['p99_ms']}"),
         ("gate CPU per read (startup included), us", r["gate_cpu_us_per_read"]),
         ("leaks (messages refused agencies received)", r["leaks"]),
         ("audit records / chain verified", f"{r['audit_records']} / {r['audit_verified']}")],
    )
    r["machine"] = machine_info()
    if args.json:
        print_json_last(r)
    return 0 if r["leaks"] == 0 and r["audit_verified"] and r["reads_forwarded_all"] else 1
