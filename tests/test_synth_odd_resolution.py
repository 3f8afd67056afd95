"""A scene with an odd width or height: the video used to lose a column/row the ground truth kept.

Now refused by field name before anything is rendered (synth scene, bench placement, and
render_scene_to_dir from Python); an even size renders a video of exactly the scenario's size.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest
import yaml

from edge.bench.placement import PlacementError, settings
from edge.synth.scene import ScenarioError, parse_scenario, render_scene_to_dir

SMALL = {
    "name": "odd",
    "seed": 1,
    "duration_s": 0.2,
    "camera": {"width": 320, "height": 180, "fps": 10, "timestamp_overlay": False},
    "traffic": {"vehicles_per_minute": 0},
}


def _scenario(width, height):
    data = {**SMALL, "camera": {**SMALL["camera"], "width": width, "height": height}}
    return parse_scenario(data)


@pytest.mark.parametrize("width, height, field", [(321, 180, "camera.width"), (320, 181, "camera.height")])
def test_odd_size_is_refused_by_field_before_rendering(tmp_path, width, height, field):
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.") + r".*odd"):
        render_scene_to_dir(_scenario(width, height), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_even_size_video_matches_the_scenario(tmp_path):
    summary = render_scene_to_dir(_scenario(322, 182), tmp_path)
    cap = cv2.VideoCapture(summary["video"])
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == (182, 322)


def test_synth_scene_cli_names_the_field(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "camera": {**SMALL["camera"], "width": 321}}))
    p = subprocess.run([sys.executable, "-m", "edge.cli", "synth", "scene", str(path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "camera.width: 321 is odd" in p.stderr and "320 or 322" in p.stderr
    assert not (tmp_path / "o").exists()


def test_placement_refuses_an_odd_varied_width():
    with pytest.raises(PlacementError, match=r"camera\.width=641.*odd"):
        settings(_scenario(320, 180), [(("camera", "width"), [641])], None)
