"""Label files as spreadsheets save them: a UTF-8 byte-order mark, spaces after the commas, and a
file that is not UTF-8 at all.

Excel's "CSV UTF-8" starts the file with a byte-order mark, which stuck to the first column's name:
'missing column(s) file' for a file whose first column is plainly `file`. A Latin-1 file raised a
bare "'utf-8' codec can't decode byte 0xe9" naming no file.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.sources.folder import FolderSource, read_labels


def _frames(tmp_path, labels: bytes):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 200, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "b.jpg"), np.full((120, 200, 3), 90, np.uint8))
    (folder / "labels.csv").write_bytes(labels)
    return folder


@pytest.mark.parametrize("text", [
    "\ufefffile,x,y,w,h,plate\na.jpg,10,10,40,20,abc123\nb.jpg,,,,,\n",            # Excel's CSV UTF-8
    "file, x, y, w, h, plate\n a.jpg, 10, 10, 40, 20, ABC123\nb.jpg,,,,,\n",         # spaces after commas
])
def test_frame_labels_as_spreadsheets_write_them(tmp_path, text):
    folder = _frames(tmp_path, text.encode("utf-8"))
    labels = read_labels(folder)
    assert labels == {"a.jpg": [labels["a.jpg"][0]], "b.jpg": []}
    assert labels["a.jpg"][0].plate == "ABC123" and labels["a.jpg"][0].box == (10, 10, 50, 30)
    assert read_labels(folder, folder / "labels.csv") == labels  # --labels FILE too
    assert [f.labels for f in FolderSource(folder)][1] == []


def test_a_latin1_labels_file_is_named(tmp_path, capsys):
    folder = _frames(tmp_path, "file,x,y,w,h,plate\na.jpg,10,10,40,20,ABC\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels\.csv: not UTF-8 text \(byte 0xe9"):
        read_labels(folder)
    assert main(["bench", "frames", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "labels.csv: not UTF-8" in err and "Traceback" not in err


def test_crop_labels_with_a_byte_order_mark(tmp_path, capsys):
    from edge.bench.ocr import load_dir

    folder = tmp_path / "crops"
    folder.mkdir()
    cv2.imwrite(str(folder / "c.png"), np.full((32, 64, 3), 90, np.uint8))
    (folder / "labels.csv").write_text("\ufefffile,state,plate\nc.png,ca,7ABC123\n", encoding="utf-8")
    files, images, plates, states = load_dir(folder, "all")
    assert files == ["c.png"] and plates == ["7ABC123"] and states == ["CA"]
    (folder / "labels.csv").write_bytes("file,state,plate\nc.png,ca,7ABC\xe9\n".encode("latin-1"))
    with pytest.raises(SystemExit, match="not UTF-8"):
        load_dir(folder, "all")


def test_crop_labels_with_spaces_after_the_commas(tmp_path):
    from edge.bench.ocr import load_dir

    folder = tmp_path / "crops"
    folder.mkdir()
    cv2.imwrite(str(folder / "c.png"), np.full((32, 64, 3), 90, np.uint8))
    (folder / "labels.csv").write_text("file, state, plate\nc.png, ca, 7ABC123\n")
    files, _, plates, states = load_dir(folder, "all")
    assert files == ["c.png"] and plates == ["7ABC123"] and states == ["CA"]


def test_bench_ocr_names_its_batch_flag(tmp_path, capsys):
    folder = tmp_path / "crops"
    folder.mkdir()
    cv2.imwrite(str(folder / "c.png"), np.full((32, 64, 3), 90, np.uint8))
    (folder / "labels.csv").write_text("file,state,plate\nc.png,ca,7ABC123\n")
    assert main(["bench", "ocr", str(folder), "--split", "all", "--batch", "0"]) == 2
    err = capsys.readouterr().err
    assert "--batch must be at least 1, got 0" in err and "OcrConfig" not in err
