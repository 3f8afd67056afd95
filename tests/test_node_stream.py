"""`alpr-edge run` on a recording served over HTTP reads what it reads from the file itself: every
frame once, the same reads, and it ends (a recording's end is not a dropped camera to reconnect to)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from media_server import MediaServer, send_body

pytest.importorskip("edge.synth.scene")

ROOT = Path(__file__).resolve().parents[1]


def run_json(*args, timeout=180):
    r = subprocess.run([sys.executable, "-m", "edge.cli", "run", *args, "--json"], capture_output=True, text=True,
                       timeout=timeout)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def published_plates(out_dir):
    import sqlite3

    db = sqlite3.connect(f"file:{out_dir}/outbox.db?mode=ro", uri=True)
    try:
        return sorted(json.loads(row[0])["plate"] for row in db.execute("SELECT payload FROM outbox"))
    finally:
        db.close()


def test_run_on_a_recording_over_http_matches_the_file(tmp_path):
    from edge.cli import main

    scene = tmp_path / "scene"
    assert main(["synth", "scene", str(ROOT / "examples" / "scenarios" / "parking_entrance.yaml"), "--out", str(scene),
                 "--duration", "6", "--format", "avi"]) == 0  # fmt: skip
    video = scene / "video.avi"
    data = video.read_bytes()
    common = ["--camera-id", "cam-1", "--agency-id", "sac-pd", "--no-crops"]
    from_file, _ = run_json("--source", str(video), "--output-dir", str(tmp_path / "file"), *common)
    with MediaServer({"/video.avi": lambda req, n: send_body(req, data)}) as server:
        over_http, log = run_json("--source", server.url + "/video.avi", "--output-dir", str(tmp_path / "http"), *common)
        assert server.gets["/video.avi"] == 1  # read once, never replayed from the start
    assert from_file["frames"] == over_http["frames"] == 90 and over_http["source_skipped"] == 0
    assert from_file["reads"] >= 1 and over_http["reads"] == from_file["reads"]
    assert published_plates(tmp_path / "http") == published_plates(tmp_path / "file")
    assert "recording http://127.0.0.1" in log  # named as a recording, not a live stream
