"""Degradation ranges a YAML can give: a defocus so large the blur ran for minutes per crop, and
JPEG qualities outside [0, 100] (silently clamped by OpenCV) are refused by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.synth.plates import Degradation


@pytest.mark.parametrize("fields, name", [
    ({"defocus_sigma": 1e5}, "defocus_sigma"),
    ({"jpeg_quality": (-50, 90)}, "jpeg_quality"),
    ({"jpeg_quality": (25, 200)}, "jpeg_quality"),
])
def test_out_of_range_degradation_is_refused(fields, name):
    with pytest.raises(ValidationError, match=name):
        Degradation(**fields)


def test_cli_names_the_field(tmp_path, capsys):
    from edge.cli import main

    deg = tmp_path / "deg.yaml"
    deg.write_text("defocus_p: 1\ndefocus_sigma: 100000\n")
    assert main(["synth", "plates", "--count", "2", "--size", "16x32", "--degradation", str(deg),
                 "--out", str(tmp_path / "out")]) != 0
    assert "defocus_sigma" in capsys.readouterr().err


def test_the_bounds_keep_usable_values():
    assert Degradation(defocus_sigma=20, jpeg_quality=(0, 100)).defocus_sigma == 20
