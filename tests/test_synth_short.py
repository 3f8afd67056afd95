"""A scene shorter than a frame still renders one frame (it rendered none: an empty, unreadable video)."""

from __future__ import annotations

import cv2
import pytest

from edge.synth.scene import iter_scene_frames, parse_scenario, render_scene_to_dir

SMALL = {
    "name": "short",
    "seed": 4,
    "camera": {"width": 320, "height": 240, "fps": 15, "hfov_deg": 30},
    "traffic": {"vehicles_per_minute": 60},
    "weather": {"noise_sigma": 0},
}


@pytest.mark.parametrize("duration", [0.01, 0.03])  # under half a frame at 15 fps
def test_a_duration_under_one_frame_renders_one_frame(duration):
    scenario = parse_scenario({**SMALL, "duration_s": duration})
    frames = [f for f, _ in iter_scene_frames(scenario, seed=1)]
    assert len(frames) == 1 and frames[0].shape == (240, 320, 3)


def test_short_scene_writes_a_readable_video(tmp_path):
    summary = render_scene_to_dir(parse_scenario({**SMALL, "duration_s": 0.02}), tmp_path, container="avi")
    assert summary["frames"] == len((tmp_path / "ground_truth.jsonl").read_text().splitlines()) == 1
    ok, frame = cv2.VideoCapture(str(summary["video"])).read()
    assert ok and frame.shape == (240, 320, 3)
