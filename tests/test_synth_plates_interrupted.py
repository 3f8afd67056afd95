"""An interrupted `synth plates` (Ctrl-C, kill, even SIGKILL) leaves a labels.csv listing exactly the
crops it wrote (it wrote labels.csv only at the end: PNGs without labels), and `--resume` renders
the rest as the uninterrupted run would have, byte for byte."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap

import cv2
import pytest

import edge.synth.commands as synth_commands
from edge import cli

SMALL = ["--count", "250", "--size", "16x32"]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setattr(synth_commands, "PLATES_BATCH", 100, raising=False)  # three checkpoints in 250 crops


def _listed(out):
    with open(out / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_consistent(out):
    rows = _listed(out)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert sorted(r["file"] for r in rows) == pngs  # every crop labelled, every label a crop
    return rows


def _assert_same_output(a, b):
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    for row in _listed(a):
        assert (a / row["file"]).read_bytes() == (b / row["file"]).read_bytes(), row["file"]
    assert not (b / synth_commands.PLATES_PROGRESS_NAME).exists()


def test_ctrl_c_leaves_labelled_crops_and_resume_finishes_them(tmp_path, monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli.main(["synth", "plates", *SMALL, "--out", str(whole)]) == 0

    write = cv2.imwrite
    written = []

    def interrupted_at_crop_150(path, *args):
        if len(written) == 150:
            raise KeyboardInterrupt
        written.append(path)
        return write(path, *args)

    monkeypatch.setattr(cv2, "imwrite", interrupted_at_crop_150)
    assert cli.main(["synth", "plates", *SMALL, "--out", str(cut)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert len(_assert_consistent(cut)) == 150
    monkeypatch.setattr(cv2, "imwrite", write)

    assert cli.main(["synth", "plates", *SMALL, "--out", str(cut), "--resume", "--json"]) == 0
    assert '"resumed_at": 100' in capsys.readouterr().out  # from the last checkpoint: 50 crops again
    _assert_same_output(whole, cut)
    assert cli.main(["synth", "plates", *SMALL, "--out", str(cut), "--resume"]) == 0  # done: nothing to do
    assert "nothing to resume" in capsys.readouterr().out
    _assert_same_output(whole, cut)


def test_sigkill_leaves_labelled_crops_and_resume_finishes_them(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli.main(["synth", "plates", *SMALL, "--out", str(whole)]) == 0
    killed_at_crop_170 = textwrap.dedent(f"""
        import os, signal, cv2
        import edge.synth.commands as synth_commands
        from edge import cli
        synth_commands.PLATES_BATCH = 100
        write, written = cv2.imwrite, []
        def imwrite(path, *args):
            if len(written) == 170:
                os.kill(os.getpid(), signal.SIGKILL)
            written.append(path)
            return write(path, *args)
        cv2.imwrite = imwrite
        cli.main(["synth", "plates", {", ".join(repr(a) for a in SMALL)}, "--out", {str(cut)!r}])
    """)
    r = subprocess.run([sys.executable, "-c", killed_at_crop_170], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert len(_assert_consistent(cut)) == 170
    assert cli.main(["synth", "plates", *SMALL, "--out", str(cut), "--resume"]) == 0
    _assert_same_output(whole, cut)


def test_resume_with_other_options_is_refused_naming_the_option(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(cv2, "imwrite", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt)
                        if len(list(out.glob("*.png"))) >= 120 else _real_imwrite(*a))
    assert cli.main(["synth", "plates", *SMALL, "--out", str(out)]) == 130
    capsys.readouterr()
    monkeypatch.setattr(cv2, "imwrite", _real_imwrite)
    assert cli.main(["synth", "plates", *SMALL, "--seed", "3", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--seed is 3 here, 0 in the interrupted run" in err and "without --resume" in err
    assert len(_assert_consistent(out)) == 120  # nothing touched
    # without --resume: starts over, whatever was there
    assert cli.main(["synth", "plates", *SMALL, "--seed", "3", "--out", str(out)]) == 0
    assert len(_listed(out)) == 250


def test_resume_where_no_run_was_interrupted_says_so(tmp_path, capsys):
    assert cli.main(["synth", "plates", *SMALL, "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no interrupted run" in capsys.readouterr().err
    assert cli.main(["synth", "plates", "--count", "20", "--size", "16x32", "--out", str(tmp_path / "done")]) == 0
    assert cli.main(["synth", "plates", *SMALL, "--out", str(tmp_path / "done"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "lists 20 crops, --count is 250" in err


_real_imwrite = cv2.imwrite


def test_an_interrupted_scene_keeps_a_video_its_ground_truth_and_labels_agree_with(tmp_path, monkeypatch, capsys):
    """synth scene wrote frames/labels.csv and crops/labels.csv only at the end (JPEGs and crops
    without labels) and did not close the video on Ctrl-C."""
    import json

    import yaml

    from edge.synth.scene import SceneRenderer

    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "small", "seed": 4, "duration_s": 4.0,
        "camera": {"width": 320, "height": 180, "fps": 5, "mount_height_m": 3.0, "distance_to_lane_m": 3.0,
                   "horizontal_angle_deg": 12, "vertical_angle_deg": 8, "hfov_deg": 24, "shutter_s": 0.00001,
                   "timestamp_overlay": False},
        "traffic": {"vehicles_per_minute": 240, "speed_kmh": [20, 30], "lanes": 2, "direction": "both"},
        "weather": {"noise_sigma": 0},
    }))
    render = SceneRenderer.render_frame

    def interrupted_at_frame_13(self, i):
        if i == 13:
            raise KeyboardInterrupt
        return render(self, i)

    monkeypatch.setattr(SceneRenderer, "render_frame", interrupted_at_frame_13)
    out = tmp_path / "out"
    assert cli.main(["synth", "scene", str(scenario), "--out", str(out), "--frames-every", "2",
                     "--min-plate-px", "0"]) == 130
    assert "interrupted after 13 of 20 frames" in capsys.readouterr().err
    video = cv2.VideoCapture(str(out / "video.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 13 and video.read()[0]  # closed: readable
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert [t["frame"] for t in truth] == list(range(13))
    for folder, suffix in (("frames", "*.jpg"), ("crops", "*.png")):
        with open(out / folder / "labels.csv", newline="") as f:
            listed = {row["file"] for row in csv.DictReader(f)}
        assert listed == {p.name for p in (out / folder).glob(suffix)}, folder
    assert len(list((out / "frames").glob("*.jpg"))) == 7 and list((out / "crops").glob("*.png"))
    assert json.loads((out / "scenario.json").read_text())["seed"] == 4


def test_resume_names_a_labelled_crop_that_went_missing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(cv2, "imwrite", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt)
                        if len(list(out.glob("*.png"))) >= 120 else _real_imwrite(*a))
    assert cli.main(["synth", "plates", *SMALL, "--out", str(out)]) == 130
    monkeypatch.setattr(cv2, "imwrite", _real_imwrite)
    gone = _listed(out)[7]["file"]
    (out / gone).unlink()
    capsys.readouterr()
    assert cli.main(["synth", "plates", *SMALL, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"({gone} listed but missing)" in err and "run without --resume to start over" in err
