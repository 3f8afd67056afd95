"""The last vehicle before a quiet spell (a parking entrance at night, an empty road) is read when
its pass ends, not when something next moves in front of the camera."""

from datetime import datetime, timedelta, timezone

import pytest

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, crop_axis_aligned
from edge.sources.base import Frame, FrameSource
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, scripted_scene

FPS = 25.0


class _ThenQuiet(FrameSource):
    """The scripted scene's vehicles cross, then `quiet` frames of empty road. With `stop_at`, the
    scene freezes at that frame for `quiet` frames (a car waiting at a barrier), then goes on."""

    def __init__(self, render, n, quiet, stop_at=None):
        super().__init__()
        self.render, self.n, self.quiet, self.stop_at = render, n, quiet, stop_at
        self.length = n + quiet
        self.fps = FPS

    def __iter__(self):
        base = datetime.now(timezone.utc)
        for k in range(self.length):
            if self.stop_at is None:
                j = k
            else:
                j = k if k < self.stop_at else self.stop_at if k < self.stop_at + self.quiet else k - self.quiet
            img, _ = self.render(j if j < self.n else 10**6)
            yield Frame(k, img, k / FPS, base + timedelta(seconds=k / FPS))


class _When:
    """A sink that notes how many frames the node had taken when each read came."""

    def __init__(self):
        self.node = None
        self.events, self.at = [], []

    def emit(self, event):
        self.events.append(event)
        self.at.append(self.node.metrics.frames)


def _run(tmp_path, src, vehicles, **cfg):
    config = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path),
                          save_crops=False, batch_frames=1, overlap_stages=False, **cfg)  # fmt: skip
    sink = _When()
    node = EdgeNode(config, src, ColourKeyedDetector(), ColourKeyedOCR(vehicles), sink, cropper=crop_axis_aligned)
    sink.node = node
    node.run()
    return sink


def test_a_pass_that_left_the_frame_is_read_while_the_scene_is_still(tmp_path):
    vehicles, n, render = scripted_scene(1)
    sink = _run(tmp_path, _ThenQuiet(render, n, quiet=int(60 * FPS)), vehicles)  # a minute of empty road
    assert [e.plate for e in sink.events] == [vehicles[0].plate]
    # before: the static frames kept its track alive, so it was read only at the end of the source
    # (or, live, when something next moved): here a minute late
    assert sink.at[0] <= n + 2 * FPS, f"read at frame {sink.at[0]}, the pass ended by frame {n}"


@pytest.mark.parametrize("wait_s", [3, 20, 60])
def test_a_vehicle_that_waits_in_view_then_drives_on_is_one_read(tmp_path, wait_s):
    """What the static frames are for: a car that stops in view (at a barrier, a red light on an
    empty road) for longer than the track timeout and the repeat window, then drives on, is one pass.
    Before: its track's prediction ran on at the old speed through the stop, the car was not found
    there when it moved again, and a second track made a second read (waits of 10 s and more)."""
    vehicles, n, render = scripted_scene(1, speed=4.0)
    src = _ThenQuiet(render, n, quiet=int(wait_s * FPS), stop_at=40)  # mid-frame
    sink = _run(tmp_path, src, vehicles)
    assert [e.plate for e in sink.events] == [vehicles[0].plate]
    assert sink.events[0].frames_seen > 60  # before the stop and after it, one track
