"""Cameras for the demo: real edge-node pipelines (detector + OCR + tracker + vote) on footage.

Each camera runs an `EdgeNode` in its own thread over its source (a synthetic scene by default, or
the user's video / image folder / stream), and its read events stream, as they are voted, into the
demo's publisher (`run_demo`), which publishes each one with that camera's own broker login.
A few frames with plates are kept per camera for the HTML report, labelled with what the OCR read
in that very frame.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edge.schema import ReadEvent
from edge.transport.mqtt import redact_url

log = logging.getLogger("edge.demo")

# Default footage: two scenarios the shipped models read well, short enough that the whole demo
# (render + detect + read + gate) stays within a couple of minutes on 2 cores.
DEFAULT_SOURCES = (
    "synthetic:city_intersection?duration=14&width=1280&height=720&fps=12&seed=3",
    "synthetic:parking_entrance?duration=14&width=1280&height=720&fps=12&seed=5",
)


@dataclass
class CameraRun:
    camera_id: str
    agency_id: str
    source: str
    frames: int = 0
    total: int | None = None
    reads: int = 0
    samples: list = field(default_factory=list)  # (image, Detections)
    error: str | None = None
    metrics: dict | None = None
    node: object = None

    def progress(self) -> int:
        return self.node.metrics.frames if self.node is not None else 0


class _QueueSink:
    def __init__(self, q: "queue.Queue", cam: CameraRun):
        self.q, self.cam = q, cam

    def emit(self, event: ReadEvent) -> None:
        self.cam.reads += 1
        self.q.put((self.cam.camera_id, event))


def without_seed(spec: str) -> str:
    """The synthetic source spec with its `seed=` option removed (so the demo's --seed applies)."""
    if not spec.startswith("synthetic:") or "?" not in spec:
        return spec
    head, query = spec.split("?", 1)
    kept = [kv for kv in query.split("&") if not kv.startswith("seed=")]
    return head + ("?" + "&".join(kept) if kept else "")


def _with_seed(spec: str, seed: int) -> str:
    if not spec.startswith("synthetic:") or "seed=" in spec:
        return spec
    return spec + ("&" if "?" in spec else "?") + f"seed={seed}"


class DemoCameras:
    """Runs one edge node per (camera, source); iterate it for (camera_id, ReadEvent) as they come."""

    def __init__(
        self,
        cameras: Sequence,  # registry cameras (id, agency)
        sources: Sequence[str],
        out_dir: Path,
        detector_model: str | None = None,
        ocr_model: str | None = None,
        samples_per_camera: int = 3,
        sample_every_s: float = 2.5,
        seed: int = 0,
    ):
        from edge.node.config import build_config
        from edge.node.runner import load_stages
        from edge.sources import open_source

        if not sources:
            raise ValueError("the demo needs at least one camera source")
        if len(sources) > len(cameras):
            raise ValueError(f"{len(sources)} sources but only {len(cameras)} cameras in the registry")
        self.queue: "queue.Queue" = queue.Queue()
        self.runs: list[CameraRun] = []
        self._nodes = []
        self._threads: list[threading.Thread] = []
        self.samples_per_camera = samples_per_camera
        self.sample_every_s = sample_every_s
        overrides = {}
        if detector_model:
            overrides["detector_model"] = detector_model
        if ocr_model:
            overrides["ocr_model"] = ocr_model
        # Cameras of different operating agencies first: the demo shows each owner's reads decided.
        seen: set[str] = set()
        ordered = [c for c in cameras if not (c.agency in seen or seen.add(c.agency))]
        ordered += [c for c in cameras if c not in ordered]
        for i, (cam, spec) in enumerate(zip(ordered, sources)):
            spec = _with_seed(spec, seed + i)
            cfg = build_config(
                None, camera_id=cam.id, agency_id=cam.agency, source=spec, pacing="fast",
                output_dir=str(out_dir / cam.id), metrics_interval_s=30.0, **overrides,
            )
            source = open_source(cfg.source, max_reconnects=cfg.max_reconnects)
            detector, ocr = load_stages(cfg)
            run = CameraRun(cam.id, cam.agency, redact_url(spec), total=source.length)  # shown in tables and the report
            self.runs.append(run)
            self._nodes.append(self._make_node(cfg, source, detector, ocr, run))

    def _make_node(self, cfg, source, detector, ocr, run: CameraRun):
        from edge.node.pipeline import EdgeNode

        last = [-1e9]

        def on_frame(frame, dets) -> None:
            if (len(dets) and len(run.samples) < self.samples_per_camera
                    and frame.timestamp - last[0] >= self.sample_every_s):
                last[0] = frame.timestamp
                run.samples.append((frame.image.copy(), dets))

        node = EdgeNode(cfg, source, detector, ocr, _QueueSink(self.queue, run), on_frame=on_frame)
        node._demo_ocr = ocr  # to label the sample frames afterwards
        run.node = node
        return node

    def start(self) -> "DemoCameras":
        for node, run in zip(self._nodes, self.runs):
            t = threading.Thread(target=self._run_one, args=(node, run), name=f"demo-{run.camera_id}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run_one(self, node, run: CameraRun) -> None:
        try:
            metrics = node.run()
            run.metrics = metrics.snapshot()
        except Exception as err:  # reported in the summary; the other cameras go on
            log.exception("camera %s failed", run.camera_id)
            run.error = f"{type(err).__name__}: {err}"
        finally:
            self.queue.put((run.camera_id, None))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every camera and wait for its thread: a process that exits (an error, Ctrl-C) while
        a camera thread is inside onnxruntime aborts ('terminate called without an active
        exception', exit 134) instead of reporting its error."""
        for node in self._nodes:
            node.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> list[str]:
        """Cameras whose thread is still running."""
        return [r.camera_id for r, t in zip(self.runs, self._threads) if t.is_alive()]

    def __iter__(self) -> Iterator[tuple[str, ReadEvent]]:
        running = len(self._threads)
        while running:
            cam, event = self.queue.get()
            if event is None:
                running -= 1
                continue
            yield cam, event
        for t in self._threads:
            t.join()

    def sample_frames(self):
        """SampleFrame objects for the report: each sampled frame's boxes with what the OCR read there."""
        from edge.demo.report import SampleFrame
        from edge.node.pipeline import default_cropper
        from edge.vision.ocr import read_plates

        crop = default_cropper()
        out = []
        for node, run in zip(self._nodes, self.runs):
            for image, dets in run.samples:
                crops = crop(image, dets, node.out_size)
                widths = np.asarray(dets.boxes)[:, 2] - np.asarray(dets.boxes)[:, 0]
                texts = read_plates(node._demo_ocr, crops, widths) if len(crops) else None
                labels = [f"{t or '?'} {c:.2f}" for t, c in zip(texts.texts, texts.confidence)] if texts else []
                out.append(SampleFrame(run.camera_id, image, np.asarray(dets.boxes), labels))
        return out
