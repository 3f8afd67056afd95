"""bench placement: settings that could not mean what they say are refused, naming the option.

- a field varied twice set the field twice in every row (the later value winning), the rows labelled
  with both values;
- camera.hfov_deg and camera.focal_length_mm varied together: setting one cleared the other, so each
  row was labelled with a field of view it did not have;
- --seed overrode a varied `seed` in every row (`--vary seed=1,2` then measured one traffic twice);
- a value given twice was rendered and measured twice;
- --seed -1 loaded the models, then failed in numpy ('expected non-negative integer', no option
  named); --duration nan and a NaN setting were refused as 'less than or equal to 3600' / 'less
  than 160' (the scenario now refuses NaN and infinity as such).
"""

from __future__ import annotations

import pytest

from edge import cli
from edge.bench.placement import PlacementError, parse_vary, settings
from edge.synth.scene import ScenarioError, parse_scenario
from test_synth_scene import SMALL


@pytest.fixture
def no_render(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("rendered although a setting was invalid")

    monkeypatch.setattr("edge.synth.scene.render_scene_to_dir", refuse)
    monkeypatch.setattr("edge.bench.frames._stages", refuse)  # nothing loads either


@pytest.fixture
def scenario_file(tmp_path):
    import yaml

    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(SMALL))
    return p


def test_a_field_varied_twice_is_refused():
    with pytest.raises(PlacementError, match="camera.hfov_deg is given twice"):
        settings(parse_scenario(SMALL), [parse_vary("camera.hfov_deg=20"), parse_vary("camera.hfov_deg=30")], None)


def test_field_of_view_and_focal_length_are_not_varied_together():
    with pytest.raises(PlacementError, match="camera.hfov_deg and --vary camera.focal_length_mm"):
        settings(parse_scenario(SMALL), [parse_vary("camera.hfov_deg=20"), parse_vary("camera.focal_length_mm=8")],
                 None)


def test_a_value_given_twice_is_measured_once():
    runs = settings(parse_scenario(SMALL), [parse_vary("camera.hfov_deg=30,30,40")], None)
    assert [label for label, _ in runs] == [{"camera.hfov_deg": 24}, {"camera.hfov_deg": 30}, {"camera.hfov_deg": 40}]


def test_seed_option_sets_the_baseline_and_a_varied_seed_still_varies():
    runs = settings(parse_scenario(SMALL), [parse_vary("seed=1,2")], None, seed=7)
    assert [sc.seed for _, sc in runs] == [7, 1, 2]
    assert runs[0][0] == {"seed": 7}


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_non_finite_value_is_named_as_such(value):
    with pytest.raises(ScenarioError, match="camera.mount_height_m: Input should be a finite number"):
        parse_scenario({**SMALL, "camera": {**SMALL["camera"], "mount_height_m": float(value.replace(".", ""))}})


@pytest.mark.parametrize("args, named", [
    (["--seed", "-1"], "--seed must be 0 or more, got -1"),
    (["--duration", "nan"], "--duration must be a positive number of seconds, got nan"),
    (["--duration", "0"], "--duration must be a positive number of seconds"),
    (["--vary", "camera.hfov_deg=20", "--vary", "camera.hfov_deg=30"], "given twice"),
    (["--vary", "camera.hfov_deg=nan"], "camera.hfov_deg: Input should be a finite number"),
])
def test_the_cli_names_the_option_before_anything_loads(scenario_file, no_render, capsys, args, named):
    assert cli.main(["bench", "placement", str(scenario_file), *args, "--json"]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alpr-edge bench placement: error: ") and named in lines[0]
    assert not cap.out.strip()


def test_an_unusable_keep_folder_is_named_before_anything_loads(scenario_file, no_render, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli.main(["bench", "placement", str(scenario_file), "--keep", str(blocker / "sub")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"--keep {blocker / 'sub'}: Not a directory" in lines[0]
