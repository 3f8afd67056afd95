"""synth: options refused naming the option, NaN and infinity named as such, and the gallery
taking `--help` as help, not as the folder to fill.

- `python -m edge.synth.gallery --help` created a folder named `--help` and rendered the PNGs into
  it; with no argument it wrote over ./docs of whatever directory it ran in;
- a degradation range of NaN or infinity was refused by a bound it happened to fail ("less than or
  equal to 20"), or as "a valid tuple";
- `synth plates --size 4x8` said "size must be at least (8, 16)" without naming the option.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge import cli


def test_gallery_help_is_help_and_the_folder_is_required(tmp_path):
    for argv, status in ((["--help"], 0), ([], 2)):
        r = subprocess.run([sys.executable, "-m", "edge.synth.gallery", *argv], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == status, r.stderr
        assert "usage: python -m edge.synth.gallery" in r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []  # no --help folder, no docs/ written


def test_gallery_names_an_unusable_folder(tmp_path, capsys):
    from edge.synth.gallery import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as err:
        main([str(blocker / "sub")])
    assert err.value.code == 2 and str(blocker / "sub") in capsys.readouterr().err


@pytest.mark.parametrize("line, field", [("defocus_sigma: .nan", "defocus_sigma"), ("yaw_deg: .inf", "yaw_deg"),
                                         ("ir_p: .nan", "ir_p")])
def test_a_non_finite_degradation_is_named_as_such(tmp_path, capsys, line, field):
    deg = tmp_path / "deg.yaml"
    deg.write_text(line + "\n")
    assert cli.main(["synth", "plates", "--count", "1", "--degradation", str(deg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{field}: Input should be a finite number" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("size", ["4x8", "0x128", "64x0"])
def test_a_too_small_size_names_the_option(tmp_path, capsys, size):
    assert cli.main(["synth", "plates", "--count", "1", f"--size={size}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--size {size}: at least 8x16" in err[0]
