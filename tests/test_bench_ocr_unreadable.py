"""bench ocr skips a crop that does not decode, counts and names it, as bench frames and bench
detect skip a frame; only a folder where nothing decodes is refused.

It refused the whole folder (`... is not a readable image`, exit 2) for one bad file among hundreds.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge import cli
from edge.vision.base import PlateTexts


def _reader(args):
    def read(crops):  # reads every crop as ABC123
        n = len(crops)
        return PlateTexts(["ABC123"] * n, np.full(n, 0.9, np.float32), [np.full(6, 0.98, np.float32)] * n)

    return read, True


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    monkeypatch.setitem(__import__("edge.bench.ocr", fromlist=["MAKERS"]).MAKERS, "onnx", _reader)


def _crops(folder, names, bad):
    folder.mkdir()
    for n in names:
        if n in bad:
            (folder / n).write_bytes(b"not an image")
        else:
            cv2.imwrite(str(folder / n), np.full((40, 120, 3), 200, np.uint8))
    (folder / "labels.csv").write_text("file,state,plate\n" + "".join(f"{n},CA,ABC123\n" for n in names))
    return folder


def test_an_unreadable_crop_is_skipped_counted_and_named(tmp_path, capsys):
    folder = _crops(tmp_path / "crops", ["a.png", "b.png", "c.png"], bad={"b.png"})
    assert cli.main(["bench", "ocr", str(folder), "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["n"] == 2 and res["exact"] == 1.0  # scored over the crops that decoded
    assert res["skipped"] == 1 and res["unreadable"] == ["b.png"]
    assert "did not decode and were skipped" in out and "b.png" in out


def test_a_folder_where_nothing_decodes_is_refused_naming_them(tmp_path, capsys):
    folder = _crops(tmp_path / "crops", ["a.png", "b.png"], bad={"a.png", "b.png"})
    assert cli.main(["bench", "ocr", str(folder), "--json"]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "none of the 2 labelled crops" in lines[0] and "a.png, b.png" in lines[0]
    assert not cap.out.strip()


def test_nothing_skipped_says_zero(tmp_path, capsys):
    folder = _crops(tmp_path / "crops", ["a.png"], bad=set())
    assert cli.main(["bench", "ocr", str(folder), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["skipped"] == 0 and res["unreadable"] == [] and res["n"] == 1


def test_a_labels_file_with_no_rows_is_not_said_to_lack_its_columns(tmp_path, capsys):
    folder = tmp_path / "crops"
    folder.mkdir()
    (folder / "labels.csv").write_text("file,state,plate\n")
    assert cli.main(["bench", "ocr", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "lacks column" not in err and "no crops in" in err


@pytest.mark.parametrize("split", ["all", "val", "train"])
def test_a_row_without_a_file_is_named_in_every_split(tmp_path, capsys, split):
    folder = _crops(tmp_path / "crops", [f"c{i}.png" for i in range(6)], bad=set())
    rows = (folder / "labels.csv").read_text().splitlines()
    rows.insert(4, ",CA,ABC123")  # line 5
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    assert cli.main(["bench", "ocr", str(folder), "--split", split]) == 2
    assert "labels.csv line 5: no file or plate" in capsys.readouterr().err
