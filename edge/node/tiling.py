"""Run any detector over overlapping tiles of a large frame, for plates too small at full-frame scale.

A detector with a fixed input (e.g. 768x448) sees a 1080p frame at 0.4x: a plate 60 px wide
becomes 24 px, under what it finds reliably. Cutting the frame into cols x rows tiles that overlap
by `overlap` (so a plate on a seam is whole in one tile) raises that scale by about the grid size,
for cols x rows detector runs per frame. Boxes and corners are moved back to frame coordinates and
duplicates from overlapping tiles are removed by greedy NMS (numpy).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge.vision.base import Detections, Detector
from edge.vision.tracker import iou_matrix


def tile_grid(width: int, height: int, cols: int, rows: int, overlap: float = 0.1) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each tile, row-major, covering the frame with the given overlap."""
    tw = int(np.ceil(width / (cols - (cols - 1) * overlap)))
    th = int(np.ceil(height / (rows - (rows - 1) * overlap)))
    xs = [0] if cols == 1 else np.linspace(0, width - tw, cols).round().astype(int).tolist()
    ys = [0] if rows == 1 else np.linspace(0, height - th, rows).round().astype(int).tolist()
    return [(x, y, min(width, x + tw), min(height, y + th)) for y in ys for x in xs]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    if len(order) == 0:
        return np.zeros(0, np.int64)
    m = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(boxes), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= m[i] > iou
    return np.array(keep, np.int64)


class TiledDetector(Detector):
    def __init__(self, inner: Detector, cols: int, rows: int, overlap: float = 0.1, nms_iou: float = 0.4):
        if cols < 1 or rows < 1:
            raise ValueError("tiles: cols and rows must be at least 1")
        self.inner = inner
        self.cols, self.rows = int(cols), int(rows)
        self.overlap = float(overlap)
        self.nms_iou = float(nms_iou)

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for frame in frames:
            h, w = frame.shape[:2]
            tiles = tile_grid(w, h, self.cols, self.rows, self.overlap)
            dets = self.inner.predict([frame[y0:y1, x0:x1] for x0, y0, x1, y1 in tiles])
            boxes, scores, corners = [], [], []
            has_corners = all(d.corners is not None for d in dets)
            for (x0, y0, _, _), d in zip(tiles, dets):
                if not len(d):
                    continue
                off = np.array([x0, y0], np.float32)
                boxes.append(d.boxes + np.tile(off, 2))
                scores.append(d.scores)
                if has_corners:
                    corners.append(d.corners + off)
            if not boxes:
                out.append(Detections.empty())
                continue
            b, s = np.concatenate(boxes), np.concatenate(scores)
            c = np.concatenate(corners) if has_corners else None
            keep = nms(b, s, self.nms_iou)
            out.append(Detections(b[keep], s[keep], None if c is None else c[keep]))
        return out
