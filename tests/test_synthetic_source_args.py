"""The synthetic: source's query options are checked when the source opens, naming the option.

seed=-1 opened, then the first frame failed in numpy ('expected non-negative integer', naming
nothing) from the frame reader's thread; width=320.5 was called 'not a number'.
"""

from __future__ import annotations

import pytest

from edge.cli import main
from edge.sources import SourceError, open_source
from edge.sources.synthetic import SyntheticSource


def test_a_negative_seed_is_refused_when_the_source_opens():
    with pytest.raises(SourceError, match=r"seed='-1' must be 0 or more"):
        open_source("synthetic:default?seed=-1&duration=1&width=320&height=180")
    with pytest.raises(SourceError, match="must be 0 or more"):
        SyntheticSource("default", seed=-3, duration="1")


def test_run_names_the_seed_and_exits_2(tmp_path, capsys):
    rc = main(["run", "--source", "synthetic:default?seed=-1&duration=1&width=320&height=180", "--camera-id", "c",
               "--agency-id", "a", "--output-dir", str(tmp_path), "--vision", "labels"])
    err = capsys.readouterr().err
    assert rc == 2 and "seed='-1' must be 0 or more" in err


def test_a_fraction_for_a_pixel_count_is_named_as_such():
    with pytest.raises(SourceError, match=r"width='320.5' is not a whole number"):
        open_source("synthetic:default?width=320.5")
    with pytest.raises(SourceError, match=r"fps='abc' is not a number"):
        open_source("synthetic:default?fps=abc")
