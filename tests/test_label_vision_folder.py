"""vision=labels on a labelled photo folder reads every labelled plate, with its own text.

Photo folders get three framings per plate by default (ocr_variants 3), and LabelOCR handed out one
ground-truth text per crop: the second and third framings of a plate took the next plates' texts,
every plate's vote failed, and a folder of 6 labelled plates gave 0 reads (6 dropped tracks).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, MemorySink
from edge.node.runner import load_stages
from edge.sources.folder import FolderSource


def _folder(tmp_path):
    rows = ["file,x,y,w,h,plate"]
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"i{i}.jpg"), np.full((200, 400, 3), 100, np.uint8))
        rows += [f"i{i}.jpg,10,10,80,40,AAA{i}11", f"i{i}.jpg,200,100,80,40,BBB{i}22"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.mark.parametrize("variants", [None, 3])
def test_every_labelled_plate_is_read_with_its_own_text(tmp_path, caplog, variants):
    folder = _folder(tmp_path)
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=str(folder), vision="labels",
                       save_crops=False, ocr_variants=variants)
    det, ocr = load_stages(cfg)
    sink = MemorySink()
    with caplog.at_level(logging.WARNING):
        m = EdgeNode(cfg, FolderSource(folder), det, ocr, sink).run()
    assert sorted(e.plate for e in sink.events) == sorted(f"{p}{i}{q}" for i in range(3) for p, q in (("AAA", "11"), ("BBB", "22")))
    assert m.dropped_tracks == 0
    assert ("ocr_variants 3 is not used" in caplog.text) == (variants == 3)


def test_labels_at_the_minimum_height_stay_in_step_with_the_crops(tmp_path):
    """A label a hair over min_plate_height tall in float64 (kept by the detector) but under it in
    the node's float32 boxes (not cropped): its text was handed to the next plate's crop."""
    rows = ["file,x,y,w,h,plate"]
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((200, 400, 3), 100, np.uint8))
    rows += ["a.jpg,10,62.214,60,10.0000005,EDGE1", "a.jpg,200,100,80,40,NEXT22"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=str(tmp_path), vision="labels",
                       save_crops=False, min_plate_height=10)
    det, ocr = load_stages(cfg)
    sink = MemorySink()
    EdgeNode(cfg, FolderSource(tmp_path), det, ocr, sink).run()
    assert "NEXT22" in [e.plate for e in sink.events]


def test_an_image_without_a_row_is_unlabelled_and_label_vision_says_so(tmp_path, caplog):
    """The folder's docstring: an image with no row at all is simply unlabelled. Its frame carried
    labels == [] ('labelled: no plate here'), so vision=labels read nothing there without a word."""
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((200, 400, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "b.jpg"), np.full((200, 400, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "c.jpg"), np.full((200, 400, 3), 100, np.uint8))
    (tmp_path / "labels.csv").write_text("file,x,y,w,h,plate\na.jpg,10,10,80,40,AAA111\nc.jpg,,,,,\n")
    frames = {f.name: f.labels for f in FolderSource(tmp_path)}
    assert frames["b.jpg"] is None and frames["c.jpg"] == [] and len(frames["a.jpg"]) == 1
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=str(tmp_path), vision="labels", save_crops=False)
    det, ocr = load_stages(cfg)
    with caplog.at_level(logging.WARNING):
        EdgeNode(cfg, FolderSource(tmp_path), det, ocr, MemorySink()).run()
    assert "no ground truth for frame 1" in caplog.text and det.unlabelled == 1
