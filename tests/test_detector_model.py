"""The shipped models/detector.onnx on generated frames, and `alpr-edge bench detect` on a tiny folder."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from edge.bench.detect import match_frame
from edge.synth.plates import composite_plate, plate_box, render_plate_images
from edge.vision.detector import DEFAULT_MODEL, OnnxPlateDetector
from edge.vision.rectify import crop_plates


def _street(rng, h=720, w=1280):
    """A plain generated scene: sky/road gradient, a car-coloured body with a bumper and lights."""
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (np.array([170, 160, 150], np.float32) * (1 - t) + np.array([70, 75, 80], np.float32) * t) * np.ones(
        (1, w, 1), np.float32
    )
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    body = tuple(int(c) for c in rng.integers(20, 200, 3))
    cv2.rectangle(img, (250, 200), (1030, 620), body, -1)
    cv2.rectangle(img, (250, 560), (1030, 620), (30, 30, 30), -1)  # bumper
    cv2.circle(img, (330, 300), 40, (40, 40, 200), -1)  # tail lights
    cv2.circle(img, (950, 300), 40, (40, 40, 200), -1)
    return img


def _scene(seed, centre, width, roll_deg=0.0, h=720, w=1280):
    rng = np.random.default_rng(seed)
    frame = _street(rng, h, w)
    (plate, text, _), = render_plate_images(1, rng, height=120)
    pw, ph = width, width / 2
    quad = np.array([[-pw / 2, -ph / 2], [pw / 2, -ph / 2], [pw / 2, ph / 2], [-pw / 2, ph / 2]], np.float32)
    a = np.radians(roll_deg)
    quad = quad @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], np.float32) + np.array(centre, np.float32)
    return composite_plate(frame, plate, quad), quad, plate_box(quad), text


@pytest.fixture(scope="module")
def detector():
    assert DEFAULT_MODEL.is_file(), "models/detector.onnx is part of the repository"
    # The stored threshold (0.59) is calibrated on real frames; these flat generated scenes score
    # 0.3-0.65 for a clear plate, so the tests check finding and placing at 0.3 and that a scene
    # without plates stays quiet at that same lower threshold.
    return OnnxPlateDetector(threshold=0.3)


@pytest.mark.parametrize(
    "seed,centre,width,roll",
    [(1, (640, 470), 110, 0.0), (2, (520, 430), 70, 0.0), (3, (760, 500), 130, 8.0)],
)
def test_shipped_model_finds_a_composited_plate(detector, seed, centre, width, roll):
    frame, quad, box, _ = _scene(seed, centre, width, roll)
    det = detector.predict([frame])[0]
    m = match_frame(det.boxes, box[None])
    assert m.found == 1, f"plate at {box} not found; got {det.boxes} {det.scores}"
    assert m.false_alarms <= 1
    best = int(np.argmax([match_frame(b[None], box[None]).found for b in det.boxes]))
    assert det.corners is not None
    # corners come out near the plate's (a few pixels for a ~100 px plate)
    err = np.abs(det.corners[best] - quad).max()
    assert err < 0.25 * width, f"corners {det.corners[best]} vs {quad}"
    b = det.boxes[best]
    assert (b[2] - b[0]) == pytest.approx(2 * (b[3] - b[1]), rel=1e-3)  # 2:1 convention


def test_shipped_model_finds_a_small_plate_in_1080p(detector):
    frame, _, box, _ = _scene(4, (1000, 700), 64, 0.0, h=1080, w=1920)  # 64 px: ~26 px at the net input
    det = detector.predict([frame])[0]
    assert match_frame(det.boxes, box[None]).found == 1, f"got {det.boxes} {det.scores}"


def test_shipped_model_is_quiet_on_a_frame_without_plates(detector):
    frame = _street(np.random.default_rng(7))
    assert len(detector.predict([frame])[0]) <= 1


def test_crop_of_detected_plate_is_upright(detector):
    frame, quad, box, _ = _scene(5, (640, 470), 140, 10.0)
    det = detector.predict([frame])[0]
    assert len(det) >= 1
    crop = crop_plates(frame, det[:1], (192, 96))[0]
    # a rectified plate: rows are brighter than the car body around it at both ends of the crop
    assert crop.shape == (96, 192, 3)
    assert crop[40:56, 10:40].mean() > 100 and crop[40:56, -40:-10].mean() > 100


def test_bench_detect_json_on_a_generated_folder(tmp_path, capsys):
    from edge.cli import main

    rows = []
    for i in range(3):
        frame, _, box, text = _scene(10 + i, (500 + 100 * i, 460), 100)
        name = f"gen{i}.png"
        cv2.imwrite(str(tmp_path / name), frame)
        rows.append([name, round(box[0]), round(box[1]), round(box[2] - box[0]), round(box[3] - box[1]), text])
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "x", "y", "w", "h", "plate"])
        wr.writerows(rows)
    fa_dir = tmp_path / "fa"
    rc = main(["bench", "detect", str(tmp_path), "--json", "--threshold", "0.3", "--save-false-alarms", str(fa_dir)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("n", "recall", "fp_per_frame", "ms_per_frame", "cpu_ms_per_frame", "ms_per_1080p_frame", "frames",
                "threshold"):
        assert key in res, key
    assert res["n"] == 3 and res["frames"] == 3
    assert res["recall"] == pytest.approx(1.0)
    assert res["ms_per_frame"] > 0
    assert len(res["false_alarm_pictures"]) == res["false_alarms"]
    # the node's plate check keeps a subset of the same proposals; the network alone is beside it
    net = res["network_only"]
    assert res["plate_check_chars"] == 3 and net["threshold"] == res["threshold"] == 0.3
    assert net["recall"] == pytest.approx(1.0) and net["false_alarms"] >= res["false_alarms"]


def test_bench_detect_rejects_a_folder_without_labels(tmp_path):
    from edge.bench.detect import run_bench

    with pytest.raises(FileNotFoundError, match="labels.csv"):
        run_bench(tmp_path)
