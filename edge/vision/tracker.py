"""Follow each plate across frames so that one vehicle pass becomes one read.

Association per frame is one affinity matrix (tracks x detections, numpy): the IoU between each
track's predicted box (last box moved by its velocity over the elapsed time) and the new boxes,
plus a bonus for similar-sized boxes whose centres are within a few plate heights of the prediction
(small fast plates never overlap from one frame to the next). Then a greedy assignment, highest
affinity first (with a handful of plates in view, greedy equals Hungarian in practice). A track ends when
it has not been matched for `timeout_s` of media time; the caller then votes over its readings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge.vision.base import box_iou, box_usable
from edge.vision.vote import Reading


log = logging.getLogger(__name__)

iou_matrix = box_iou  # tracks x detections, xyxy -> (T, N)


def affinity_matrix(pred: np.ndarray, boxes: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Track-detection affinity (T, N): IoU, plus a nearness bonus for boxes of similar size whose
    centres lie within `radius` (per track, in plate heights) of the prediction.

    IoU alone fails for small, fast plates (a 5 px tall plate that moves 10 px a frame never
    overlaps its previous box, and a new track has no velocity yet); plates of different vehicles
    are many plate heights apart, so nearness in plate heights is a safe second cue.
    """
    pred = np.asarray(pred, np.float32).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    iou = iou_matrix(pred, boxes)
    hp = np.maximum(pred[:, 3] - pred[:, 1], 1.0)[:, None]
    hb = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)[None, :]
    cp = (pred[:, None, :2] + pred[:, None, 2:]) / 2
    cb = (boxes[None, :, :2] + boxes[None, :, 2:]) / 2
    dist = np.linalg.norm(cp - cb, axis=2) / np.maximum(hp, hb)
    ratio = hb / hp
    r = np.asarray(radius, np.float32).reshape(-1, 1)
    near = (dist < r) & (ratio > 0.5) & (ratio < 2.0)
    return np.where(near, iou + 0.5 * (1.0 - dist / r), iou).astype(np.float32)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken in decreasing IoU order, each row and column at most once."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= threshold)
    if rows.size == 0:
        return []
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r, used_c, pairs = set(), set(), []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


@dataclass
class Observation:
    """One sighting of a plate: where, when, and what the OCR read."""

    frame_index: int
    timestamp: float  # media seconds
    box: np.ndarray  # (4,) xyxy
    score: float  # detector score
    reading: Reading
    corners: np.ndarray | None = None  # (4, 2)
    crop: np.ndarray | None = None
    frame_size: tuple[int, int] | None = None  # (width, height)
    captured_at: Any = None  # datetime (UTC) of the frame
    region: str | None = None  # the OCR's state guess, when it makes one
    region_confidence: float | None = None


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    best: Observation | None = None  # the sighting with the best crop (kept with its pixels)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # px/s per coord
    held_until: float = float("-inf")  # media time up to which static frames vouch for the track
    voted: str | None = None  # the plate its readings vote for, once it has ended (set by the node)

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    @property
    def first(self) -> Observation:
        return self.observations[0]

    def predicted_box(self, timestamp: float) -> np.ndarray:
        dt = max(0.0, timestamp - self.last.timestamp)
        return self.last.box + self.velocity * dt

    def add(self, obs: Observation) -> None:
        if self.observations:
            prev = self.last
            dt = obs.timestamp - prev.timestamp
            if dt > 0:
                v = (obs.box - prev.box) / dt
                # Smooth: plate boxes jitter by a few pixels frame to frame.
                self.velocity = v if len(self.observations) == 1 else 0.5 * self.velocity + 0.5 * v
        self.observations.append(obs)
        if self.best is None or _crop_quality(obs) > _crop_quality(self.best):
            self.best = obs
        # Only the best sighting keeps its pixels: a long pass must not hold every crop in memory.
        for o in self.observations[:-1]:
            if o is not self.best:
                o.crop = None
        if obs is not self.best:
            obs.crop = None

    def absorb(self, other: "Track") -> None:
        """Take over the sightings of another (ended) track of the same vehicle, e.g. the part of
        a pass after an occlusion; the best crop is the better of the two."""
        self.observations = sorted(self.observations + other.observations, key=lambda o: o.timestamp)
        if other.best is not None and (self.best is None or _crop_quality(other.best) > _crop_quality(self.best)):
            self.best = other.best

    def left_the_frame(self) -> bool:
        """Whether the last sighting touches the frame's border (2% margin): the plate was leaving.
        True when the frame size is not known."""
        o = self.last
        if o.frame_size is None:
            return True
        w, h = o.frame_size
        mx, my = 0.02 * w, 0.02 * h
        x1, y1, x2, y2 = (float(v) for v in o.box)
        return x1 <= mx or y1 <= my or x2 >= w - mx or y2 >= h - my

    def readings(self) -> list[Reading]:
        return [o.reading for o in self.observations]

    def direction(self) -> str:
        """approaching / receding / left / right / unknown, from the first and last box.

        Assumes the usual ALPR mounting: a camera looking along the road, so a plate that grows
        (or moves down the frame) comes closer.
        """
        if len(self.observations) < 2:
            return "unknown"
        a, b = self.first.box, self.last.box
        ha, hb = max(a[3] - a[1], 1e-3), max(b[3] - b[1], 1e-3)
        growth = float(hb / ha)
        dx = float((b[0] + b[2]) / 2 - (a[0] + a[2]) / 2)
        dy = float((b[1] + b[3]) / 2 - (a[1] + a[3]) / 2)
        w = float(max(a[2] - a[0], b[2] - b[0], 1e-3))
        if growth > 1.15:
            return "approaching"
        if growth < 1 / 1.15:
            return "receding"
        if abs(dx) >= abs(dy) and abs(dx) > 0.5 * w:
            return "right" if dx > 0 else "left"
        if abs(dy) > 0.5 * float(max(ha, hb)):
            return "approaching" if dy > 0 else "receding"
        return "unknown"


