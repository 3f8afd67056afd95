"""The per-camera plate size model: learned from published tracks, robust to a published sign,
silent until it has seen enough; in the node, a placard lettered like a plate is not published."""

import numpy as np
import pytest

from edge.node.config import EdgeConfigError, build_config
from edge.node.pipeline import EdgeNode, MemorySink, crop_axis_aligned
from edge.vision.plate_size import PlateSizeModel
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource

FRAME_H = 1080


def track(rng, rows, slope=0.06, offset=-10.0, spread=0.15):
    """Sightings (xyxy, 2:1) of a plate along a camera's line h = slope*y + offset, +-spread."""
    rows = np.asarray(rows, np.float32)
    h = (slope * rows + offset) * rng.uniform(1 - spread, 1 + spread, len(rows))
    x = rng.uniform(100, 1500, len(rows))
    return np.stack([x, rows - h / 2, x + 2 * h, rows + h / 2], axis=1)


def box_at(row, height, width=None):
    width = 2 * height if width is None else width
    return np.array([[500, row - height / 2, 500 + width, row + height / 2]], np.float32)


def test_silent_until_enough_tracks_samples_and_rows():
    rng = np.random.default_rng(0)
    m = PlateSizeModel()
    huge = box_at(600, 1000)
    m.learn(track(rng, np.linspace(500, 900, 30)), FRAME_H)
    assert not m.ready and not m.implausible(huge).any()  # one track: too few
    narrow = PlateSizeModel()
    for _ in range(3):
        narrow.learn(track(rng, np.linspace(600, 620, 30)), FRAME_H)  # all on 20 rows (2% of the frame)
    assert not narrow.ready and not narrow.implausible(huge).any()
    m.learn(track(rng, np.linspace(400, 1000, 30)), FRAME_H)
    assert m.ready and m.implausible(huge).all()


def test_learns_the_line_and_flags_only_far_wider_boxes():
    rng = np.random.default_rng(1)
    m = PlateSizeModel(max_ratio=4.0)
    for _ in range(6):
        m.learn(track(rng, rng.uniform(350, 1050, 25)), FRAME_H)
    rows = np.array([400.0, 700.0, 1000.0])
    assert m.expected_height(rows) == pytest.approx(0.06 * rows - 10, rel=0.1)
    for row in rows:
        h = 0.06 * row - 10
        assert not m.implausible(box_at(row, 1.5 * h)).any()  # a truck's plate, a close one
        assert not m.implausible(box_at(row, 0.3 * h)).any()  # smaller is a motorcycle, not a sign
        assert m.implausible(box_at(row, 5 * h)).all()
        assert m.implausible(box_at(row, 5 * h, width=20)).all()  # cut by the frame edge: still tall


def test_a_published_placard_does_not_move_the_line():
    rng = np.random.default_rng(2)
    m = PlateSizeModel()
    m.learn(track(rng, np.linspace(400, 1000, 25)), FRAME_H)
    placard = track(rng, np.linspace(150, 400, 20), slope=0.75, offset=50)  # 12x the line, high up
    m.learn(placard, FRAME_H)
    for _ in range(3):
        m.learn(track(rng, rng.uniform(400, 1000, 25)), FRAME_H)
    assert m.expected_height(np.array([700.0])) == pytest.approx(0.06 * 700 - 10, rel=0.15)
    assert m.implausible(placard).mean() > 0.9


def test_bad_ratio_is_refused_by_name():
    with pytest.raises(ValueError, match="max_ratio"):
        PlateSizeModel(max_ratio=1.0)
    with pytest.raises(EdgeConfigError, match="plate_size_max_ratio"):
        build_config(camera_id="c", agency_id="a", source="x", plate_size_max_ratio=0.5)


@pytest.mark.parametrize("ratio, placard_published", [(None, False), (0, True)])
def test_node_does_not_publish_a_placard_far_wider_than_its_plates(tmp_path, ratio, placard_published):
    """Five plates 16 px tall, then a placard lettered like a plate 4.5x as tall: by then the node
    knows its plates' size and drops it (default), also while the frame edge cuts it; with the
    check off (0) it is published."""
    src = ScriptedSource(n_vehicles=6, seed=7, sizes={5: 4.5})
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path),
                       plate_size_max_ratio=ratio)
    sink = MemorySink()
    node = EdgeNode(cfg, src, ColourKeyedDetector(), ColourKeyedOCR(src.vehicles), sink, cropper=crop_axis_aligned)
    m = node.run()
    plates = sorted(e.plate for e in sink.events)
    placard = src.vehicles[5].plate
    assert plates == sorted(v.plate for v in src.vehicles if placard_published or v.plate != placard)
    assert (m.oversized > 0) != placard_published
    assert m.snapshot()["oversized"] == m.oversized
