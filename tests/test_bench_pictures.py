"""bench frames --save-misses and bench detect --save-false-alarms: one picture per miss or false
alarm, never one overwriting another, and a picture that cannot be written is an error naming it.

They were named `<stem>_<plate>.png` and `<stem>_fa<k>.png`, so `a.jpg` and `a.png` (or one plate
labelled twice in a frame) wrote the same file, the JSON listing the path twice; and cv2.imwrite's
False on a failed write was ignored, the JSON listing pictures that were never written.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge import cli
from edge.bench.report import picture_name, surroundings
from edge.vision.base import Detections, PlateTexts


class _Blind:
    """A detector that finds nothing and an OCR that reads nothing: every label is a miss."""

    def predict(self, frames):
        if frames and isinstance(frames[0], np.ndarray) and frames[0].ndim == 3:
            return [Detections.empty() for _ in frames]
        return PlateTexts([""] * len(frames), np.zeros(len(frames), np.float32),
                          [np.zeros(0, np.float32) for _ in frames])


def _twin_frames(tmp_path):
    """a.jpg and a.png, the plate ZZZ999 labelled twice in a.jpg (two vehicles, one plate text)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    img = np.full((120, 240, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "labels.csv").write_text("file,x,y,w,h,plate\na.jpg,10,10,40,20,ZZZ999\n"
                                         "a.jpg,150,60,40,20,ZZZ999\na.png,10,10,40,20,ZZZ999\n")
    return tmp_path


@pytest.fixture
def blind_frames(monkeypatch):
    monkeypatch.setattr("edge.bench.frames._stages", lambda cfg: (_Blind(), _Blind()))


def _last_json(capsys):
    cap = capsys.readouterr()
    return json.loads(cap.out.strip().splitlines()[-1]), cap.err


def test_every_missed_plate_gets_its_own_picture(tmp_path, blind_frames, capsys):
    folder = _twin_frames(tmp_path / "frames")
    misses = tmp_path / "misses"
    assert cli.main(["bench", "frames", str(folder), "--save-misses", str(misses), "--json"]) == 0
    out, _ = _last_json(capsys)
    assert len(out["missed"]) == 3
    pics = out["miss_pictures"]
    assert len(pics) == 3 and len(set(pics)) == 3  # before: two names for three plates, one overwritten
    assert sorted(p.name for p in misses.iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in pics)
    assert {p.rsplit("/", 1)[-1] for p in pics} == {"a.jpg_ZZZ999.png", "a.jpg_ZZZ999~2.png", "a.png_ZZZ999.png"}
    assert all(cv2.imread(p) is not None for p in pics)


def test_a_picture_that_cannot_be_written_is_an_error_naming_it(tmp_path, blind_frames, capsys):
    folder = _twin_frames(tmp_path / "frames")
    misses = tmp_path / "misses"
    (misses / "a.jpg_ZZZ999.png").mkdir(parents=True)  # the first picture's path is taken by a folder
    status = cli.main(["bench", "frames", str(folder), "--save-misses", str(misses), "--json"])
    out, err = _last_json(capsys)  # the figures are still reported, JSON last on stdout
    assert status == 2
    assert len(out["missed"]) == 3 and out["miss_pictures"] == []
    assert "a.jpg_ZZZ999.png" in out["miss_pictures_error"]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alpr-edge bench frames: error: --save-misses: could not write")
    assert str(misses / "a.jpg_ZZZ999.png") in lines[0]


class _FakeDetector:
    """Stands in for OnnxPlateDetector: one box per frame, far from any label (a false alarm)."""

    def __init__(self, model=None, threshold=None, threads=1):
        self.threshold = 0.5 if threshold is None else threshold
        self.input_size = (64, 32)
        self.model_path = "fake.onnx"

    def predict(self, frames):
        return [Detections(np.array([[100, 50, 140, 70]], np.float32), np.array([0.9], np.float32), None)
                for _ in frames]


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setattr("edge.vision.detector.OnnxPlateDetector", _FakeDetector)


def test_false_alarms_of_a_jpg_and_a_png_are_both_kept(tmp_path, fake_detector, capsys):
    folder = _twin_frames(tmp_path / "frames")
    fa = tmp_path / "fa"
    assert cli.main(["bench", "detect", str(folder), "--plate-check-chars", "0", "--save-false-alarms", str(fa),
                     "--json"]) == 0
    out, _ = _last_json(capsys)
    assert out["false_alarms"] == 2
    names = sorted(p.rsplit("/", 1)[-1] for p in out["false_alarm_pictures"])
    assert names == ["a.jpg_fa0.png", "a.png_fa0.png"] == sorted(p.name for p in fa.iterdir())


def test_a_false_alarm_picture_that_cannot_be_written_is_an_error_naming_it(tmp_path, fake_detector, capsys):
    folder = _twin_frames(tmp_path / "frames")
    fa = tmp_path / "fa"
    (fa / "a.jpg_fa0.png").mkdir(parents=True)
    status = cli.main(["bench", "detect", str(folder), "--plate-check-chars", "0", "--save-false-alarms", str(fa),
                       "--json"])
    out, err = _last_json(capsys)
    assert status == 2 and out["false_alarms"] == 2 and out["false_alarm_pictures"] == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--save-false-alarms: could not write" in lines[0]
    assert str(fa / "a.jpg_fa0.png") in lines[0]


def test_an_unusable_false_alarm_folder_is_named_before_the_run(tmp_path, fake_detector, capsys):
    folder = _twin_frames(tmp_path / "frames")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli.main(["bench", "detect", str(folder), "--plate-check-chars", "0", "--save-false-alarms",
                     str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--save-false-alarms" in err[0] and str(blocker / "sub") in err[0]


def test_picture_names_are_safe_and_unique():
    used: set[str] = set()
    assert picture_name(used, "sub/a b.jpg", "AB/12") == "sub-a-b.jpg_AB-12.png"
    assert picture_name(used, "sub/a b.jpg", "AB/12") == "sub-a-b.jpg_AB-12~2.png"
    assert picture_name(used, "SUB-A-B.JPG", "ab-12") == "SUB-A-B.JPG_ab-12~3.png"  # case-insensitive file systems
    assert picture_name(used, "..", "x") == "-_x.png"


def test_a_label_beyond_the_image_still_gets_a_picture():
    img = np.zeros((50, 80, 3), np.uint8)
    pic, origin = surroundings(img, (500, 500, 540, 520))  # was an empty array: cv2 refused to write it
    assert pic.shape == img.shape and origin == (0, 0)


@pytest.mark.parametrize("args, said", [
    (["--threshold", "0"], "--threshold must be within (0, 1), got 0.0"),
    (["--threshold", "nan"], "--threshold must be within (0, 1), got nan"),
    (["--plate-check-chars", "-1"], "--plate-check-chars must be 0 (off) or more, got -1"),
])
def test_bench_detect_names_the_option(tmp_path, fake_detector, capsys, args, said):
    folder = _twin_frames(tmp_path / "frames")
    assert cli.main(["bench", "detect", str(folder), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"alpr-edge bench detect: error: {said}"]


def test_bench_detect_names_a_missing_folder(tmp_path, capsys):
    assert cli.main(["bench", "detect", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"alpr-edge bench detect: error: folder not found: {tmp_path / 'nope'}"


def test_bench_frames_names_the_frames_that_did_not_decode(tmp_path, blind_frames, capsys):
    folder = _twin_frames(tmp_path / "frames")
    (folder / "a.jpg").write_bytes(b"not an image")
    assert cli.main(["bench", "frames", str(folder), "--json"]) == 0
    out, _ = _last_json(capsys)
    assert out["skipped"] == 1 and out["unreadable"] == ["a.jpg"]  # as bench detect and bench ocr name them
    assert [m["read"] for m in out["missed"] if m["file"] == "a.jpg"] == ["(unreadable frame)"] * 2
