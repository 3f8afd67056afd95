"""`alpr-edge bench soak`: N simulated cameras through the real path, for minutes, with faults injected.

What runs (all on loopback, every process real):

    camera workers (processes)     Mosquitto (persistence,       policy gate          agency logins
    N cameras, each its own    ->  logins + ACL from the     ->  (`alpr-edge gate`,  ->  (own topic and '#',
    SQLite outbox + MQTT login      registry, free port)          SQLite audit)         persistent sessions)
                                                                                       + agency receivers
                                                                                         (SQLite inboxes)

Each simulated camera produces synthetic read events at `--rate` reads/s (captured_at = now) and
puts them in its outbox; a read counts as *produced* once the outbox has it on disk (the camera
logs its id right after). Faults: `--broker-restart-at S` stops Mosquitto (SIGTERM, or SIGKILL with
`--broker-kill`) and starts it again `--outage-s` later; `--gate-kill-at S` SIGKILLs the gate and
restarts it; `--edge-kill-at S` SIGKILLs one camera worker process and restarts it (its outbox
file survives).

At the end the cameras stop producing, their outboxes drain, and every count is taken from the
outside: what the cameras stored, what is left in their outboxes, what the audit database holds,
and what each agency login received.

- lost: produced reads an allowed agency never received (summed over allowed agencies)
- leaked: messages a refused agency received on any topic, or an allowed agency on another's topic
- duplicates: deliveries of a read id an agency had already received (the agency logins subscribe
  at QoS 2, like the gate's forwards, so a broker restart does not deliver twice)
- inbox_lost / inbox_duplicates: the same counted in each allowed agency's inbox, filled by the
  receiver an agency deploys (`alpr-edge agency receive`: QoS 1 acknowledged after its commit, keyed
  by read id): what the agency ends up holding
- p99_ms: capture (the read's captured_at) to agency receipt, every delivery
- p99_ms_outside_outage: the same without reads in transit during an outage window; a window runs
  from the fault to the moment the last read captured before recovery was delivered (backlog drained)
- mem_growth_mb_per_h: RSS slope (least squares) per process over its longest-lived incarnation
  (after a warm-up), summed over broker, gate and camera processes (not the harness, which keeps every
  message it counts)
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import re
import signal
import sqlite3
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

GATE_ID = "soak-gate"
ALLOWED = ("ca-pd", "ca-so")  # local agencies in California: receive every read
REFUSED = ("nv-pd", "fed", "task-force")  # out of state, federal, state task force for the federal one
READ_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Mosquitto writes its persistence file every 30 s by default: a SIGKILLed broker forgets the QoS 1
# messages it acknowledged since (queued for the gate or an agency). Saving after every change
# closes that gap at the cost of one small file write per message.
SAVE_EVERY_CHANGE_CONF = {"conf.d/35-save-every-change.conf": (
    "# Write the persistence file after every change (queued message, subscription), not only\n"
    "# every 30 s: a broker killed with SIGKILL otherwise forgets what it acknowledged since.\n"
    "autosave_on_changes true\nautosave_interval 1\n")}


def register(sub) -> None:
    p = sub.add_parser("soak", help="N simulated cameras -> outbox -> Mosquitto -> gate -> agencies, with faults; "
                                    "lost, leaked, duplicates, p99 latency, memory growth")
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--minutes", type=float, default=10.0, help="how long cameras produce reads (default %(default)s)")
    p.add_argument("--rate", type=float, default=1.0, help="reads per second per camera (default %(default)s)")
    p.add_argument("--broker-restart-at", type=float, action="append", default=[], metavar="S",
                   help="stop Mosquitto S seconds into the run and start it again (repeatable)")
    p.add_argument("--broker-kill", action="store_true", help="stop Mosquitto with SIGKILL instead of SIGTERM")
    p.add_argument("--broker-save-every-change", action="store_true",
                   help="Mosquitto writes its persistence file after every change (autosave_on_changes), not every "
                        "30 s: what a broker that may be SIGKILLed needs")
    p.add_argument("--gate-kill-at", type=float, action="append", default=[], metavar="S",
                   help="SIGKILL the gate S seconds into the run and restart it (repeatable)")
    p.add_argument("--edge-kill-at", type=float, action="append", default=[], metavar="S",
                   help="SIGKILL one camera worker process S seconds into the run and restart it (repeatable)")
    p.add_argument("--outage-s", type=float, default=3.0, help="how long a killed component stays down (default %(default)s)")
    p.add_argument("--camera-procs", type=int, default=2, help="camera worker processes (default %(default)s)")
    p.add_argument("--workdir", help="keep every file here (default: a temporary directory, removed)")
    p.add_argument("--audit", help="postgresql://... DSN for the gate's audit log (tables of the run's own, dropped "
                                   "after it); default SQLite in the work directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_soak_cli)


@dataclass
class SoakConfig:
    cameras: int = 20
    seconds: float = 600.0
    rate: float = 1.0
    broker_restart_at: list[float] = field(default_factory=list)
    broker_kill: bool = False
    broker_save_every_change: bool = False
    audit_dsn: str | None = None  # postgresql://... for the gate's audit (default: SQLite in the workdir)
    gate_kill_at: list[float] = field(default_factory=list)
    edge_kill_at: list[float] = field(default_factory=list)
    outage_s: float = 3.0
    camera_procs: int = 2
    mem_sample_s: float = 5.0
    drain_timeout_s: float = 180.0
    start_timeout_s: float = 60.0


def soak_registry(cameras: int) -> dict:
    def principal(name: str) -> dict:
        return {"username": name, "credentials": f"file:{name}.pw"}

    agencies = [
        {"id": "ca-pd", "name": "A California police department", "kind": "local", "jurisdiction": "CA",
         "purpose": "criminal-investigation", **principal("ca-pd")},
        {"id": "ca-so", "name": "A California sheriff", "kind": "local", "jurisdiction": "CA",
         "purpose": "stolen-vehicle-recovery", **principal("ca-so")},
        {"id": "nv-pd", "name": "A Nevada police department", "kind": "local", "jurisdiction": "NV",
         "purpose": "criminal-investigation", **principal("nv-pd")},
        {"id": "fed", "name": "A federal agency", "kind": "federal", "jurisdiction": "DC",
         "purpose": "immigration-enforcement", **principal("fed")},
        {"id": "task-force", "name": "A state task force for the federal agency", "kind": "state",
         "jurisdiction": "CA", "purpose": "criminal-investigation", "on_behalf_of": "fed", **principal("task-force")},
    ]
    cams = [{"id": cam, "agency": ALLOWED[i % 2], **principal(cam)} for i, cam in enumerate(camera_ids(cameras))]
    return {"version": 1, "gate": {**principal("soak-gate"), "client_id": "soak-gate"},
            "agencies": agencies, "cameras": cams}


def camera_ids(n: int) -> list[str]:
    return [f"cam-{i:03d}" for i in range(1, n + 1)]


# -- camera worker (a separate process: `python -m edge.bench.soak worker CONFIG`) ------------------------

def _worker_main(config_path: str) -> int:
    import logging

    from edge.policy.brokerconf import camera_client_id
    from edge.schema import ReadEvent
    from edge.transport.outbox import Outbox, OutboxError, publisher_for_url

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = json.loads(Path(config_path).read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    epoch = int(cfg["epoch"])
    cams = []
    for c in cfg["cameras"]:
        outbox = Outbox(Path(cfg["outbox_dir"]) / f"{c['id']}.db")
        pub = publisher_for_url(outbox, c["url"], camera_client_id(c["id"]))  # the id the broker binds to its login
        pub.start()
        produced_log = open(Path(cfg["log_dir"]) / f"{c['id']}.produced", "a", buffering=1)
        cams.append({"id": c["id"], "agency": c["agency"], "outbox": outbox, "pub": pub, "log": produced_log,
                     "topic": f"alpr/raw/{c['id']}", "k": 0})
    period = 1.0 / float(cfg["rate"])
    t0 = time.monotonic()
    heap = [(t0 + period * i / len(cams), i) for i in range(len(cams))]
    heapq.heapify(heap)
    rng = random.Random(epoch * 7919 + len(cams))
    alphabet = string.ascii_uppercase + string.digits
    produced = 0
    not_stored: list[str] = []
    print("started", flush=True)
    while not stop.is_set():
        due, i = heap[0]
        wait = due - time.monotonic()
        if wait > 0:
            stop.wait(min(wait, 0.5))
            continue
        # Starved of CPU for many periods: a real camera would not see those frames either.
        nxt = due + period if due > time.monotonic() - 5 * period else time.monotonic() + period
        heapq.heapreplace(heap, (nxt, i))
        cam = cams[i]
        cam["k"] += 1
        read_id = f"{cam['id']}-e{epoch}-{cam['k']:07d}"
        plate = "".join(rng.choices(alphabet, k=7))
        ev = ReadEvent(read_id=read_id, camera_id=cam["id"], agency_id=cam["agency"],
                       captured_at=datetime.now(timezone.utc), plate=plate, confidence=0.9,
                       char_confidence=[0.9] * 7, box={"x": 10.0, "y": 20.0, "w": 120.0, "h": 40.0})
        payload = ev.to_json()
        last_err = 0.0
        stored = False
        while not stored:
            try:
                cam["outbox"].put(cam["topic"], payload, read_id)
                stored = True
            except OutboxError as err:  # full or unwritable: hold the camera, never drop the read
                if time.monotonic() - last_err > 10:
                    print(f"outbox: {err}", file=sys.stderr, flush=True)
                    last_err = time.monotonic()
                if stop.wait(0.2):
                    break
        if not stored:
            not_stored.append(read_id)  # asked to stop while the outbox refused it: reported, not hidden
            break
        cam["log"].write(read_id + "\n")
        produced += 1
        cam["pub"].notify()
    deadline = time.monotonic() + float(cfg.get("drain_s", 60))
    for cam in cams:
        cam["pub"].wait_drained(max(0.0, deadline - time.monotonic()))
    left = sum(len(c["outbox"]) for c in cams)
    for cam in cams:
        cam["pub"].stop()
        cam["outbox"].close()
        cam["log"].close()
    print(json.dumps({"produced": produced, "left_in_outbox": left, "not_stored": not_stored}), flush=True)
    return 0


# -- the harness -----------------------------------------------------------------------------------------

class _AgencyLogin:
    """What one agency login received: (time, topic, payload) per delivery. A refused agency connects
    here itself, with a persistent session (a broker restart must not drop its queued reads), subscribed
    at QoS 2 like the gate's forwards to its own topic and to '#' on the one connection its bound client
    id allows (the broker refuses '#' at SUBACK, or grants it and filters each delivery). An allowed
    agency's deliveries are recorded by its AgencyReceiver (`record`), which holds its one connection."""

    def __init__(self, agency: str, broker_url=None, topics: tuple[str, ...] = ()):
        from edge.policy.brokerconf import agency_client_id
        from edge.transport import mqtt as transport

        self.agency = agency
        self.lock = threading.Lock()
        self.messages: list[tuple[float, str, bytes]] = []
        self.client = None
        if broker_url is not None:
            self.client = transport.connect(broker_url, agency_client_id(agency), clean_start=False,
                                            session_expiry_s=3600, on_message=self._on_message,
                                            subscriptions=[(t, 2) for t in topics], timeout=30)

    def record(self, t: float, topic: str, payload: bytes) -> None:
        with self.lock:
            self.messages.append((t, topic, payload))

    def _on_message(self, client, userdata, msg) -> None:
        self.record(time.time(), msg.topic, msg.payload)

    def snapshot(self) -> list[tuple[float, str, bytes]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        from edge.transport import mqtt as transport

        if self.client is not None:
            transport.close(self.client)


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _slope_per_h(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3 or samples[-1][0] - samples[0][0] < 20:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in samples) / den * 3600.0


class Soak:
    def __init__(self, config: SoakConfig, workdir: Path, log=print):
        from edge.policy.registry import parse_registry

        self.cfg = config
        self.wd = Path(workdir)
        self.wd.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.registry_dict = soak_registry(config.cameras)
        self.registry = parse_registry(self.registry_dict, "soak")
        self.registry_path = self.wd / "registry.yaml"
        import yaml

        self.registry_path.write_text(yaml.safe_dump(self.registry_dict))
        (self.wd / "outbox").mkdir(exist_ok=True)
        (self.wd / "produced").mkdir(exist_ok=True)
        self.broker = None
        self.gate: subprocess.Popen | None = None
        self.gate_incarnation = 0
        self.workers: list[dict] = []
        self.agencies: dict[str, _AgencyLogin] = {}
        self.receivers: dict = {}  # allowed agency -> AgencyReceiver (its SQLite inbox)
        self.outages: list[dict] = []
        self.mem: dict[str, list[tuple[float, float, int]]] = {}
        self.events: list[str] = []
        self.unexpected_exits: list[str] = []
        self.audit_target = str(self.wd / "audit.db")
        if config.audit_dsn:  # PostgreSQL: tables of this run's own, dropped at the end
            import uuid
            from urllib.parse import urlsplit

            self.pg_prefix = f"soak{uuid.uuid4().hex[:8]}_"
            sep = "&" if urlsplit(config.audit_dsn).query else "?"
            self.audit_target = f"{config.audit_dsn}{sep}table_prefix={self.pg_prefix}"

    # -- components --------------------------------------------------------------------------------------
    def start_broker(self) -> None:
        from edge.transport.mosquitto import MosquittoBroker

        if self.broker is None:
            extra = SAVE_EVERY_CHANGE_CONF if self.cfg.broker_save_every_change else None
            self.broker = MosquittoBroker(self.registry, self.wd / "broker", extra_conf=extra)
        self.broker.start(timeout=self.cfg.start_timeout_s)

    def start_gate(self) -> None:
        self.gate_incarnation += 1
        n = self.gate_incarnation
        cmd = [sys.executable, "-m", "edge.cli", "gate", "--registry", str(self.registry_path),
               "--broker", self.broker.url(), "--secrets", str(self.broker.directory / "secrets"),
               "--audit", self.audit_target, "--gate-id", GATE_ID, "--batch-ms", "20", "--json"]
        out = open(self.wd / f"gate-{n}.out", "wb")
        err_path = self.wd / f"gate-{n}.err"
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        out.close()
        ready = threading.Event()

        def pump():
            with open(err_path, "ab") as f:
                for line in proc.stderr:
                    f.write(line)
                    f.flush()
                    if line.startswith(f"gate {GATE_ID}:".encode()):
                        ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while not ready.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"gate did not start: {err_path.read_text(errors='replace')[-2000:]}")
        self.gate = proc

    def start_worker(self, index: int, epoch: int) -> None:
        ids = camera_ids(self.cfg.cameras)[index::self.cfg.camera_procs]
        cams = []
        for cam in ids:
            c = self.registry.camera(cam)
            cams.append({"id": cam, "agency": c.agency, "url": self.broker.url(cam)})
        conf = self.wd / f"worker-{index}.json"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds camera passwords
        with os.fdopen(fd, "w") as f:
            json.dump({"cameras": cams, "rate": self.cfg.rate, "epoch": epoch, "outbox_dir": str(self.wd / "outbox"),
                       "log_dir": str(self.wd / "produced"), "drain_s": self.cfg.drain_timeout_s}, f)
        out = open(self.wd / f"worker-{index}-e{epoch}.out", "wb")
        err = open(self.wd / f"worker-{index}-e{epoch}.err", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "edge.bench.soak", "worker", str(conf)], stdout=out, stderr=err)
        out.close()
        err.close()
        w = {"index": index, "epoch": epoch, "proc": proc, "out": self.wd / f"worker-{index}-e{epoch}.out"}
        if index < len(self.workers):
            self.workers[index] = w
        else:
            self.workers.append(w)
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while b"started" not in w["out"].read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"camera worker {index} did not start: "
                                   f"{(self.wd / f'worker-{index}-e{epoch}.err').read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def start_agencies(self) -> None:
        from edge.transport import mqtt as transport

        from edge.agency.receiver import AgencyInbox, AgencyReceiver

        for a in REFUSED:
            url = transport.parse_broker_url(self.broker.url(a))
            self.agencies[a] = _AgencyLogin(a, url, (f"alpr/share/{a}/#", "#"))
        # What an allowed agency deploys (`alpr-edge agency receive`): its inbox must end with each read
        # once; every delivery to it (and whatever '#' brought) is also counted, as it arrives.
        for a in ALLOWED:
            url = transport.parse_broker_url(self.broker.url(a))
            self.agencies[a] = _AgencyLogin(a)
            self.receivers[a] = AgencyReceiver(a, url, AgencyInbox(self.wd / f"inbox-{a}.db"), qos=2,
                                               probe_topics=("#",), on_delivery=self.agencies[a].record).start()

    def sample_memory(self, t: float) -> None:
        procs = {"broker": self.broker.process, "gate": self.gate, "harness": None}
        for w in self.workers:
            procs[f"cameras-{w['index']}"] = w["proc"]
        for name, p in procs.items():
            pid = os.getpid() if name == "harness" else (p.pid if p is not None and p.poll() is None else None)
            if pid is None:
                continue
            rss = _rss_mb(pid)
            if rss is not None:
                self.mem.setdefault(name, []).append((t, rss, pid))

    # -- faults ------------------------------------------------------------------------------------------
    def _fault(self, kind: str, t0: float) -> None:
        start = time.time()
        self.log(f"[{time.monotonic() - t0:7.1f} s] fault: {kind}")
        if kind == "broker":
            p = self.broker.process
            if self.cfg.broker_kill:
                p.kill()
                p.wait()
                self.broker.process = None
            else:
                self.broker.stop()
            time.sleep(self.cfg.outage_s)
            self.broker.start(timeout=self.cfg.start_timeout_s)
        elif kind == "gate":
            if self.gate.poll() is not None:  # it died on its own before we could kill it: a finding
                self.unexpected_exits.append(f"gate exited with {self.gate.returncode} before the kill at "
                                             f"{start - self.t0_wall:.1f} s")
            self.gate.kill()
            self.gate.wait()
            time.sleep(self.cfg.outage_s)
            deadline = time.monotonic() + self.cfg.start_timeout_s * 2
            while True:
                try:
                    self.start_gate()
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
        elif kind == "edge":
            w = self.workers[0]
            w["proc"].kill()
            w["proc"].wait()
            time.sleep(self.cfg.outage_s)
            self.start_worker(0, w["epoch"] + 1)
        restored = time.time()
        self.outages.append({"kind": kind, "at_s": round(start - self.t0_wall, 2), "start": start, "restored": restored})
        self.log(f"[{time.monotonic() - t0:7.1f} s] restored: {kind} after {restored - start:.1f} s")

    # -- run ---------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        self.start_broker()
        self.start_gate()
        self.start_agencies()
        self.t0_wall = time.time()
        for i in range(min(cfg.camera_procs, cfg.cameras)):
            self.start_worker(i, 1)
        self.cfg.camera_procs = len(self.workers)
        t0 = time.monotonic()
        self.t0_wall = time.time()
        faults = sorted([(s, "broker") for s in cfg.broker_restart_at] + [(s, "gate") for s in cfg.gate_kill_at]
                        + [(s, "edge") for s in cfg.edge_kill_at])
        next_sample = 0.0
        while True:
            now = time.monotonic() - t0
            if now >= cfg.seconds:
                break
            if now >= next_sample:
                self.sample_memory(time.time())
                next_sample = now + cfg.mem_sample_s
            if faults and now >= faults[0][0]:
                self._fault(faults.pop(0)[1], t0)
                continue
            for w in self.workers:
                if w["proc"].poll() is not None:
                    raise RuntimeError(f"camera worker {w['index']} exited: "
                                       f"{(self.wd / ('worker-%d-e%d.err' % (w['index'], w['epoch']))).read_text()[-2000:]}")
            if self.gate.poll() is not None:
                raise RuntimeError(f"gate exited unexpectedly (see {self.wd}/gate-{self.gate_incarnation}.err)")
            time.sleep(min(0.2, max(0.01, cfg.seconds - now)))
        produce_end = time.time()
        self.sample_memory(time.time())
        # Cameras stop producing and drain their outboxes.
        for w in self.workers:
            w["proc"].send_signal(signal.SIGTERM)
        summaries = []
        for w in self.workers:
            try:
                w["proc"].wait(cfg.drain_timeout_s + 30)
            except subprocess.TimeoutExpired:
                w["proc"].kill()
                w["proc"].wait()
            lines = w["out"].read_text().strip().splitlines()
            try:
                summaries.append(json.loads(lines[-1]))
            except (IndexError, json.JSONDecodeError):
                summaries.append({})
        produced = self.produced_ids()
        # Wait (with a deadline) until every allowed agency has every produced read.
        deadline = time.monotonic() + cfg.drain_timeout_s
        while time.monotonic() < deadline:
            if all(produced <= self._ids(a) for a in ALLOWED) and all(
                    r.inbox.count() >= len(produced) for r in self.receivers.values()):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # late duplicates or leaks would arrive now
        self.gate.send_signal(signal.SIGTERM)
        try:
            self.gate.wait(30)
        except subprocess.TimeoutExpired:
            self.gate.kill()
            self.gate.wait()
        return self.result(produced, produce_end, summaries)

    def stop(self) -> None:
        for w in self.workers:
            if w["proc"].poll() is None:
                w["proc"].kill()
                w["proc"].wait()
        if self.gate is not None and self.gate.poll() is None:
            self.gate.kill()
            self.gate.wait()
        for a in self.agencies.values():
            try:
                a.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        for r in self.receivers.values():
            try:
                r.stop()
                r.inbox.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        if self.broker is not None:
            self.broker.stop()
        if self.cfg.audit_dsn:
            from edge.policy.audit import open_audit

            try:
                store = open_audit(self.audit_target)
                store.drop()
                store.close()
            except Exception as err:  # noqa: BLE001 - teardown: say so, do not hide the run's result
                self.log(f"could not drop the soak's audit tables {self.pg_prefix}*: {err}")

    # -- counting ----------------------------------------------------------------------------------------
    def produced_ids(self) -> set[str]:
        ids: set[str] = set()
        for f in (self.wd / "produced").glob("*.produced"):
            for line in f.read_text().splitlines():
                if READ_ID_RE.match(line):
                    ids.add(line)
        return ids

    def _ids(self, agency: str) -> set[str]:
        out = set()
        for _t, _topic, payload in self.agencies[agency].snapshot():
            try:
                out.add(json.loads(payload)["read"]["read_id"])
            except (ValueError, KeyError, TypeError):
                pass
        return out

    def left_in_outboxes(self) -> int:
        left = 0
        for f in (self.wd / "outbox").glob("*.db"):
            c = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
            try:
                left += c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            finally:
                c.close()
        return left

    def audit_counts(self) -> dict:
        from edge.policy.audit import open_audit

        store = open_audit(self.audit_target)
        try:
            v = store.verify()
            rows = [(r["read_id"], r["outcome"]) for r in store.records()]
        finally:
            store.close()
        return {"ok": v.ok, "records": v.records, "problems": v.problems[:5],
                "decided_ids": {r for r, o in rows if o == "decided" and r is not None},
                "rejected": sum(1 for _r, o in rows if o == "rejected")}

    def result(self, produced: set[str], produce_end: float, summaries: list[dict]) -> dict:
        import numpy as np

        cfg = self.cfg
        deliveries = []  # (captured, received) per delivery to an allowed agency
        per_agency = {}
        lost = leaked = duplicates = 0
        inbox_lost = inbox_dup = 0
        unlogged: set[str] = set()
        dup_at: list[float] = []  # when duplicates arrived (s into the run): which fault caused them
        trace = open(self.wd / "deliveries.tsv", "w")  # agency, received, captured, read id: for post-mortems
        for a in ALLOWED:
            seen: dict[str, int] = {}
            for t, topic, payload in self.agencies[a].snapshot():
                if topic != f"alpr/share/{a}/reads":
                    leaked += 1
                    continue
                msg = json.loads(payload)
                rid = msg["read"]["read_id"]
                seen[rid] = seen.get(rid, 0) + 1
                if seen[rid] > 1 and len(dup_at) < 50:
                    dup_at.append(round(t - self.t0_wall, 2))
                cap = datetime.fromisoformat(msg["read"]["captured_at"].replace("Z", "+00:00")).timestamp()
                deliveries.append((cap, t))
                trace.write(f"{a}\t{t - self.t0_wall:.3f}\t{cap - self.t0_wall:.3f}\t{rid}\n")
            dup = sum(n - 1 for n in seen.values())
            missing = produced - set(seen)
            unlogged |= set(seen) - produced
            per_agency[a] = {"received": sum(seen.values()), "unique": len(seen), "lost": len(missing),
                             "duplicates": dup}
            rx = self.receivers.get(a)
            if rx is not None:  # the agency's inbox: rows, reads missing from it, deliveries it stored once
                ids = rx.inbox.read_ids()
                per_agency[a]["inbox"] = {"rows": len(ids), "unique": len(set(ids)), "missing": len(produced - set(ids)),
                                          **{k: v for k, v in rx.snapshot().items() if k != "stored"}}
                inbox_lost += len(produced - set(ids))
                inbox_dup += len(ids) - len(set(ids))
            lost += len(missing)
            duplicates += dup
        trace.close()
        for a in REFUSED:
            n = len(self.agencies[a].snapshot())
            per_agency[a] = {"received": n}
            leaked += n
        # Outage windows: from the fault until the backlog of reads captured before recovery is delivered.
        windows = []
        for o in self.outages:
            before = [r for c, r in deliveries if c < o["restored"]]
            end = max([o["restored"], *[r for r in before if r >= o["start"]]])
            windows.append((o["start"], end))
            o["window_s"] = round(end - o["start"], 2)
        lat = np.array([(r - c) * 1000 for c, r in deliveries]) if deliveries else np.zeros(0)
        outside = np.array([(r - c) * 1000 for c, r in deliveries
                            if not any(c <= e and r >= s for s, e in windows)]) if deliveries else np.zeros(0)

        def pct(a, q):
            return round(float(np.percentile(a, q)), 1) if len(a) else None

        audit = self.audit_counts()
        mem = {}
        growth_total = 0.0
        growth_known = False
        for name, samples in self.mem.items():
            # The longest-lived incarnation (a restarted process starts its growth curve again).
            pids = {pid for _t, _v, pid in samples}
            longest = max(pids, key=lambda p: sum(1 for _t, _v, q in samples if q == p))
            seg = [(t, v) for t, v, pid in samples if pid == longest]
            seg = [(t, v) for t, v in seg if t >= seg[0][0] + min(30.0, cfg.seconds / 10)] or seg
            slope = _slope_per_h(seg)
            mem[name] = {"rss_mb_first": round(samples[0][1], 1), "rss_mb_last": round(samples[-1][1], 1),
                         "growth_mb_per_h": None if slope is None else round(slope, 2),
                         "span_s": round(seg[-1][0] - seg[0][0], 1)}
            if slope is not None and name != "harness":  # the harness keeps every message it counts, by design
                growth_total += slope
                growth_known = True
        duration = produce_end - self.t0_wall
        unique_delivered = len(self._ids(ALLOWED[0]) & produced)
        return {
            "cameras": cfg.cameras, "rate_per_camera": cfg.rate, "seconds": round(duration, 1),
            "faults": [{k: v for k, v in o.items() if k not in ("start", "restored")} for o in self.outages],
            "produced": len(produced),
            "acknowledged": len(produced) - self.left_in_outboxes(),
            "audited": len(audit["decided_ids"] & produced),
            "forwarded": sum(per_agency[a]["unique"] for a in ALLOWED),
            "reads_per_s": round(unique_delivered / duration, 2) if duration > 0 else None,
            "lost": lost, "leaked": leaked, "duplicates": duplicates, "duplicates_at_s": sorted(dup_at),
            # The same, counted in each allowed agency's inbox (`alpr-edge agency receive`).
            "inbox_lost": inbox_lost, "inbox_duplicates": inbox_dup,
            "not_audited": len(produced - audit["decided_ids"]),
            "unlogged": len(unlogged),  # stored by a camera killed before it logged the id: delivered, not lost
            "unexpected_exits": self.unexpected_exits,
            "audit_ok": audit["ok"], "audit_records": audit["records"], "audit_problems": audit["problems"],
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": pct(lat, 100),
            "p99_ms_outside_outage": pct(outside, 99), "deliveries_outside_outage": int(len(outside)),
            "mem_growth_mb_per_h": round(growth_total, 2) if growth_known else None,
            "memory": mem, "per_agency": per_agency,
            "camera_workers": summaries,
        }


