"""The swappable vision stages and the batch results they pass along.

Stages are tiny: a detector turns frames into `Detections`, an OCR turns plate crops into
`PlateTexts`. Results hold numpy arrays for a whole frame or batch (one object, not one per box)
so that the steps after them stay vectorized.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# A box coordinate beyond this many pixels is as good as infinite (a model's overflow stopping just
# short of it, a plug-in's garbage): sums, areas and distances of such coordinates overflow float32
# (3.4e38) in the tracker, the rectifier and the node, so such a box is left out with NaN ones.
MAX_BOX_COORDINATE = 1e18


def box_usable(box) -> bool:
    """Every coordinate finite and within MAX_BOX_COORDINATE (NaN compares False: no warning)."""
    return bool((np.abs(np.asarray(box, np.float64)) <= MAX_BOX_COORDINATE).all())


@dataclass(frozen=True)
class Detections:
    """Plates found in one frame.

    boxes: (N, 4) float32, x1 y1 x2 y2 in frame pixels.
    scores: (N,) float32 in [0, 1].
    corners: (N, 4, 2) float32 plate corners (top-left, top-right, bottom-right, bottom-left)
             in frame pixels, or None when the detector does not predict them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    corners: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 4, 2), np.float32))

    def __getitem__(self, idx) -> "Detections":
        return Detections(
            self.boxes[idx],
            self.scores[idx],
            None if self.corners is None else self.corners[idx],
        )


@dataclass(frozen=True)
class PlateTexts:
    """OCR results for a batch of N crops.

    texts: N plate strings ("" where nothing was read).
    confidence: (N,) float32, plate-level confidence (product of the character confidences).
    char_confidence: N float32 arrays, one value per character of the text.
    region / region_confidence: optional state guess per crop (two-letter code, upper case).
    """

    texts: list[str]
    confidence: np.ndarray
    char_confidence: list[np.ndarray]
    region: list[str | None] = field(default_factory=list)
    region_confidence: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


class Detector(ABC):
    """Finds plates in frames (BGR uint8, HxWx3)."""

    @abstractmethod
    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...


class PlateOCR(ABC):
    """Reads plate crops (BGR uint8, any size; the stage resizes)."""

    @abstractmethod
    def predict(self, crops: Sequence[np.ndarray]) -> PlateTexts: ...
