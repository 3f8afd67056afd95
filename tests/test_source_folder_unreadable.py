"""Unreadable files in an image folder are logged once, then counted and summed up at the end.

Each one was its own warning line: a folder copied from a Mac holds a '._name.jpg' (AppleDouble)
beside every image, so a folder of 5000 photos logged 5000 warnings. The video and stream sources
already log a repeating problem once, then count it.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from edge.sources.folder import FolderSource


def test_unreadable_images_are_logged_once_then_summed_up(tmp_path, caplog):
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"img{i}.jpg"), np.full((20, 30, 3), 100, np.uint8))
        (tmp_path / f"._img{i}.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    src = FolderSource(tmp_path)
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert [f.name for f in frames] == [f"img{i}.jpg" for i in range(6)]
    assert src.skipped == 6 and len(src.problems) == 6  # every one counted and kept
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 2, warned
    assert "._img0.jpg: not a readable image" in warned[0]
    assert "6 in all, 6 frame(s) skipped" in warned[1]


def test_a_run_stopped_early_still_sums_them_up(tmp_path, caplog):
    for i in range(3):
        (tmp_path / f"a{i}.jpg").write_bytes(b"broken")
    cv2.imwrite(str(tmp_path / "z.jpg"), np.full((20, 30, 3), 100, np.uint8))
    src = FolderSource(tmp_path)
    with caplog.at_level(logging.WARNING):
        it = iter(src)
        next(it)  # z.jpg, after the three broken ones
        src.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 2 and "3 in all" in warned[1]