def _crop_quality(o: Observation) -> float:
    # Sharp, confidently read and large: OCR confidence first, box height to break ties.
    h = float(o.box[3] - o.box[1])
    return o.reading.confidence * o.score + 1e-4 * h


class IouTracker:
    def __init__(self, iou_threshold: float = 0.1, timeout_s: float = 1.0, max_track_s: float = 120.0):
        self.iou_threshold = float(iou_threshold)
        self.timeout_s = float(timeout_s)
        self.max_track_s = float(max_track_s)
        self.active: list[Track] = []
        self._next_id = 0
        self.non_finite_boxes = 0  # sightings left out: their box was NaN or infinite

    def __len__(self) -> int:
        return len(self.active)

    def update(self, timestamp: float, observations: Sequence[Observation]) -> list[Track]:
        """Associate this frame's sightings with the active tracks; return tracks that ended. A
        sighting whose box is not finite (NaN or infinite, from a detector plug-in; or beyond
        MAX_BOX_COORDINATE, whose distances overflowed here) is left out, the first logged, all
        counted in `non_finite_boxes`: it matches nothing (its IoU is 0), and a read published from
        it was refused by the read event, which stopped the node."""
        if observations and not all(box_usable(o.box) for o in observations):
            kept = [o for o in observations if box_usable(o.box)]
            if not self.non_finite_boxes:
                log.warning("a detection with a NaN or infinite box (or one beyond 1e18 px) was left out of tracking "
                            "(each one counted, not logged again)")
            self.non_finite_boxes += len(observations) - len(kept)
            observations = kept
        finished = self.expire(timestamp)
        if observations:
            boxes = np.stack([o.box for o in observations]).astype(np.float32)
            if self.active:
                pred = np.stack([t.predicted_box(timestamp) for t in self.active])
                # A track with a velocity predicts well; a new one may be anywhere near.
                radius = np.array([2.5 if len(t.observations) > 1 else 4.0 for t in self.active])
                aff = affinity_matrix(pred, boxes, radius)
                # A track held by static frames since its last sighting: its plate may have stood
                # still all along (a car waiting at a barrier: predicted at its old speed it was
                # seconds of driving away, not found, and read twice) or crept on below the motion
                # gate's threshold (as predicted). Either place is the track's.
                held = [i for i, t in enumerate(self.active) if t.held_until > t.last.timestamp]
                if held:
                    still = np.stack([self.active[i].last.box for i in held])
                    aff[held] = np.maximum(aff[held], affinity_matrix(still, boxes, radius[held]))
                pairs = greedy_match(aff, self.iou_threshold)
            else:
                pairs = []
            matched = set()
            for r, c in pairs:
                self.active[r].add(observations[c])
                matched.add(c)
            for c, o in enumerate(observations):
                if c not in matched:
                    t = Track(self._next_id)
                    self._next_id += 1
                    t.add(o)
                    self.active.append(t)
        return finished

    def expire(self, timestamp: float) -> list[Track]:
        """End tracks unseen for timeout_s (or alive longer than max_track_s)."""
        done, keep = [], []
        for t in self.active:
            stale = timestamp - max(t.last.timestamp, t.held_until) > self.timeout_s
            too_long = timestamp - t.first.timestamp > self.max_track_s
            (done if stale or too_long else keep).append(t)
        self.active = keep
        return done

    def hold(self, timestamp: float) -> None:
        """A static frame (the motion gate saw nothing move): every plate in view is still where
        it was, so no track times out for lack of sightings during a pause. A plate last seen at
        the frame's border is not in view: it left (its vehicle's body a moment after it), and its
        track times out as usual instead of waiting for the next thing to move."""
        for t in self.active:
            if t.last.frame_size is None or not t.left_the_frame():
                t.held_until = timestamp

    def flush(self) -> list[Track]:
        done, self.active = self.active, []
        return done
