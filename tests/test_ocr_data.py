"""OCR training data: the fixed split is honoured, frame plates are cut by their box, augmentation
keeps the work size, CTC targets drop what is not in the alphabet. No torch needed."""

from __future__ import annotations

import csv

import cv2
import numpy as np

from edge.synth.plates import render_plates
from edge.training.ocr_data import WORK_SCALE, augment, encode_texts, load_crops, load_frame_plates
from edge.training.splits import is_validation


def _write(d, header, rows):
    with open(d / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_load_crops_reads_only_the_requested_part(tmp_path):
    b = render_plates(20, np.random.default_rng(0), size=(40, 80), degrade=False)
    rows = []
    for i, (img, t, s) in enumerate(zip(b.images, b.texts, b.states)):
        cv2.imwrite(str(tmp_path / f"c{i}.png"), img)
        rows.append([f"c{i}.png", s, t])
    _write(tmp_path, ["file", "state", "plate"], rows)
    train, val = load_crops(tmp_path, "train"), load_crops(tmp_path, "val")
    assert len(train.files) + len(val.files) == 20
    assert not any(is_validation(f) for f in train.files)
    assert all(is_validation(f) for f in val.files)
    assert train.texts == [t for f, t in zip([r[0] for r in rows], b.texts) if not is_validation(f)]


def test_frame_plates_are_cut_by_their_box(tmp_path):
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[50:80, 100:160] = 255  # the "plate"
    names = [f"f{i}.jpg" for i in range(12)]
    for n in names:
        cv2.imwrite(str(tmp_path / n), frame)
    _write(tmp_path, ["file", "x", "y", "w", "h", "plate"], [[n, 100, 50, 60, 30, "ABC123"] for n in names])
    got = load_frame_plates(tmp_path, "train")
    assert got.files and not any(is_validation(f) for f in got.files)
    assert all(im.shape == (30, 60, 3) and im.mean() > 200 for im in got.images)
    assert set(got.texts) == {"ABC123"}


def test_augment_keeps_the_work_size_and_type():
    rng = np.random.default_rng(1)
    img = render_plates(1, rng, size=(150, 320), degrade=False).images[0]
    for _ in range(20):
        out = augment(img, rng, (48, 144))
        assert out.shape == (48 * WORK_SCALE, 144 * WORK_SCALE, 3) and out.dtype == np.uint8
    clean = augment(img, rng, (48, 144), strength=0.0)
    assert clean.shape == (96, 288, 3)


def test_ctc_targets_drop_characters_outside_the_alphabet():
    flat, lengths = encode_texts(["AB-1", "", "Z 9"], "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert lengths.tolist() == [3, 0, 2]
    assert flat.tolist() == [11, 12, 2, 36, 10]  # 1-based: class 0 is the CTC blank

