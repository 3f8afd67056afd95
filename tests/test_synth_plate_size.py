"""synth plates --size has an upper bound, and the warm-up renders no more crops than asked for.

`--size 5000x5000 --count 1` ran for minutes and out of memory without a word: the warm-up alone
rendered 512 crops of that size (38 GB) before the one asked for. Sizes beyond 256x512 are now
refused by flag name, and the warm-up renders at most --count crops.
"""

from __future__ import annotations

import pytest

from edge.cli import main
from edge.synth import plates as plates_mod
from edge.synth.commands import MAX_PLATE_SIZE, _parse_size


@pytest.mark.parametrize("text", ["257x128", "64x513", "5000x5000"])
def test_sizes_beyond_the_limit_are_refused_by_flag(text):
    with pytest.raises(SystemExit, match=rf"--size {text}: at most 256x512"):
        _parse_size(text)


def test_the_limit_itself_and_the_usual_sizes_pass():
    assert _parse_size("%dx%d" % MAX_PLATE_SIZE) == MAX_PLATE_SIZE
    assert _parse_size("96x288") == (96, 288) and _parse_size("64X128") == (64, 128)


def test_cli_exit_2_before_rendering(tmp_path, capsys):
    assert main(["synth", "plates", "--size", "5000x5000", "--out", str(tmp_path / "o")]) == 2
    assert "--size 5000x5000: at most 256x512" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_warm_up_renders_no_more_crops_than_asked_for(tmp_path, monkeypatch):
    asked = []
    real = plates_mod.render_plates

    def counting(n, *a, **k):
        asked.append(n)
        return real(n, *a, **k)

    monkeypatch.setattr(plates_mod, "render_plates", counting)
    assert main(["synth", "plates", "--count", "3", "--states", "ca", "--out", str(tmp_path / "o")]) == 0
    assert asked[0] == 3 and sum(asked) == 6  # the warm-up's 3, then the 3 written
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
