"""`alpr-edge sim` supervises its camera processes: a camera killed by a signal sim did not send is
reported at once and restarted; a Ctrl-C on the terminal (SIGINT to the whole process group) stops
every camera gracefully (one SIGTERM each, not two: two meant "stop now", exit 130, no summary);
and cameras whose sim was killed with SIGKILL stop by themselves instead of running on orphaned."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import TEST_REGISTRY

SOURCE = "synthetic:default?duration=600&width=320&height=180&fps=10"


def children(pid: int) -> dict[str, int]:
    """camera id -> pid of sim's `alpr-edge run` processes."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return {}
    out = {}
    for k in kids:
        try:
            cmd = Path(f"/proc/{k}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--camera-id" in cmd:
            out[cmd[cmd.index(b"--camera-id") + 1].decode()] = k
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(what, timeout_s: float, message: str):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(message)


def start_sim(tmp_path, mosquitto):
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(TEST_REGISTRY))
    err = open(tmp_path / "sim.stderr", "w")
    sim = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "sim", "--registry", str(tmp_path / "registry.yaml"),
         "--secrets", str(mosquitto.directory / "secrets"), "--cameras", "2", "--broker", mosquitto.url(),
         "--source", SOURCE, "--output-dir", str(tmp_path / "edge"), "--json", "--",
         "--vision", "labels", "--realtime", "--no-crops"],
        stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)  # fmt: skip
    err.close()
    # each camera connected: its process is up and taking frames
    wait_for(lambda: (tmp_path / "sim.stderr").read_text().count("connected to broker") >= 2, 60,
             "the cameras did not start")
    kids = children(sim.pid)
    assert set(kids) == {"cam-1", "cam-2"}
    return sim, kids


def test_a_killed_camera_is_restarted_and_ctrl_c_stops_every_camera_gracefully(tmp_path, mosquitto):
    sim, kids = start_sim(tmp_path, mosquitto)
    try:
        os.kill(kids["cam-2"], signal.SIGKILL)
        restarted = wait_for(lambda: children(sim.pid).get("cam-2") not in (None, kids["cam-2"]) and children(sim.pid),
                             20, "cam-2 was not restarted")
        log = (tmp_path / "sim.stderr").read_text()
        assert "camera cam-2 killed by SIGKILL" in log and "restarting it" in log
        # the cameras share sim's stderr: each of their lines names its camera
        connected = [line for line in log.splitlines() if "connected to broker" in line]
        assert sorted(line.split("] ")[0].rsplit("[", 1)[-1] for line in connected) == ["cam-1", "cam-2"]
        wait_for(lambda: (tmp_path / "sim.stderr").read_text().count("connected to broker") >= 3, 30,
                 "the restarted cam-2 did not connect")
        os.killpg(sim.pid, signal.SIGINT)  # a Ctrl-C on the terminal: the whole foreground group
        out, _ = sim.communicate(timeout=30)
    finally:
        if sim.poll() is None:
            os.killpg(sim.pid, signal.SIGKILL)
    assert sim.returncode == 0, (tmp_path / "sim.stderr").read_text()[-3000:]
    assert not any(alive(p) for p in [*kids.values(), *restarted.values()])
    summary = json.loads(out.strip().splitlines()[-1])["per_camera"]
    assert summary["cam-1"]["exit"] == summary["cam-2"]["exit"] == 0
    assert (summary["cam-2"]["restarts"], summary["cam-2"]["crashes"]) == (1, [-signal.SIGKILL])
    assert summary["cam-1"]["restarts"] == 0
    # each camera wrote its summary (before: exit 130 and none); every read stored is acked or waiting
    cam1 = summary["cam-1"]
    assert cam1["camera_id"] == "cam-1" and summary["cam-2"]["camera_id"] == "cam-2"
    assert cam1["reads"] == cam1["acked"] + cam1["outbox_waiting"]


def test_cameras_stop_when_sim_is_killed(tmp_path, mosquitto):
    sim, kids = start_sim(tmp_path, mosquitto)
    os.kill(sim.pid, signal.SIGKILL)
    sim.wait()
    try:
        wait_for(lambda: not any(alive(p) for p in kids.values()), 15, "the cameras ran on without their sim")
    finally:
        for p in kids.values():
            if alive(p):
                os.kill(p, signal.SIGKILL)
    assert (tmp_path / "sim.stderr").read_text().count("is gone: finishing the vehicles in view") == 2


def test_a_stale_parent_variable_does_not_stop_a_node(tmp_path):
    """ALPR_EDGE_PARENT_PID inherited from a shell (not set by this node's own sim) is not watched."""
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--camera-id", "cam-1", "--agency-id", "sac-pd", "--source",
         "synthetic:default?duration=2&width=320&height=180&fps=10", "--vision", "labels", "--realtime", "--no-crops",
         "--output-dir", str(tmp_path), "--json"],
        env={**os.environ, "ALPR_EDGE_PARENT_PID": "1"}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "is gone" not in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 20


def test_a_camera_crashing_at_every_start_is_left_stopped(monkeypatch, caplog):
    """Restarted after each crash, then left stopped after MAX_CRASHES_IN_A_ROW quick ones; sim exits 1
    (not 256 - 9), the other camera unaffected; an exit with a status is reported, not restarted."""
    from edge.cli import build_parser
    from edge.node import sim

    started = []

    class Proc:
        def __init__(self, cmd, **kw):
            self.cam = cmd[cmd.index("--camera-id") + 1]
            started.append(self.cam)
            self.returncode = {"cam-1": 0, "cam-2": -signal.SIGKILL, "cam-3": 3}[self.cam]

        def communicate(self):
            return json.dumps({"camera_id": self.cam, "reads": 2}) + "\n" if self.returncode >= 0 else "", None

        def poll(self):
            return self.returncode

    monkeypatch.setattr(sim.subprocess, "Popen", Proc)
    monkeypatch.setattr(sim, "RESTART_MAX_DELAY_S", 0.0)
    args = build_parser().parse_args(["sim", "--cameras", "3", "--agency-id", "a", "--broker", "mqtt://127.0.0.1:18999"])
    assert sim.run_sim(args) == 1
    assert started.count("cam-1") == 1 and started.count("cam-3") == 1
    assert started.count("cam-2") == sim.MAX_CRASHES_IN_A_ROW
    log = caplog.text
    assert f"camera cam-2 killed by SIGKILL, {sim.MAX_CRASHES_IN_A_ROW} times in a row" in log
    assert "camera cam-3 exited with status 3" in log and "not restarted" in log
