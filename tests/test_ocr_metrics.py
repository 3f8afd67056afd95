"""ocr_ms_per_plate is the OCR time over the detections the OCR read, not over the sightings kept.

It divided by `plates` (detections that stayed plates after the plate check and the size check),
so a camera whose detector proposes many plate-like parts the OCR then rejects showed an OCR cost
per plate several times too high (all of them were read). Now `ocr_plates` and `ocr_crops` count
what the OCR read.
"""

from __future__ import annotations

import time

import numpy as np

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, MemorySink, crop_axis_aligned
from edge.vision.base import Detections
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource


class _Unsure(ColourKeyedDetector):
    """The scripted plates, with a score under SURE_SCORE: the plate check applies."""

    def predict(self, frames):
        return [Detections(d.boxes, np.full(len(d), 0.5, np.float32), None) for d in super().predict(frames)]


class _SlowOCR(ColourKeyedOCR):
    """Reads vehicle 1's plate as nothing (no plate after all); 3 ms per crop."""

    def predict(self, crops):
        time.sleep(0.003 * len(crops))
        return super().predict(crops)


def _run(tmp_path, variants):
    src = ScriptedSource(n_vehicles=4)
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path / "o"),
                       save_crops=False, ocr_variants=variants, second_look_max_chars=0)  # fmt: skip
    ocr = _SlowOCR(src.vehicles)
    ocr.plates[1] = ""
    node = EdgeNode(cfg, src, _Unsure(), ocr, MemorySink(), cropper=crop_axis_aligned)
    m = node.run()
    return m, m.snapshot(), ocr


def test_ocr_ms_per_plate_counts_every_detection_read(tmp_path):
    m, snap, ocr = _run(tmp_path, 1)
    assert snap["ocr_crops"] == sum(ocr.batches) == snap["ocr_plates"]
    assert m.plates < snap["ocr_plates"]  # vehicle 1's detections were read, then judged no plate
    assert snap["ocr_ms_per_plate"] == round(1000 * m.stage_s["ocr"] / snap["ocr_plates"], 3)
    assert 3.0 <= snap["ocr_ms_per_plate"] < 3.0 * snap["ocr_plates"] / m.plates


def test_framing_variants_are_crops_of_one_plate(tmp_path):
    m, snap, ocr = _run(tmp_path, 3)
    assert snap["ocr_crops"] == sum(ocr.batches) == 3 * snap["ocr_plates"]
    assert snap["ocr_ms_per_crop"] == round(1000 * m.stage_s["ocr"] / snap["ocr_crops"], 3)
    assert snap["ocr_ms_per_plate"] >= 9.0  # three 3 ms crops per plate
