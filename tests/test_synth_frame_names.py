"""synth scene --frames-every: a scenario name that is no file name, and image writes that fail.

A scenario named "lot b/entry" had its frames written as frames/lot b/entry-0-000000.jpg, in a
folder that does not exist: cv2.imwrite returns False rather than raising, so nothing was written,
nothing was said, and labels.csv named files that were not there.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from edge.synth.scene import _imwrite, file_stem, parse_scenario, render_scene_to_dir


@pytest.mark.parametrize("name, stem", [("lot b/entry", "lot_b_entry"), ("../up", "up"), ("café:1", "caf_1"),
                                        ("", "scenario"), ("city-intersection", "city-intersection")])
def test_file_stem(name, stem):
    assert file_stem(name) == stem


def test_every_labelled_frame_is_on_disk(tmp_path):
    s = parse_scenario({"name": "lot b/entry", "seed": 2, "duration_s": 2,
                        "camera": {"width": 640, "height": 360, "fps": 5, "mount_height_m": 1.6,
                                   "distance_to_lane_m": 2.6, "horizontal_angle_deg": 14, "vertical_angle_deg": 5,
                                   "hfov_deg": 28, "timestamp_overlay": False},
                        "traffic": {"vehicles_per_minute": 120, "speed_kmh": [10, 15]}})
    summary = render_scene_to_dir(s, tmp_path, container="avi", frames_every=1, min_plate_px=8)
    frames = tmp_path / "frames"
    with open(frames / "labels.csv", newline="") as fh:
        names = {row["file"] for row in csv.DictReader(fh)}
    assert len(names) == summary["frames"]
    assert all((frames / n).is_file() for n in names) and all(n.startswith("lot_b_entry-2-") for n in names)


def test_a_failed_image_write_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(OSError, match="cannot write .*missing"):
        _imwrite(tmp_path / "missing" / "x.jpg", np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_min_plate_px_must_be_a_width(tmp_path, capsys, value):
    """--min-plate-px nan compared false with every plate: frames/labels.csv labelled none, silently."""
    from pathlib import Path

    from edge.cli import main

    scenario = Path(__file__).resolve().parents[1] / "examples" / "scenarios" / "parking_entrance.yaml"
    assert main(["synth", "scene", str(scenario), "--out", str(tmp_path / "o"),
                 "--frames-every", "5", f"--min-plate-px={value}"]) == 2
    assert "--min-plate-px must be a width in pixels >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
