"""The demo's HTML report is self-contained and renders in headless Chromium."""

import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest

from edge.demo.report import AgencyRow, DemoReport, SampleFrame, TimelineEvent, render_html, write_report


def _report(audit_ok=True, leaks=0):
    t0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    frame = np.full((360, 640, 3), 90, np.uint8)
    cv2.rectangle(frame, (300, 200), (380, 240), (255, 255, 255), -1)
    return DemoReport(
        title="alpr-edge demo",
        policy="ca-sb34",
        started_at=t0,
        finished_at=t0 + timedelta(seconds=30),
        broker="embedded amqtt 127.0.0.1:18830",
        reads_published=3,
        leaks=leaks,
        audit_verified=audit_ok,
        audit_records=15,
        audit_detail="15 records, chain intact",
        agencies=[
            AgencyRow("sac-pd", "Sacramento Police", "local", "CA", 3, 0, ("allow:ca-public",), 3),
            AgencyRow("ice", "Immigration and Customs Enforcement", "federal", "US", 0, 3, ("deny:federal",), 0),
        ],
        samples=[SampleFrame("cam-1", frame, np.array([[300, 200, 380, 240]]), ["7ABC123 0.98"])],
        timeline=[
            TimelineEvent(t0 + timedelta(seconds=i), "cam-1", "7ABC12" + str(i), ("sac-pd",), ("ice",))
            for i in range(3)
        ],
    )


def test_html_is_self_contained_and_escaped():
    r = _report()
    r.agencies.append(AgencyRow("x", "<script>alert(1)</script>", "private", "CA", 0, 1, ("deny:private",)))
    text = render_html(r)
    assert "<script>alert(1)" not in text
    # no network: no external src/href at all
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert text.count("data:image/jpeg;base64,") == 1
    assert "deny:federal" in text and "chain intact" in text


def test_failed_audit_and_leaks_are_shown_as_failures():
    text = render_html(_report(audit_ok=False, leaks=2))
    assert 'class="bad">FAILED' in text
    assert 'class="bad">2<' in text


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed (scripts/test installs it)")
def test_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    write_report(_report(), str(page))
    flags = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Sacramento Police" in dom.stdout and 'id="decisions"' in dom.stdout
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        flags + ["--window-size=1200,1400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == 1200
    # the page drew something: not one flat colour, and the green sample-box pixels are there
    assert img.std() > 10
    green = (img[:, :, 1] > 200) & (img[:, :, 0] < 80) & (img[:, :, 2] < 80)
    assert green.sum() > 50


@pytest.mark.parametrize("report", ["missing-folder/r.html", "."])
def test_a_report_that_cannot_be_written_is_refused_before_the_demo_runs(tmp_path, capsys, monkeypatch, report):
    from edge.cli import main

    ran = []
    monkeypatch.setattr("edge.demo.run.run_demo", lambda *a, **k: ran.append(1))
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--synthetic-reads", "3", "--report", report]) == 2
    err = capsys.readouterr().err
    assert f"alpr-edge demo: error: --report {report}: " in err and "Traceback" not in err
    assert not ran  # refused up front, not after the whole demo
    assert list(tmp_path.iterdir()) == []  # and nothing left behind


def test_a_writable_report_path_is_not_left_behind_by_the_check(tmp_path, capsys, monkeypatch):
    from edge.cli import main

    monkeypatch.setattr("edge.demo.run.run_demo", lambda *a, **k: (_ for _ in ()).throw(ValueError("stop here")))
    assert main(["demo", "--synthetic-reads", "3", "--report", str(tmp_path / "r.html")]) == 2
    assert "stop here" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()  # the write check made no empty report


def test_negative_synthetic_reads_are_refused(capsys):
    from edge.cli import main

    assert main(["demo", "--synthetic-reads", "-3"]) == 2
    assert "--synthetic-reads must be 0 or more, got -3" in capsys.readouterr().err
