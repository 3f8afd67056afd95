"""Cut detected plates out of a frame for the OCR: perspective-rectified when corners are known.

`crop_plates(frame, detections, out_size)` returns one (h, w, 3) uint8 crop per detection, stacked
as an (N, h, w, 3) array so the OCR gets a batch. With the detector's 4 corners the plate is
warped to a frontal rectangle (tilted and yawed plates come out straight); when there are no
corners, or they are implausible (not convex, or far smaller than the box), a padded crop of the
box is resized instead.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.vision.base import Detections, box_usable


def _quad_ok(quad: np.ndarray, box: np.ndarray) -> bool:
    """Convex, clockwise-ish, and covering a sane part of its 2:1 box."""
    if not np.all(np.isfinite(quad)):
        return False
    edges = np.roll(quad, -1, axis=0) - quad
    nxt = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0]
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return False
    x, y = quad[:, 0], quad[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    box_area = float((box[2] - box[0]) * (box[3] - box[1]))
    return box_area > 0 and 0.25 * box_area <= area <= 2.5 * box_area


def crop_plates(
    frame: np.ndarray, detections: Detections, out_size: tuple[int, int] = (192, 96), pad: float = 0.06
) -> np.ndarray:
    """(N, out_h, out_w, 3) uint8 plate crops. out_size is (width, height); pad widens each side
    by that fraction of the plate size, so characters touching the plate edge are not cut."""
    out_w, out_h = int(out_size[0]), int(out_size[1])
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"out_size must be positive (width, height), got {out_size}")
    n = len(detections)
    crops = np.zeros((n, out_h, out_w, 3), np.uint8)
    dst = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    for i in range(n):
        box = np.asarray(detections.boxes[i], np.float32)
        if not box_usable(box):  # nothing to cut (a detector plug-in's NaN or absurd box): a black crop
            continue
        quad = None if detections.corners is None else np.asarray(detections.corners[i], np.float32)
        if quad is None or quad.shape != (4, 2) or not _quad_ok(quad, box):
            quad = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], np.float32)
        centre = quad.mean(axis=0)
        quad = centre + (quad - centre) * (1.0 + 2.0 * pad)
        m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
        # Downscaling by more than 2x through warpPerspective aliases: blur first in that case.
        src_w = float(np.linalg.norm(quad[1] - quad[0]))
        img = frame
        if src_w > 2.5 * out_w:
            # The region the plate covers, inside the frame (a box can reach past the frame's edge,
            # or lie beyond it: nothing of it to blur then). A box wider than the frame is blurred
            # as one spanning the frame: the kernel grows with sigma, and a garbage box 2e5 px wide
            # made this blur run for minutes.
            fh, fw = frame.shape[:2]
            sigma = 0.4 * min(src_w, max(fh, fw)) / out_w
            x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 8
            x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 8
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(fw, x1), min(fh, y1)
            if x1 > x0 and y1 > y0:
                img = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), sigma)
                m = cv2.getPerspectiveTransform((quad - np.array([x0, y0], np.float32)).astype(np.float32), dst)
        crops[i] = cv2.warpPerspective(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crops
