"""A node that stops while its outbox cannot take reads (full, disk full; asked to stop, or no broker
to drain it): every read it had made is stored or written to the log in full, none silently gone."""

import json
import threading
import time

import pytest

from edge.node.config import build_config
from edge.node.pipeline import EdgeNode, crop_axis_aligned
from edge.node.sink import OutboxSink, ReadNotStored
from edge.transport.outbox import Outbox
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource


class _NeverDrains:
    """A publisher whose broker never acknowledges anything."""

    def notify(self) -> None:
        pass


class _CountingOCR(ColourKeyedOCR):
    def predict(self, crops):
        out = super().predict(crops)
        for t in out.texts:
            self.seen[t] = self.seen.get(t, 0) + 1
        return out


def _unstored(caplog) -> list[str]:
    prefix = "stopping with a read that could not be stored: "
    return [json.loads(r.getMessage()[len(prefix):])["plate"] for r in caplog.records if r.getMessage().startswith(prefix)]


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("broker", [True, False])
def test_reads_not_stored_at_stop_are_all_in_the_log(tmp_path, caplog, overlap, broker):
    src = ScriptedSource(n_vehicles=6, gap=6)  # several vehicles in view at once
    cfg = build_config(camera_id="cam-1", agency_id="sac-pd", source="scripted", output_dir=str(tmp_path / "out"),
                       save_crops=False, overlap_stages=overlap)  # fmt: skip
    ob = Outbox(tmp_path / "o.db", max_rows=1)
    stop = threading.Event()
    sink = OutboxSink(ob, cfg.topic, publisher=_NeverDrains() if broker else None, stop_event=stop, retry_s=0.02)
    ocr = _CountingOCR(src.vehicles)
    ocr.seen = {}
    node = EdgeNode(cfg, src, ColourKeyedDetector(), ocr, sink, cropper=crop_axis_aligned)
    node.stop_event = stop
    errors = []

    def run():
        try:
            node.run()
        except ReadNotStored as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    if broker:  # blocked on the full outbox, waiting for PUBACKs: then asked to stop
        end = time.monotonic() + 10
        while sink.full_events == 0 and time.monotonic() < end:
            time.sleep(0.01)
        assert sink.full_events and t.is_alive()
        time.sleep(0.1)
        stop.set()
    t.join(10)
    assert not t.is_alive() and errors
    stored = [json.loads(p)["plate"] for _, _, p in ob.after(0, 100)]
    # Plates read in at least two frames (min_track_frames) made tracks: each is a read, stored or logged.
    made = {p for p, n in ocr.seen.items() if n >= 2}
    assert len(made) >= 3
    assert len(stored) == 1
    assert sorted(stored + _unstored(caplog)) == sorted(made)
