"""How tall a plate can be at each image row of a fixed camera, learned from the camera's own reads.

For a camera without roll, points at one height above a flat road that project to one image row
are at one depth, and a plate's size in pixels is inversely proportional to its depth, as is the
row's distance below the horizon: plate height grows linearly with the row, h = a * y + b. Plates on
different vehicles sit at different heights (bumpers, trucks), which spreads sizes about that line
by a few tens of percent; a van's door placard or a billboard lettered like a plate is several
times larger than any plate at its row (the city scene's "HVAC 555" placard: 11-15x the line).
Heights, not widths: a box cut by the left or right frame edge keeps its height.

The model learns from the sightings of tracks the node published (confirmed plates), fits the line
robustly (sightings far off the current line do not pull it), and, once it has seen enough tracks
spread over enough rows, calls a detection implausible when it is more than `max_ratio` times taller
than the line at its row. Only an upper bound: a plate smaller than expected is a motorcycle or a
far lane, not a sign. Photos from different cameras (independent frames) must not share a model.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class PlateSizeModel:
    def __init__(
        self,
        max_ratio: float = 4.0,
        min_tracks: int = 2,
        min_samples: int = 20,
        min_row_spread: float = 0.1,
        window: int = 2000,
    ):
        """max_ratio: a detection taller than this many times the line at its row is implausible.
        The model decides nothing before `min_tracks` published tracks gave `min_samples` sightings
        spanning `min_row_spread` of the frame height; it keeps the last `window` sightings."""
        if max_ratio <= 1:
            raise ValueError(f"max_ratio must be > 1, got {max_ratio}")
        self.max_ratio = float(max_ratio)
        self.min_tracks = int(min_tracks)
        self.min_samples = int(min_samples)
        self.min_row_spread = float(min_row_spread)
        self._rows: deque[float] = deque(maxlen=window)
        self._heights: deque[float] = deque(maxlen=window)
        self._tracks = 0
        self._frame_h: float | None = None
        self._line: tuple[float, float] | None = None  # (a, b); None: not ready
        self._stale = False  # new sightings since the last fit (refitted lazily, once)
        self._floor = 1.0

    @property
    def ready(self) -> bool:
        return self._line_now() is not None

    def learn(self, boxes: np.ndarray, frame_height: float) -> None:
        """Sightings (xyxy boxes) of one published track."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return
        self._rows.extend(((boxes[:, 1] + boxes[:, 3]) / 2).tolist())
        self._heights.extend((boxes[:, 3] - boxes[:, 1]).tolist())
        self._tracks += 1
        self._frame_h = float(frame_height)
        self._stale = True

    def expected_height(self, rows: np.ndarray) -> np.ndarray | None:
        """The line's plate height at each row (None: not ready)."""
        line = self._line_now()
        if line is None:
            return None
        a, b = line
        return np.maximum(a * np.asarray(rows, np.float32) + b, self._floor)

    def implausible(self, boxes: np.ndarray) -> np.ndarray:
        """Boolean per box (xyxy): too tall for a plate at its row. All False until ready."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        expected = self.expected_height((boxes[:, 1] + boxes[:, 3]) / 2)
        if expected is None:
            return np.zeros(len(boxes), bool)
        return (boxes[:, 3] - boxes[:, 1]) > self.max_ratio * expected

    def _line_now(self) -> tuple[float, float] | None:
        if not self._stale:  # per frame: the last fit (or "not ready") until a track is learned
            return self._line
        self._stale, self._line = False, None
        if self._tracks < self.min_tracks or len(self._rows) < self.min_samples or not self._frame_h:
            return None
        y = np.asarray(self._rows, np.float64)
        w = np.asarray(self._heights, np.float64)
        if np.ptp(y) < self.min_row_spread * self._frame_h:
            return None
        # Start from the line through the median heights of the lower and upper halves of the rows
        # (a single published sign cannot move a median), then refit by least squares on the
        # sightings within 1.6x of the line, twice.
        mid = np.median(y)
        lo, hi = y <= mid, y > mid
        if not hi.any():
            return None
        y0, y1 = np.median(y[lo]), np.median(y[hi])
        w0, w1 = np.median(w[lo]), np.median(w[hi])
        a = (w1 - w0) / (y1 - y0) if y1 > y0 else 0.0
        b = w0 - a * y0
        for _ in range(2):
            pred = np.maximum(a * y + b, 1.0)
            keep = np.abs(np.log(w / pred)) < np.log(1.6)
            if keep.sum() < self.min_samples // 2 or np.ptp(y[keep]) <= 0:
                break
            a, b = np.polyfit(y[keep], w[keep], 1)
        self._floor = max(1.0, float(np.percentile(w, 5)) / 2)
        self._line = (float(a), float(b))
        return self._line
