"""A live camera that stalls (network cut, camera rebooting): the vehicles it last showed are read
during the stall, not hours later when frames come back (or never, if the node is killed first)."""

import threading
import time
from datetime import datetime, timezone

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, MemorySink, crop_axis_aligned
from edge.sources.base import Frame, FrameSource
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, scripted_scene


class _StallingCamera(FrameSource):
    """Live: the scripted scene's first `n` frames at 25 fps (wall-clock timestamps, as a stream's),
    then nothing until `resume` is set."""

    live = True

    def __init__(self, render, n):
        super().__init__()
        self.render, self.n = render, n
        self.resume = threading.Event()
        self.stalled = threading.Event()

    def __iter__(self):
        start = time.monotonic()
        for k in range(self.n):
            img, _ = self.render(k)
            time.sleep(0.04)
            yield Frame(k, img, time.monotonic() - start, datetime.now(timezone.utc))
        self.stalled.set()
        self.resume.wait(30)


def test_reads_of_the_last_vehicles_are_made_while_a_live_camera_stalls(tmp_path):
    # one slow vehicle, in the middle of the frame when the camera stops sending
    vehicles, _, render = scripted_scene(1, speed=4.0)
    src = _StallingCamera(render, 45)
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="rtsp://cam", output_dir=str(tmp_path),
                       save_crops=False, track_timeout_s=0.5, merge_window_s=1.0)  # fmt: skip
    sink = MemorySink()
    node = EdgeNode(cfg, src, ColourKeyedDetector(), ColourKeyedOCR(vehicles), sink, cropper=crop_axis_aligned)
    t = threading.Thread(target=node.run)
    t.start()
    try:
        assert src.stalled.wait(30)
        # timeout 0.5 s + merge window 1 s (the plate ended inside the frame: a continuation may come)
        end = time.monotonic() + 6
        while not sink.events and time.monotonic() < end:
            time.sleep(0.05)
        assert [e.plate for e in sink.events] == [vehicles[0].plate], "no read while the camera is stalled"
        assert not src.resume.is_set()
    finally:
        src.resume.set()
        t.join(30)
    assert [e.plate for e in sink.events] == [vehicles[0].plate]  # and not a second time at the end
