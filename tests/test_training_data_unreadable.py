"""The training data loaders refused a whole folder for one unreadable image ("x.png: not a
readable image"); they now skip it with a warning naming the file and how many were skipped (as
`bench ocr` skips a bad crop), and refuse the folder only when none of its images can be read."""

from __future__ import annotations

import csv
import logging

import cv2
import numpy as np
import pytest

from edge.synth.plates import render_plates
from edge.training.detector_data import load_frames, load_train_crops
from edge.training.ocr_data import load_crops, load_detected_frame_plates, load_frame_plates
from edge.training.splits import is_validation


def _labels(folder, header, rows):
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _crops_folder(folder, n=12):
    plates = render_plates(n, np.random.default_rng(0), size=(32, 64), degrade=False)
    rows = []
    for i, (img, text, state) in enumerate(zip(plates.images, plates.texts, plates.states)):
        cv2.imwrite(str(folder / f"c{i}.png"), img)
        rows.append([f"c{i}.png", state, text])
    return rows


def _frames_folder(folder, n=12):
    frame = np.full((180, 320, 3), 90, np.uint8)
    plate = render_plates(1, np.random.default_rng(1), size=(30, 60), degrade=False).images[0]
    frame[60:90, 120:180] = plate
    rows = []
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i}.jpg"), frame)
        rows.append([f"f{i}.jpg", 120, 60, 60, 30, "ABC123"])
    return rows


def _corrupt(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")


LOADERS = [
    ("crops", _crops_folder, lambda d: load_crops(d, "all").images),
    ("frames", _frames_folder, lambda d: load_frame_plates(d, "all").images),
    ("frames", _frames_folder, lambda d: load_frames(d, "all")),
    ("crops", _crops_folder, load_train_crops),
    ("frames", _frames_folder, lambda d: load_detected_frame_plates(d, "all", scales=(1.0,)).images),
]
IDS = ["ocr-crops", "ocr-frame-plates", "detector-frames", "detector-train-crops", "ocr-detected-frame-plates"]


@pytest.mark.parametrize("what, make, load", LOADERS, ids=IDS)
def test_one_unreadable_image_is_skipped_with_a_warning_naming_it(tmp_path, caplog, what, make, load):
    rows = make(tmp_path)
    header = ["file", "state", "plate"] if what == "crops" else ["file", "x", "y", "w", "h", "plate"]
    _labels(tmp_path, header, rows)
    everything = len(load(tmp_path))
    bad = next(r[0] for r in rows if not is_validation(r[0]))  # in every loader's part (load_train_crops: train)
    _corrupt(tmp_path, bad)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        loaded = load(tmp_path)
    assert 0 < len(loaded) < everything
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and bad in warnings[0] and str(tmp_path) in warnings[0]
    assert "skipped 1 of" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # loaded again (training: by each data loader worker): said once
        load(tmp_path)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("what, make, load", LOADERS, ids=IDS)
def test_a_folder_with_no_readable_image_is_refused(tmp_path, what, make, load):
    rows = make(tmp_path, n=4)
    header = ["file", "state", "plate"] if what == "crops" else ["file", "x", "y", "w", "h", "plate"]
    _labels(tmp_path, header, rows)
    _corrupt(tmp_path, *(r[0] for r in rows))
    with pytest.raises(ValueError, match="none of the .* labelled .* is a readable image") as err:
        load(tmp_path)
    assert str(tmp_path) in str(err.value) and rows[0][0] in str(err.value)


def test_a_frame_label_without_a_file_name_is_refused_naming_its_line(tmp_path):
    """It was read as the folder itself: 'not a readable image' (now: skipped with a nameless warning)."""
    rows = _frames_folder(tmp_path, n=3)
    _labels(tmp_path, ["file", "x", "y", "w", "h", "plate"], rows[:2] + [["", 1, 1, 10, 5, "ABC"]])
    with pytest.raises(ValueError, match=r"labels.csv line 4: no file name"):
        load_frames(tmp_path, "all")


@pytest.mark.parametrize("bad_row, said", [
    (["", 120, 60, 60, 30, "ABC123"], "no file name"),
    (["f1.jpg", "wide", 60, 60, 30, "ABC123"], "bad row"),
    (["f1.jpg", "nan", 60, 60, 30, "ABC123"], "bad row"),
    (["f1.jpg", 120, 60], "bad row"),  # a cut-off line
])
@pytest.mark.parametrize("load", [lambda d: load_frame_plates(d, "val"),
                                  lambda d: load_detected_frame_plates(d, "val", scales=(1.0,))],
                         ids=["frame-plates", "detected-frame-plates"])
def test_the_ocr_frame_loaders_name_a_bad_label_row_by_its_line(tmp_path, bad_row, said, load):
    """An empty name read the folder itself as an image; a bad number was `could not convert string
    to float: 'wide'` or `cannot convert float NaN to integer`, naming neither file nor line; and
    only rows of the part read were looked at."""
    rows = _frames_folder(tmp_path, n=3)
    _labels(tmp_path, ["file", "x", "y", "w", "h", "plate"], rows[:2] + [bad_row])
    with pytest.raises(ValueError, match=rf"labels.csv line 4: {said}"):
        load(tmp_path)


@pytest.mark.parametrize("what, make, load", LOADERS[:4], ids=IDS[:4])
def test_a_spreadsheets_labels_csv_loads_as_the_benches_read_it(tmp_path, what, make, load):
    """A labels.csv saved by a spreadsheet (UTF-8 with a byte-order mark) or written 'file, state,
    plate' (spaces after the commas) is read by bench ocr and bench detect; the training loaders
    said "row 2 has no 'file'" / "no 'plate'" or read the names with their spaces."""
    rows = make(tmp_path)
    header = ["file", "state", "plate"] if what == "crops" else ["file", "x", "y", "w", "h", "plate"]
    _labels(tmp_path, header, rows)
    expected = len(load(tmp_path))
    text = "\n".join(", ".join(str(v) for v in row) for row in [header, *rows]) + "\n"
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(load(tmp_path)) == expected > 0


def test_a_labels_csv_that_is_not_utf8_is_named(tmp_path):
    rows = _crops_folder(tmp_path, n=3)
    (tmp_path / "labels.csv").write_bytes(b"file,state,plate\n" + f"{rows[0][0]},ca,ABC\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels.csv: not UTF-8 text \(byte 0xe9"):
        load_crops(tmp_path, "all")