def run_soak(config: SoakConfig, workdir: str | os.PathLike | None = None, log=print) -> dict:
    """Run a soak; return the figures (the same dict `--json` prints)."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="alpr-soak-")
        workdir = tmp.name
    soak = Soak(config, Path(workdir), log=log)
    try:
        result = soak.run()
    finally:
        soak.stop()
        if tmp is not None:
            tmp.cleanup()
    return result


def _soak_cli(args) -> int:
    from edge.bench.report import machine_info, print_json_last, print_table

    cfg = SoakConfig(cameras=args.cameras, seconds=args.minutes * 60, rate=args.rate,
                     broker_restart_at=args.broker_restart_at, broker_kill=args.broker_kill,
                     broker_save_every_change=args.broker_save_every_change, audit_dsn=args.audit,
                     gate_kill_at=args.gate_kill_at, edge_kill_at=args.edge_kill_at, outage_s=args.outage_s,
                     camera_procs=args.camera_procs)
    # Refused in one line before anything starts (the CLI's handler: `alpr-edge bench soak: error: ...`).
    if cfg.cameras < 1 or not 0 < cfg.rate < math.inf or not 0 < cfg.seconds < math.inf:
        raise SystemExit("bench soak: --cameras, --rate and --minutes must be positive")
    if cfg.camera_procs < 1:  # no worker: nothing produced, and "0 lost" would pass a run that tested nothing
        raise SystemExit(f"bench soak: --camera-procs must be at least 1, got {cfg.camera_procs}")
    if not 0 <= cfg.outage_s < math.inf:  # found only at the first fault, mid-run
        raise SystemExit(f"bench soak: --outage-s must be 0 or more seconds, got {cfg.outage_s:g}")
    for flag, times in (("--broker-restart-at", cfg.broker_restart_at), ("--gate-kill-at", cfg.gate_kill_at),
                        ("--edge-kill-at", cfg.edge_kill_at)):
        outside = [t for t in times if not 0 < t < cfg.seconds]
        if outside:  # a fault that would never happen: the run would claim a resilience it did not test
            raise SystemExit(f"bench soak: {flag} {outside[0]:g}: must fall inside the run (0 < S < {cfg.seconds:g} s, "
                             f"--minutes {args.minutes:g})")
    if cfg.audit_dsn and not cfg.audit_dsn.startswith(("postgresql://", "postgres://")):
        raise SystemExit(f"bench soak: --audit {cfg.audit_dsn!r}: a postgresql:// DSN (the soak keeps SQLite in its "
                         "work directory without it)")
    r = run_soak(cfg, args.workdir, log=lambda m: print(m, file=sys.stderr, flush=True))
    rows = [(k, r[k]) for k in ("cameras", "seconds", "produced", "acknowledged", "audited", "forwarded",
                                "reads_per_s", "lost", "leaked", "duplicates", "inbox_lost", "inbox_duplicates",
                                "not_audited", "audit_ok",
                                "p50_ms", "p99_ms", "p99_ms_outside_outage", "max_ms", "mem_growth_mb_per_h")]
    rows += [(f"fault {f['kind']} at {f['at_s']} s", f"window {f.get('window_s')} s") for f in r["faults"]]
    print_table(f"bench soak: {cfg.cameras} cameras x {cfg.rate}/s for {cfg.seconds / 60:g} min", ["figure", "value"], rows)
    if args.json:
        print_json_last({**r, "config": asdict(cfg), "machine": machine_info()})
    ok = (r["lost"] == 0 and r["leaked"] == 0 and r["audit_ok"] and r["not_audited"] == 0 and not r["unexpected_exits"]
          and r["inbox_lost"] == 0 and r["inbox_duplicates"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(_worker_main(sys.argv[2]))
    print("usage: python -m edge.bench.soak worker CONFIG.json (started by `alpr-edge bench soak`)", file=sys.stderr)
    sys.exit(2)
