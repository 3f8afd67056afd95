"""Plate check: a detector's proposals kept only where the OCR reads a plate in them.

The detector network alone confuses plates with plate-like parts of a car (brake lights, dark
recesses, badges): on the real frames their scores overlap the plates' at 0.55-0.65, so no score
threshold separates them. A plate has characters; those parts do not. The check reads each
proposal's plain crop once (batched over the frames) and keeps it when the OCR finds at least
`min_chars` characters. This is the classic ALPR cascade (OpenALPR also confirms candidate regions
by character analysis), at ~0.4 ms per proposal.

Chosen on the TRAIN frames only (`edge/training/splits.py`), by the rule "highest recall, then
fewest false alarms, then the lower threshold", over proposal thresholds 0.35-0.59 and 3 or 4
characters: 0.5 and 3 characters (train, OCR version 3: 91/91 plates, 0.033 false alarms per
frame, 2 of the 3 unlabelled real plates; the network alone at its own threshold 0.59: 89/91,
0.088). Three characters rather than four keeps short vanity plates.

Proposals scoring at least `sure` (0.75) are kept unchecked: on the train frames no plate-like
part scored that high that the check would have removed (the same 3 false alarms as checking every
proposal), and it halves the reads the check costs (46 of 111 proposals read instead of 111).

Proposals shorter than `min_height` pixels are kept unchecked: too few pixels to read, they are
what the node tracks without reading (a plate far away, approaching).

Two users, one rule: `OcrCheckedDetector` is the check as a detector stage of its own (`bench
detect`, library use); the edge node applies the same rule to the readings it makes of every
detection anyway (`EdgeNode._read_stage`), so a checked plate is not read twice.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from edge.vision.base import Detections, Detector, PlateOCR
from edge.vision.ocr import read_plates

PROPOSAL_THRESHOLD = 0.5
SURE_SCORE = 0.75
MIN_CHARS = 3


def needs_reading(d: Detections, sure: float = SURE_SCORE, min_height: float = 0.0) -> np.ndarray:
    """Indices of the proposals the check decides by reading: not sure, and tall enough to read."""
    if not len(d):
        return np.zeros(0, int)
    return np.nonzero((d.scores < sure) & ((d.boxes[:, 3] - d.boxes[:, 1]) >= min_height))[0]


class OcrCheckedDetector(Detector):
    """`detector`'s proposals that `ocr` reads at least `min_chars` characters in."""

    def __init__(
        self,
        detector: Detector,
        ocr: PlateOCR,
        min_chars: int = MIN_CHARS,
        min_height: float = 0.0,
        cropper: Callable | None = None,
        sure: float = SURE_SCORE,
    ) -> None:
        if min_chars < 1:
            raise ValueError(f"min_chars must be >= 1, got {min_chars}")
        self.detector = detector
        self.ocr = ocr
        self.min_chars = int(min_chars)
        self.min_height = float(min_height)
        self.sure = float(sure)
        if cropper is None:
            from edge.vision.rectify import crop_plates as cropper
        self.cropper = cropper
        size = (getattr(ocr, "width", None), getattr(ocr, "height", None))
        self.crop_size = size if all(isinstance(v, int) and v > 0 for v in size) else (192, 96)

    @property
    def threshold(self) -> float:  # the proposals' score threshold
        return self.detector.threshold

    @property
    def input_size(self):
        return self.detector.input_size

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """The proposals of every frame, checked with one OCR call for the whole batch. (The edge
        node does the same check on the readings it makes anyway: `EdgeNode._read_stage`.)"""
        proposals = self.detector.predict(frames)
        crops: list[np.ndarray] = []
        widths: list[float] = []  # each proposal's width in its frame (an ensemble routes by it)
        checked: list[np.ndarray] = []  # per frame: indices of the proposals read
        for frame, d in zip(frames, proposals):
            idx = needs_reading(d, self.sure, self.min_height)
            checked.append(idx)
            if len(idx):
                crops.extend(self.cropper(frame, d[idx], self.crop_size))
                widths.extend((d.boxes[idx, 2] - d.boxes[idx, 0]).tolist())
        if not crops:
            return proposals
        texts = read_plates(self.ocr, crops, widths)
        n_chars = np.fromiter((len(t) for t in texts.texts), int, len(crops))
        out, at = [], 0
        for d, idx in zip(proposals, checked):
            keep = np.ones(len(d), bool)
            keep[idx] = n_chars[at : at + len(idx)] >= self.min_chars
            at += len(idx)
            out.append(d if keep.all() else d[keep])
        return out
