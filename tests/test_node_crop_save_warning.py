"""A crop that cannot be saved is warned about once, then counted and summed up at the end.

It was one warning per read: a node whose crops folder is unwritable (disk full, a file in its
place, permissions) logged a line for every vehicle, burying the log, while the reads themselves
were fine (published without crop_ref).
"""

from __future__ import annotations

import logging

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, MemorySink, crop_axis_aligned
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource


def test_unsaveable_crops_warn_once_and_are_counted(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge")
    out = tmp_path / "out"
    out.mkdir()
    (out / "crops").write_text("a file where the crops folder should be")
    src = ScriptedSource(n_vehicles=6)
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(out), save_crops=True)
    sink = MemorySink()
    node = EdgeNode(cfg, src, ColourKeyedDetector(), ColourKeyedOCR(src.vehicles), sink, cropper=crop_axis_aligned)
    m = node.run()
    assert len(sink.events) == 6 and all(e.crop_ref is None for e in sink.events)  # the reads are not lost
    assert m.crops_not_saved == 6 and m.snapshot()["crops_not_saved"] == 6
    warned = [r.getMessage() for r in caplog.records if "cannot save crop" in r.getMessage()]
    assert len(warned) == 1, warned
    summary = [r.getMessage() for r in caplog.records if "crop(s) in all could not be saved" in r.getMessage()]
    assert len(summary) == 1 and "6 crop(s)" in summary[0]


def test_saved_crops_log_nothing(tmp_path, caplog):
    src = ScriptedSource(n_vehicles=2)
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path), save_crops=True)
    sink = MemorySink()
    node = EdgeNode(cfg, src, ColourKeyedDetector(), ColourKeyedOCR(src.vehicles), sink, cropper=crop_axis_aligned)
    m = node.run()
    assert all(e.crop_ref for e in sink.events) and m.crops_not_saved == 0
    # (the periodic metrics line names the crop stage's time: only warnings count here)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "crop" in r.getMessage()]
