"""A negative seed (numpy refuses it) is refused by name, not as numpy's bare 'expected non-negative integer'."""

from __future__ import annotations

import pytest
import yaml

from edge.synth.scene import ScenarioError, parse_scenario


def test_scenario_with_a_negative_seed_names_the_field():
    with pytest.raises(ScenarioError, match="seed"):
        parse_scenario({"name": "s", "seed": -1})


@pytest.mark.parametrize("what", ["plates", "scene"])
def test_cli_names_a_negative_seed(tmp_path, capsys, what):
    from edge.cli import main

    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump({"name": "s", "duration_s": 0.2, "camera": {"width": 320, "height": 240}}))
    args = ["--count", "2", "--size", "16x32"] if what == "plates" else [str(scen)]
    assert main(["synth", what, *args, "--seed", "-1", "--out", str(tmp_path / "out")]) != 0
    assert "--seed must be >= 0" in capsys.readouterr().err
