"""The node with the project's trained ONNX detector and OCR on a rendered scene (skipped without them)."""

import collections
from pathlib import Path

import pytest

pytest.importorskip("edge.synth.scene")

from edge.node.config import build_config  # noqa: E402
from edge.node.pipeline import EdgeNode, MemorySink, _similar  # noqa: E402
from edge.node.runner import load_stages  # noqa: E402
from edge.sources import open_source  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
pytestmark = pytest.mark.skipif(
    not ((MODELS / "detector.onnx").is_file() and (MODELS / "ocr.onnx").is_file()), reason="trained models not present"
)


def test_real_stages_read_a_parking_entrance(tmp_path):
    spec = "synthetic:parking_entrance?seed=2&duration=12&width=1280&height=720"
    plates = {lab.plate for f in open_source(spec) for lab in f.labels}
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source=spec, output_dir=str(tmp_path))
    det, ocr = load_stages(cfg)
    sink = MemorySink()
    EdgeNode(cfg, open_source(spec), det, ocr, sink).run()
    reads = [e.plate for e in sink.events]
    assert reads, "nothing read"
    # Every read is one of the scene's plates (at most one character off), and no plate twice.
    assert all(any(_similar(r, p) and abs(len(r) - len(p)) <= 1 for p in plates) for r in reads), (reads, plates)
    matched = collections.Counter(next(p for p in plates if _similar(r, p)) for r in reads)
    assert max(matched.values()) == 1
    assert all((tmp_path / e.crop_ref).is_file() for e in sink.events)
