"""The node on the synthetic scene renderer: exactly one read per vehicle pass, in real geometry
(perspective growth, fast highway plates, stops at an intersection, occlusions).

Vision stages come from the scene's ground truth with characters misread at random (vision=labels),
so these tests measure tracking, gating and voting, not recognition.
"""

import collections

import pytest

pytest.importorskip("edge.synth.scene")

from edge.node.config import build_config  # noqa: E402
from edge.node.label_vision import LabelDetector, LabelOCR  # noqa: E402
from edge.node.pipeline import EdgeNode, MemorySink  # noqa: E402
from edge.sources import open_source  # noqa: E402


@pytest.mark.parametrize(
    "scenario",
    ["highway_gantry", "city_intersection", "default"],
)
def test_one_read_per_vehicle_pass(scenario, tmp_path):
    spec = f"synthetic:{scenario}?seed=3&duration=12&width=480&height=270"
    truth = collections.defaultdict(int)
    plate_of = {}
    for f in open_source(spec):
        for lab in f.labels:
            truth[lab.track] += 1
            plate_of[lab.track] = lab.plate
    # Low resolution for speed: every plate counts, however small (min_plate_height 0) or short
    # (the renderer's vanity plates have 2-7 characters; min_plate_chars 1).
    cfg = build_config(
        camera_id="cam-1", agency_id="sac-pd", source=spec, output_dir=str(tmp_path), save_crops=False,
        min_plate_height=0, min_plate_chars=1,
    )
    det = LabelDetector()
    sink = MemorySink()
    m = EdgeNode(cfg, open_source(spec), det, LabelOCR(det, misread_rate=0.15, seed=1), sink).run()
    reads = collections.Counter(e.plate for e in sink.events)
    passes = {plate_of[t] for t, n in truth.items() if n >= 3}  # seen long enough to be a pass
    assert passes, "the scenario produced no traffic"
    assert set(reads) <= set(plate_of.values()), f"misread plates published: {set(reads) - set(plate_of.values())}"
    assert all(c == 1 for c in reads.values()), f"a vehicle read more than once: {reads}"
    assert passes <= set(reads), f"passes without a read: {passes - set(reads)}"
    assert m.reads == len(sink.events)
