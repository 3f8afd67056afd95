"""synth plates writes each batch of crops before rendering the next (it held every crop in memory
until the end: count x crop size, 8 GB for 100k crops at 96x288)."""

from __future__ import annotations

import csv

import edge.synth.plates as plates


def test_batches_are_written_as_they_are_rendered(tmp_path, monkeypatch):
    from edge.cli import main

    out = tmp_path / "out"
    seen = []  # (plates asked, PNGs already on disk) per render call
    render = plates.render_plates

    def counting(n, *args, **kwargs):
        seen.append((n, len(list(out.glob("*.png"))) if out.is_dir() else 0))
        return render(n, *args, **kwargs)

    monkeypatch.setattr(plates, "render_plates", counting)
    assert main(["synth", "plates", "--count", "1200", "--size", "16x32", "--clean", "--out", str(out)]) == 0
    assert seen[-2:] == [(1000, 0), (200, 1000)]
    with open(out / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1200 == len(list(out.glob("*.png")))
    assert len({r["file"] for r in rows}) == 1200 and all((out / r["file"]).is_file() for r in rows)
