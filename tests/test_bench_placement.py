"""bench placement: settings parsed and validated before anything renders; each setting rendered,
run through the edge node and scored against its own ground truth; the baseline measured once."""

import json

import pytest
import yaml

from edge import cli
from edge.bench.placement import PlacementError, parse_vary, settings
from edge.synth.scene import parse_scenario

# the scene tests' small scenario (640x360, 5 fps, busy two-lane road)
from test_synth_scene import SMALL  # noqa: E402


@pytest.fixture
def scenario_file(tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(SMALL))
    return p


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_vary_values_are_read_as_yaml():
    assert parse_vary("camera.mount_height_m=3,6.5") == (("camera", "mount_height_m"), [3, 6.5])
    assert parse_vary("lighting.mode=day,night") == (("lighting", "mode"), ["day", "night"])
    assert parse_vary("traffic.speed_kmh=[[20, 30], [60, 80]]") == (("traffic", "speed_kmh"), [[20, 30], [60, 80]])
    for bad in ("camera.mount_height_m", "=3", "camera.mount_height_m=", "camera.mount_height_m=3,,4"):
        with pytest.raises(PlacementError, match="--vary"):
            parse_vary(bad)


def test_settings_are_the_baseline_then_the_grid_without_repeating_the_baseline():
    s = parse_scenario(SMALL)
    runs = settings(s, [parse_vary("camera.hfov_deg=24,40"), parse_vary("camera.mount_height_m=3,6")], duration=2.0)
    labels = [label for label, _ in runs]
    # hfov 24 + height 3 is the scenario as written: measured once, as the baseline
    assert labels == [{"camera.hfov_deg": 24, "camera.mount_height_m": 3},  # the baseline, with its own values
                      {"camera.hfov_deg": 24, "camera.mount_height_m": 6},
                      {"camera.hfov_deg": 40, "camera.mount_height_m": 3}, {"camera.hfov_deg": 40, "camera.mount_height_m": 6}]
    assert all(sc.duration_s == 2.0 for _, sc in runs)
    assert runs[3][1].camera.hfov_deg == 40 and runs[3][1].camera.mount_height_m == 6
    assert runs[3][1].traffic == s.traffic  # only what was varied changes


def test_without_vary_the_scenario_is_measured_once():
    assert [label for label, _ in settings(parse_scenario(SMALL), [], None)] == [{}]


def test_focal_length_replaces_the_field_of_view():
    s = parse_scenario(SMALL)
    (_, base), (label, sc) = settings(s, [parse_vary("camera.focal_length_mm=12")], None)
    assert sc.camera.focal_length_mm == 12 and sc.camera.hfov_deg is None and base.camera.hfov_deg == 24


@pytest.mark.parametrize(
    "vary, named",
    [
        ("camera.height_m=3", "camera has no field 'height_m'; known: "),
        ("lens.hfov_deg=3", "the scenario has no field 'lens'"),
        ("camera.mount_height_m=100", "camera.mount_height_m"),  # out of range: the scenario's own rule
        ("lighting.mode=noon", "lighting.mode"),
    ],
)
def test_a_bad_setting_is_named_before_anything_renders(scenario_file, monkeypatch, capsys, vary, named):
    def no_render(*a, **k):
        raise AssertionError("rendered although a setting was invalid")

    monkeypatch.setattr("edge.synth.scene.render_scene_to_dir", no_render)
    assert cli.main(["bench", "placement", str(scenario_file), "--vary", "camera.hfov_deg=30", "--vary", vary]) == 2
    err = capsys.readouterr().err
    assert "alpr-edge bench placement: error: " in err and named in err


def test_each_setting_is_rendered_run_and_scored(scenario_file, tmp_path, capsys):
    """Ground-truth vision (the geometry alone): a wider field of view makes the same vehicles'
    plates smaller, and the same seed gives the same traffic in every setting."""
    keep = tmp_path / "runs"
    assert cli.main(["bench", "placement", str(scenario_file), "--vary", "camera.hfov_deg=12,60",
                     "--duration", "3", "--vision", "labels", "--keep", str(keep), "--json"]) == 0
    out = last_json(capsys)
    rows = out["settings"]
    assert [r["setting"] for r in rows] == [{"camera.hfov_deg": 24}, {"camera.hfov_deg": 12}, {"camera.hfov_deg": 60}]
    assert rows[0]["baseline"] and not rows[1]["baseline"]
    assert all(r["frames"] == 15 for r in rows)  # 3 s at 5 fps
    px = [r["plate_px_at_closest"]["median"] for r in rows]
    assert px[1] > px[0] > px[2]  # 12 degrees: telephoto; 60: wide angle
    assert rows[1]["vehicle_passes"] >= 1
    assert rows[1]["wrong_reads"] == 0 and rows[1]["passes_read"] <= rows[1]["vehicle_passes"]
    assert rows[0]["read_rate_vs_baseline"] == (1.0 if rows[0]["pass_read_rate"] else None)
    for n, r in enumerate(rows):
        assert (keep / f"{n:02d}" / "ground_truth.jsonl").is_file() and r["video"].startswith(str(keep))


def test_a_grid_above_max_cells_is_refused_naming_the_option_and_the_count(scenario_file, capsys, monkeypatch):
    """bench placement had no cap: a typo in a --vary list could mean hours of rendering, and the
    grid was listed (and each setting validated) before a word, a huge one taking all the memory."""
    import edge.bench.placement as placement

    def never(*args, **kwargs):
        raise AssertionError("the grid was built")

    monkeypatch.setattr(placement, "settings", never)
    heights = ",".join(str(h) for h in range(2, 12))  # 10 values
    fovs = ",".join(str(f) for f in range(15, 45, 5))  # 6 values
    huge = ",".join(str(v) for v in range(1, 10001))  # 10,000 values: 6 hundred thousand settings
    for argv, cells in ((["--vary", f"camera.mount_height_m={heights}", "--vary", f"camera.hfov_deg={fovs}"], 60),
                        (["--vary", f"camera.mount_height_m={heights}", "--vary", f"camera.hfov_deg={fovs}",
                          "--vary", f"traffic.vehicles_per_minute={huge}"], 600_000)):
        assert cli.main(["bench", "placement", str(scenario_file), *argv, "--duration", "2"]) == 2
        err = capsys.readouterr().err
        assert f"--vary gives {cells:,} settings" in err and "--max-cells 50" in err, err
        assert f"--max-cells {cells}" in err and "10 (camera.mount_height_m) x 6 (camera.hfov_deg)" in err
        assert "each 2 s of video" in err
    durations = ",".join(str(d) for d in range(1, 61))
    assert cli.main(["bench", "placement", str(scenario_file), "--vary", f"duration_s={durations}"]) == 2
    assert "--vary gives 60 settings (60 (duration_s)), each its duration_s of video" in capsys.readouterr().err
    assert cli.main(["bench", "placement", str(scenario_file), "--max-cells", "0"]) == 2
    assert "--max-cells must be 1 or more" in capsys.readouterr().err


def test_max_cells_lets_a_larger_grid_run(scenario_file, capsys):
    argv = ["bench", "placement", str(scenario_file), "--vary", "camera.mount_height_m=3,4", "--vary",
            "camera.hfov_deg=20,28", "--duration", "0.4", "--vision", "labels", "--json"]
    assert cli.main([*argv, "--max-cells", "3"]) == 2
    assert "--vary gives 4 settings" in capsys.readouterr().err
    assert cli.main([*argv, "--max-cells", "4"]) == 0
    assert len(last_json(capsys)["settings"]) == 5  # the baseline and the 4 cells
