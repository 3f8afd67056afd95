"""Stand-in vision stages that take plates from the source's own ground truth.

For simulating a camera *network* (`alpr-edge sim`, broker and gate load, store-and-forward
drills) on one machine, where running N real detectors would measure the CPU rather than the
network: synthetic scenes and labelled folders know where each plate is and what it says.
`label_misread_rate` corrupts characters at random (seeded) so the tracker and vote still have
work to do. Reads made this way say nothing about recognition quality; the node logs a warning.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Sequence

import numpy as np

from edge.vision.base import Detections, Detector, PlateOCR, PlateTexts

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

log = logging.getLogger(__name__)


class LabelDetector(Detector):
    """Boxes from `Frame.labels`; hands the texts to its LabelOCR in the order the node crops them."""

    def __init__(self, min_height: float = 0.0, keep_texts: bool = True) -> None:
        # Plates the node would not read are not "detected" at all, so the texts handed to the
        # OCR stay in step with the crops the node makes.
        self.min_height = float(min_height)
        self.keep_texts = keep_texts  # False: a real OCR reads the crops (ground-truth boxes only)
        self.pending: deque[str] = deque()
        self.unlabelled = 0  # frames the source has no ground truth for: nothing is "detected" there

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        raise TypeError("LabelDetector needs Frame objects with labels: the node calls predict_frames")

    def predict_frames(self, frames) -> list[Detections]:
        out = []
        for f in frames:
            if f.labels is None:
                if not self.unlabelled:
                    log.warning(
                        "vision=labels: the source has no ground truth for frame %d, so no plate is read "
                        "there (labels come from synthetic: sources, a video with the ground_truth.jsonl "
                        "of `alpr-edge synth scene` beside it, or an image folder's labels); "
                        "--vision onnx reads footage", f.index,
                    )
                self.unlabelled += 1
            labels = list(f.labels or [])
            boxes = np.array([lab.box for lab in labels], np.float32).reshape(-1, 4)
            # the node's own test for plates too small to read (float32 boxes), so the texts handed
            # to the OCR stay in step with the crops it makes
            tall = (boxes[:, 3] - boxes[:, 1]) >= self.min_height
            labels, boxes = [lab for lab, keep in zip(labels, tall) if keep], boxes[tall]
            if not labels:
                out.append(Detections.empty())
                continue
            out.append(Detections(boxes, np.ones(len(labels), np.float32), None))
            if self.keep_texts:
                self.pending.extend(lab.plate for lab in labels)
        return out


class LabelOCR(PlateOCR):
    # one text per detection, in the detector's order: the node must crop each plate once (no
    # framing variants, no second look)
    one_crop_per_detection = True

    def __init__(self, detector: LabelDetector, misread_rate: float = 0.0, seed: int = 0) -> None:
        self.detector = detector
        self.misread_rate = float(misread_rate)
        self.rng = np.random.default_rng(seed)

    def predict(self, crops: Sequence[np.ndarray]) -> PlateTexts:
        texts, conf, cc = [], [], []
        for _ in range(len(crops)):
            t = list(self.detector.pending.popleft()) if self.detector.pending else []
            c = self.rng.uniform(0.85, 0.99, len(t)).astype(np.float32)
            wrong = self.rng.random(len(t)) < self.misread_rate
            for p in np.nonzero(wrong)[0]:
                t[p] = _ALPHABET[int(self.rng.integers(len(_ALPHABET)))]
                c[p] = self.rng.uniform(0.3, 0.7)
            texts.append("".join(t))
            conf.append(float(np.prod(c)) if len(c) else 0.0)
            cc.append(c)
        return PlateTexts(texts, np.array(conf, np.float32), cc)
