"""Motion gating: skip frames where nothing moved, before the expensive stages run.

The frame is shrunk to a small grey thumbnail (~0.5 ms for 1080p) and differenced
against a reference thumbnail; the frame "moves" when the share of thumbnail pixels that changed by
more than `pixel_delta` grey levels exceeds `threshold`. The reference is the last frame that
passed the gate (not simply the previous frame), so a slow vehicle that changes little between
consecutive frames still accumulates enough change to be processed, and a scene that settled is
not reprocessed frame after frame.

Frames of any numeric dtype and channel count are compared as 8-bit grey thumbnails (integers
scaled from their type's range, floats from [0, 1], or from [0, 255] when a frame exceeds 1), and a
frame whose shape or dtype differs from the reference's (a source switching from 8 to 16 bits, a
resolution change) is processed and becomes the new reference: it is not compared across formats.
"""

from __future__ import annotations

import cv2
import numpy as np


class MotionGate:
    def __init__(self, threshold: float = 0.002, pixel_delta: int = 20, width: int = 160, max_skip: int = 0):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("motion threshold must be a share of pixels in [0, 1]")
        self.threshold = float(threshold)
        self.pixel_delta = int(pixel_delta)
        self.width = int(width)
        self.max_skip = int(max_skip)  # >0: process at least every max_skip-th frame anyway
        self._ref: np.ndarray | None = None
        self._ref_key: tuple | None = None  # (shape, dtype) of the frame the reference came from
        self._skipped = 0
        self.last_score = 0.0

    def thumbnail(self, frame: np.ndarray) -> np.ndarray:
        """A small uint8 grey image of `frame` (H x W, or H x W x C of any numeric dtype)."""
        frame = _as_resizable(frame)
        h, w = frame.shape[:2]
        tw = min(self.width, w)
        th = max(1, round(h * tw / w))
        if w > 4 * tw:
            # Nearest-neighbour to 4x the thumbnail first (a cheap subsample), then area-average:
            # a quarter of the cost of INTER_AREA over a whole 1080p frame, same thumbnail to the gate.
            frame = cv2.resize(frame, (4 * tw, 4 * th), interpolation=cv2.INTER_NEAREST)
        small = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            c = small.shape[2]
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY if c == 3 else cv2.COLOR_BGRA2GRAY) if c in (3, 4) \
                else small.mean(axis=2, dtype=np.float32).astype(small.dtype)
        return cv2.GaussianBlur(_to_u8(small), (3, 3), 0)

    def __call__(self, frame: np.ndarray) -> bool:
        """True when the frame should be processed."""
        frame = np.asarray(frame)
        if frame.ndim not in (2, 3) or frame.size == 0 or frame.dtype.kind not in "biuf":
            # nothing to compare: processed, so the next stage names what is wrong with it
            self.reset()
            self.last_score = 1.0
            return True
        key = (frame.shape, frame.dtype.str)
        thumb = self.thumbnail(frame)
        if self._ref is None or self._ref_key != key or self._ref.shape != thumb.shape:
            self._ref, self._ref_key = thumb, key
            self._skipped = 0
            self.last_score = 1.0
            return True
        diff = cv2.absdiff(thumb, self._ref)
        self.last_score = float(np.count_nonzero(diff > self.pixel_delta)) / diff.size
        moving = self.last_score > self.threshold
        if moving or (self.max_skip and self._skipped >= self.max_skip):
            self._ref = thumb
            self._skipped = 0
            return True
        self._skipped += 1
        return False

    def reset(self) -> None:
        self._ref = None
        self._ref_key = None
        self._skipped = 0


def _as_resizable(frame: np.ndarray) -> np.ndarray:
    """`frame` as uint8, uint16 or float32 (what cv2.resize and cvtColor take), values kept in scale."""
    if frame.dtype in (np.uint8, np.uint16, np.float32):
        return frame
    if frame.dtype == np.bool_:
        return frame.astype(np.uint8) * 255
    if frame.dtype.kind == "f":  # float16, float64
        return frame.astype(np.float32)
    info = np.iinfo(frame.dtype)  # other integers: their type's range onto uint16's
    if info.bits <= 16:
        return (frame.astype(np.int32) - info.min).astype(np.uint16) << (16 - info.bits)
    return ((frame.astype(np.float64) - info.min) * (65535.0 / (float(info.max) - info.min))).astype(np.uint16)


def _to_u8(small: np.ndarray) -> np.ndarray:
    """A thumbnail scaled to uint8 grey levels, so `pixel_delta` means the same for every dtype."""
    if small.dtype == np.uint8:
        return small
    if small.dtype == np.uint16:
        return (small.astype(np.uint32) // 257).astype(np.uint8)
    small = np.nan_to_num(small.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    scale = 255.0 if small.size and float(small.max()) <= 1.0 else 1.0  # [0, 1] images, else grey levels
    return np.clip(small * scale, 0, 255).astype(np.uint8)
