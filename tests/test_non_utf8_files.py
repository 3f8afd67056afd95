"""A YAML file that is not UTF-8 (saved as Latin-1: 'café') is named with the problem.

The edge node config, a scenario (synth scene, bench placement, the synthetic: source) and synth
plates --degradation all raised a bare "'utf-8' codec can't decode byte 0xe9 in position 9"
naming no file.
"""

from __future__ import annotations

import pytest

from edge.cli import main


@pytest.fixture()
def latin1(tmp_path):
    path = tmp_path / "café.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return path


@pytest.mark.parametrize("argv", [
    ["run", "--config", "{p}"],
    ["run", "--source", "synthetic:{p}", "--camera-id", "c", "--agency-id", "a"],
    ["synth", "scene", "{p}", "--out", "{out}"],
    ["bench", "placement", "{p}"],
    ["synth", "plates", "--degradation", "{p}", "--count", "1", "--out", "{out}"],
])
def test_a_latin1_yaml_is_named(tmp_path, capsys, latin1, argv):
    args = [a.format(p=latin1, out=tmp_path / "out") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(latin1) in err and "not UTF-8 text (byte 0xe9 at offset 9)" in err, err
