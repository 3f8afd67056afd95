"""Crops (one JPEG per read, never pruned) stop before they fill the disk: a full disk also stops the
outbox, and with it the camera. Below crop_min_free_mb free, reads go on without crop_ref."""

from __future__ import annotations

import logging
import shutil
from collections import namedtuple

from edge.node import pipeline
from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, MemorySink, crop_axis_aligned
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource

Usage = namedtuple("Usage", "total used free")


def run(tmp_path, free_mb, **cfg):
    src = ScriptedSource(n_vehicles=3)
    config = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path),
                          save_crops=True, **cfg)
    sink = MemorySink()
    node = EdgeNode(config, src, ColourKeyedDetector(), ColourKeyedOCR(src.vehicles), sink, cropper=crop_axis_aligned)
    real = shutil.disk_usage
    pipeline.shutil.disk_usage = lambda p: Usage(10 * 2**30, 0, int(free_mb * 2**20))
    try:
        m = node.run()
    finally:
        pipeline.shutil.disk_usage = real
    return sink.events, m


def test_a_nearly_full_disk_gets_no_more_crops_but_the_reads_go_on(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edge")
    events, m = run(tmp_path, free_mb=100)
    assert len(events) == 3 and all(e.crop_ref is None for e in events)
    assert m.crops_not_saved == 3 and not (tmp_path / "crops").exists()
    warned = [r.getMessage() for r in caplog.records if "cannot save crop" in r.getMessage()]
    assert len(warned) == 1 and "100 MB free" in warned[0] and "crop_min_free_mb 1024" in warned[0]


def test_enough_room_or_the_check_off_saves_crops(tmp_path):
    events, m = run(tmp_path / "a", free_mb=5000)
    assert all(e.crop_ref for e in events) and m.crops_not_saved == 0
    events, m = run(tmp_path / "b", free_mb=100, crop_min_free_mb=0)
    assert all(e.crop_ref for e in events) and m.crops_not_saved == 0
