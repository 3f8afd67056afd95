"""Synthetic scenes: scenario validation, ground truth where the plate really is, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.synth.scene import (
    SceneRenderer,
    ScenarioError,
    iter_scene_frames,
    load_scenario,
    parse_scenario,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "scenarios").glob("*.yaml"))

SMALL = {
    "name": "test",
    "seed": 4,
    "duration_s": 3.0,
    "camera": {"width": 640, "height": 360, "fps": 5, "mount_height_m": 3.0, "distance_to_lane_m": 3.0,
               "horizontal_angle_deg": 12, "vertical_angle_deg": 8, "hfov_deg": 24, "shutter_s": 0.00001,
               "timestamp_overlay": False},
    "traffic": {"vehicles_per_minute": 120, "speed_kmh": [40, 50], "lanes": 2, "direction": "both"},
    "scene": {"kind": "city", "clutter": 0.3},
    "weather": {"noise_sigma": 0},
}


def test_example_scenarios_validate():
    names = {p.stem for p in EXAMPLES}
    assert {"city_intersection", "highway_gantry", "parking_entrance", "night_ir"} <= names
    for p in EXAMPLES:
        s = load_scenario(p)
        assert s.duration_s > 0 and s.camera.focal_px > 0


@pytest.mark.parametrize(
    "data, field",
    [
        ({"camera": {"fps": 0}}, "camera.fps"),
        ({"camera": {"fpz": 10}}, "camera.fpz"),
        ({"traffic": {"speed_kmh": [50, 20]}}, "traffic.speed_kmh"),
        ({"traffic": {"states": ["ca", "xx"]}}, "traffic.states"),
        ({"lighting": {"mode": "noon"}}, "lighting.mode"),
        ({"camera": {"hfov_deg": 30, "focal_length_mm": 8}}, "camera"),
        ({"duration_s": -1}, "duration_s"),
    ],
)
def test_validation_errors_name_the_field(data, field):
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
        parse_scenario(data, source="x.yaml")


def test_bad_yaml_file_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("camera: [1, 2\n")
    with pytest.raises(ScenarioError, match="bad.yaml"):
        load_scenario(p)


def _magenta(renderer: SceneRenderer) -> None:
    for v in renderer.vehicles:
        if v.plate_img is not None:
            v.plate_img = np.zeros_like(v.plate_img)
            v.plate_img[:] = (255, 0, 255)


def test_ground_truth_is_where_the_plate_really_is():
    """Plates painted a colour nothing else has: the magenta pixels must sit inside each reported box."""
    r = SceneRenderer(parse_scenario(SMALL))
    _magenta(r)
    checked = 0
    for i in range(r.frames):
        frame, truths = r.render_frame(i)
        m = (frame[:, :, 0] > 200) & (frame[:, :, 1] < 70) & (frame[:, :, 2] > 200)
        claimed = np.zeros_like(m)
        for tr in truths:
            x0, y0, x1, y1 = tr.tight_box
            xi0, yi0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
            xi1, yi1 = int(np.ceil(x1)) + 2, int(np.ceil(y1)) + 2
            claimed[yi0:yi1, xi0:xi1] = True
            bx = tr.box
            assert bx[2] - bx[0] == pytest.approx(2 * (bx[3] - bx[1]), abs=0.05)  # rounded to 0.01 px
            assert bx[0] <= x0 + 0.01 and bx[2] >= x1 - 0.01 and bx[1] <= y0 + 0.01 and bx[3] >= y1 - 0.01
            if tr.visibility < 1.0 or tr.width_px < 14:
                continue
            ys, xs = np.nonzero(m[yi0:yi1, xi0:xi1])
            assert len(xs) > 0.5 * (x1 - x0) * (y1 - y0), (i, tr)
            assert abs(xi0 + xs.min() - x0) <= 2.5 and abs(xi0 + xs.max() - x1) <= 2.5, (i, tr)
            assert abs(yi0 + ys.min() - y0) <= 2.5 and abs(yi0 + ys.max() - y1) <= 2.5, (i, tr)
            assert len(tr.plate) >= 2 and tr.plate.isalnum() and tr.state
            checked += 1
        # and no visible plate is missing from the truth (beyond tiny fringes of hidden ones); plates cut
        # by the frame edge are reported only when at least half of them is inside
        n, lab, stats, _ = cv2.connectedComponentsWithStats((m & ~claimed).astype(np.uint8), connectivity=8)
        H, W = m.shape
        inner = [k for k in range(1, n) if stats[k, 0] > 0 and stats[k, 1] > 0
                 and stats[k, 0] + stats[k, 2] < W and stats[k, 1] + stats[k, 3] < H]
        assert sum(stats[k, cv2.CC_STAT_AREA] for k in inner) <= 30, i
    assert checked >= 3


def test_scene_renders_deterministically_for_a_seed():
    s = parse_scenario(SMALL)
    a = [f for _, f in zip(range(4), iter_scene_frames(s, seed=9))]
    b = [f for _, f in zip(range(4), iter_scene_frames(s, seed=9))]
    c = [f for _, f in zip(range(4), iter_scene_frames(s, seed=10))]
    for (fa, ta), (fb, tb) in zip(a, b):
        assert np.array_equal(fa, fb)
        assert [t.to_dict() for t in ta] == [t.to_dict() for t in tb]
    assert any(not np.array_equal(fa, fc) for (fa, _), (fc, _) in zip(a, c))
    assert a[0][0].shape == (360, 640, 3) and a[0][0].dtype == np.uint8


def test_night_ir_is_monochrome_with_bright_plates():
    data = {**SMALL, "lighting": {"mode": "night", "ir": True}}
    r = SceneRenderer(parse_scenario(data))
    for i in range(r.frames):
        frame, truths = r.render_frame(i)
        assert np.array_equal(frame[:, :, 0], frame[:, :, 2])
        big = [t for t in truths if t.width_px > 20 and t.visibility == 1.0]
        if big:
            x0, y0, x1, y1 = (int(v) for v in big[0].tight_box)
            assert frame[y0:y1, x0:x1].mean() > frame.mean() + 20  # retro-reflective plate glows
            return
    pytest.fail("no plate large enough in view")


def test_cli_writes_video_and_ground_truth(tmp_path, capsys):
    from edge.cli import main

    import yaml

    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump({**SMALL, "duration_s": 2.0}))
    out = tmp_path / "out"
    assert main(["synth", "scene", str(scen), "--out", str(out), "--format", "avi", "--frames-every", "3",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 10 and Path(summary["video"]).is_file()
    lines = (out / "ground_truth.jsonl").read_text().splitlines()
    assert len(lines) == 10
    rec = [json.loads(x) for x in lines]
    assert [r["frame"] for r in rec] == list(range(10))
    assert sum(len(r["plates"]) for r in rec) == summary["plate_sightings"] > 0
    p = next(p for r in rec for p in r["plates"])
    assert {"vehicle_id", "plate", "state", "corners", "box"} <= set(p)
    cap = cv2.VideoCapture(str(out / "video.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10


@pytest.mark.parametrize(
    "extra",
    [
        {"scene": {"kind": "highway"}, "traffic": {"direction": "toward", "lanes": 3, "vehicles_per_minute": 90}},
        {"scene": {"kind": "parking"}, "traffic": {"stop_at_m": 12, "stop_s": 1, "vehicles_per_minute": 60}},
        {"lighting": {"mode": "dusk"}, "weather": {"rain": 0.5, "fog": 0.4, "noise_sigma": 4}},
        {"lighting": {"mode": "night", "ir": False}, "camera": {**SMALL["camera"], "focal_length_mm": 12,
                                                                  "hfov_deg": None, "focus_blur_px": 1.0}},
    ],
)
def test_scene_variants_render_with_ground_truth(extra):
    data = {**SMALL, **extra}
    if "traffic" in extra:
        data["traffic"] = {**SMALL["traffic"], **extra["traffic"]}
    r = SceneRenderer(parse_scenario(data))
    seen = 0
    for i in range(0, r.frames, 3):
        frame, truths = r.render_frame(i)
        assert frame.shape == (360, 640, 3)
        seen += len(truths)
        for t in truths:
            cx, cy = np.mean(t.corners, axis=0)  # a visible plate's centre is in the frame, in pixels
            assert 0 <= cx < 640 and 0 <= cy < 360 and len(t.corners) == 4
    assert seen > 0


def test_long_shutter_blurs_moving_plates():
    def plate_sharpness(shutter):
        data = {**SMALL, "camera": {**SMALL["camera"], "shutter_s": shutter}, "lighting": {"mode": "day"}}
        r = SceneRenderer(parse_scenario(data))
        grads = []
        for i in range(r.frames):
            frame, truths = r.render_frame(i)
            for t in truths:
                if t.width_px >= 25 and t.visibility == 1.0 and t.speed_kmh > 0:
                    x0, y0, x1, y1 = (int(v) for v in t.tight_box)
                    g = frame[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
                    grads.append(np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())
        assert grads
        return float(np.mean(grads))

    assert plate_sharpness(1 / 30) < 0.8 * plate_sharpness(1e-5)


def test_frames_folder_uses_the_real_frames_label_format(tmp_path):
    import csv

    from edge.synth.scene import render_scene_to_dir

    s = parse_scenario({**SMALL, "duration_s": 2.0})
    summary = render_scene_to_dir(s, tmp_path, container="avi", frames_every=2, min_plate_px=10)
    rows = list(csv.DictReader(open(tmp_path / "frames" / "labels.csv")))
    assert summary["frame_labels"] == len(rows) > 0
    assert list(rows[0]) == ["file", "x", "y", "w", "h", "plate"]
    gt = [json.loads(x) for x in (tmp_path / "ground_truth.jsonl").read_text().splitlines()]
    for r in rows:
        frame_no = int(r["file"].rsplit("-", 1)[1].split(".")[0])
        assert frame_no % 2 == 0 and (tmp_path / "frames" / r["file"]).is_file()
        w, h = int(r["w"]), int(r["h"])
        assert abs(w - 2 * h) <= 1  # 2:1 boxes like the real labels
        match = [p for p in gt[frame_no]["plates"] if p["plate"] == r["plate"]]
        assert match and abs(match[0]["box"][0] - int(r["x"])) <= 1
    crops = list(csv.DictReader(open(tmp_path / "crops" / "labels.csv")))
    assert summary["crops"] == len(crops) > 0 and list(crops[0]) == ["file", "state", "plate"]
    for c in crops:
        img = cv2.imread(str(tmp_path / "crops" / c["file"]))
        assert img is not None and 1.5 <= img.shape[1] / img.shape[0] <= 2.5
        assert c["plate"] in {r["plate"] for r in rows}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_scenarios_render_at_low_resolution(path):
    s = load_scenario(path)
    small = s.model_copy(update={"camera": s.camera.model_copy(update={"width": 480, "height": 270})})
    r = SceneRenderer(small)
    sightings = sum(len(r.render_frame(i)[1]) for i in range(0, r.frames, max(1, r.frames // 10)))
    assert sightings > 0, "an example scenario should show plates"


def _scenario_data():
    from hypothesis import strategies as st

    leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=8), st.lists(st.integers(-5, 300), max_size=3))
    keys = st.sampled_from(["camera", "traffic", "lighting", "weather", "scene", "fps", "width", "speed_kmh",
                            "states", "mode", "ir", "duration_s", "seed", "hfov_deg", "lanes", "kind", "bogus"])
    return st.recursive(leaf, lambda inner: st.dictionaries(keys, inner, max_size=4), max_leaves=12)


def test_any_scenario_data_is_accepted_or_refused_with_scenario_error():
    from hypothesis import given, settings

    @settings(max_examples=150, deadline=None)
    @given(_scenario_data())
    def check(data):
        try:
            s = parse_scenario(data)
        except ScenarioError as err:
            assert str(err).startswith("scenario")
        else:
            assert s.camera.focal_px > 0 and s.duration_s > 0

    check()
