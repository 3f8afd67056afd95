"""The edge node loop: frames -> motion gate -> detect -> crop -> OCR -> track -> vote -> read event.

Frames are taken in small batches (what the reader thread has decoded, up to `batch_frames`):
moving frames go through the detector together, and every plate of every frame in the batch goes
through the OCR in one call. The tracker then sees the frames in order; a track that ends becomes
at most one read event (voted over all its readings), written to the sink (the outbox) before
anything else happens to it.

Stage times are accumulated per stage; `Metrics.snapshot()` gives fps, per-stage ms per frame,
queue depth and counters for log lines, the retained status topic and the benches.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from edge.node.config import EdgeNodeConfig
from edge.private_files import write_private
from edge.schema import Alternative, Box, Direction, Location, ReadEvent, new_read_id
from edge.sources.base import Frame, FrameSource, ReaderThread, paced
from edge.vision.base import Detections, Detector, PlateOCR
from edge.vision.motion import MotionGate
from edge.vision.ocr import read_plates
from edge.vision.plate_size import PlateSizeModel
from edge.vision.tracker import IouTracker, Observation, Track
from edge.vision.verify import SURE_SCORE
from edge.vision.vote import Reading, edit_distance, vote

log = logging.getLogger(__name__)

STAGES = ("decode", "motion", "detect", "crop", "ocr", "track", "emit")


class ReadSink(Protocol):
    def emit(self, event: ReadEvent) -> None: ...


class MemorySink:
    """Keeps events in a list (benches, tests)."""

    def __init__(self) -> None:
        self.events: list[ReadEvent] = []

    def emit(self, event: ReadEvent) -> None:
        self.events.append(event)


def crop_axis_aligned(frame: np.ndarray, dets: Detections, out_size: tuple[int, int], margin: float = 0.08) -> list[np.ndarray]:
    """Plate crops resized to out_size (w, h): a perspective warp of the corners when the detector
    gives them, else the box grown by `margin` on each side."""
    h, w = frame.shape[:2]
    ow, oh = out_size
    crops = []
    dst = np.array([[0, 0], [ow - 1, 0], [ow - 1, oh - 1], [0, oh - 1]], np.float32)
    for i in range(len(dets)):
        if dets.corners is not None and len(dets.corners) > i and np.isfinite(dets.corners[i]).all():
            m = cv2.getPerspectiveTransform(dets.corners[i].astype(np.float32), dst)
            crops.append(cv2.warpPerspective(frame, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
            continue
        x1, y1, x2, y2 = dets.boxes[i]
        mx, my = (x2 - x1) * margin, (y2 - y1) * margin
        x1, y1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        x2, y2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        if x2 <= x1 or y2 <= y1:
            crops.append(np.zeros((oh, ow, 3), np.uint8))
            continue
        crops.append(cv2.resize(frame[y1:y2, x1:x2], (ow, oh), interpolation=cv2.INTER_LINEAR))
    return crops


def default_cropper() -> Callable[[np.ndarray, Detections, tuple[int, int]], list[np.ndarray]]:
    """The project's rectifier when present (corners -> homography), else crop_axis_aligned."""
    try:
        from edge.vision.rectify import crop_plates
    except ImportError:
        return crop_axis_aligned
    return crop_plates


@dataclass
class Metrics:
    started: float = field(default_factory=time.monotonic)
    frames: int = 0  # frames taken from the source
    processed: int = 0  # frames that passed the motion gate (detector ran)
    gated: int = 0  # static frames skipped
    plates: int = 0  # detections (plate sightings)
    ocr_plates: int = 0  # detections the OCR read (plates, and those then judged no plate)
    ocr_crops: int = 0  # crops the OCR read (each plate's framings, second looks)
    reads: int = 0  # read events emitted
    dropped_tracks: int = 0  # tracks that ended without a confident read
    merged_tracks: int = 0  # tracks of a plate read moments before (occlusion): not published again
    oversized: int = 0  # detections far larger than this camera's plates at their row: not plates
    stage_s: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    queue_depth: int = 0
    source_skipped: int = 0
    frames_dropped: int = 0  # live sources: frames dropped because the pipeline lagged
    crops_not_saved: int = 0  # reads published without their crop picture (the crop could not be written)
    # when the node stopped processing: fps and elapsed_s end there, not with what the caller does
    # after (waiting for the outbox to drain adds seconds that are no frame's)
    ended: float | None = None
    _window_start: float = field(default_factory=time.monotonic)
    _window_frames: int = 0
    _last_recent: float = 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds

    def end(self) -> None:
        self.ended = time.monotonic()

    def snapshot(self, extra: dict | None = None) -> dict:
        now = self.ended if self.ended is not None else time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        if self.ended is not None and self.frames == self._window_frames and now <= self._window_start:
            # Asked again after the end (the stopped status, then the --json summary): the rate of
            # the last window before the end, not 0 frames over no time.
            fps_now = self._last_recent
        else:
            window = max(now - self._window_start, 1e-9)
            fps_now = (self.frames - self._window_frames) / window
            self._window_start, self._window_frames, self._last_recent = now, self.frames, fps_now
        n = max(self.frames, 1)
        d = {
            "fps": round(self.frames / elapsed, 2),
            "fps_recent": round(fps_now, 2),
            "frames": self.frames,
            "processed": self.processed,
            "gated": self.gated,
            "plates": self.plates,
            "reads": self.reads,
            "dropped_tracks": self.dropped_tracks,
            "merged_tracks": self.merged_tracks,
            "oversized": self.oversized,
            "queue_depth": self.queue_depth,
            "source_skipped": self.source_skipped,
            "frames_dropped": self.frames_dropped,
            "crops_not_saved": self.crops_not_saved,
            # ms per source frame, by stage (detect/ocr are 0 on gated frames, so this is the
            # cost the gate leaves), plus per processed frame for the detector.
            "stage_ms_per_frame": {s: round(1000 * v / n, 3) for s, v in self.stage_s.items()},
            "detect_ms_per_processed_frame": round(1000 * self.stage_s["detect"] / max(self.processed, 1), 3),
            # per detection read, whatever was made of its reading (a plate, or no plate after all)
            "ocr_ms_per_plate": round(1000 * self.stage_s["ocr"] / max(self.ocr_plates, 1), 3),
            "ocr_ms_per_crop": round(1000 * self.stage_s["ocr"] / max(self.ocr_crops, 1), 3),
            "ocr_plates": self.ocr_plates,
            "ocr_crops": self.ocr_crops,
            "elapsed_s": round(elapsed, 3),
        }
        if extra:
            d.update(extra)
        return d


# Framing variants for ocr_variants > 1: the box (and corners) scaled about its centre. The OCR
# reads each; their vote is the sighting's reading (robust to a box a little too tight or loose).
# Never smaller than the box: the detector's boxes match the labelled plates (median width ratio
# 1.00, 5th percentile 0.89 on the 108 development frames), so a shrunk framing cuts the edge
# characters of a box tighter than its plate, and its confident partial reads outvoted right
# ones (the sixth session's change from (1.0, 1.12, 0.92): validation frames 10 -> 12 of 17).
VARIANT_SCALES = (1.0, 1.12, 1.25, 1.06, 1.18)


# The second look's framings (EdgeNodeConfig.second_look_max_chars) and how sure both must be of
# the character they add. Wider than VARIANT_SCALES: they are for boxes that cut a character off
# (the development frames' narrowest box holds 72% of its plate), and are never voted with them,
# so the junk wide framings read on ordinary plates cannot outvote right readings.
SECOND_LOOK_SCALES = (1.4, 1.55)
SECOND_LOOK_MIN_CONFIDENCE = 0.9

# A crop that cannot be saved (disk full, folder not writable) is warned about again at most this often.
CROP_WARN_EVERY_S = 60.0


def _one_more_character(reading: Reading, wider: Sequence[tuple[str, np.ndarray]]) -> Reading | None:
    """The wider framings' reading when all agree on it and it is `reading` with one character
    more at its start or end, each wider reading at least SECOND_LOOK_MIN_CONFIDENCE sure of that
    character; else None."""
    text = reading.text
    longer = wider[0][0]
    if len(longer) != len(text) + 1 or any(t != longer for t, _ in wider):
        return None
    if longer.endswith(text):
        added = 0
    elif longer.startswith(text):
        added = -1
    else:
        return None
    confs = [np.asarray(c, np.float32) for _, c in wider]
    if min(float(c[added]) for c in confs) < SECOND_LOOK_MIN_CONFIDENCE:
        return None
    cc = np.mean(confs, axis=0).astype(np.float32)
    return Reading(longer, float(np.prod(cc)), cc)


def _scaled(d: Detections, s: float) -> Detections:
    # errstate: a plug-in detector's infinite box gives NaN here; the tracker drops and counts it
    with np.errstate(invalid="ignore", over="ignore"):
        c = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
        half = (d.boxes[:, 2:] - d.boxes[:, :2]) / 2 * s
        boxes = np.concatenate([c - half, c + half], axis=1).astype(np.float32)
        corners = None
        if d.corners is not None:
            cc = d.corners.mean(axis=1, keepdims=True)
            corners = (cc + (d.corners - cc) * s).astype(np.float32)
    return Detections(boxes, d.scores, corners)


def _combine_variants(texts, n: int, V: int, whole_plate_from: float | None = None) -> Reading:
    """One reading from V framings of the same plate in the same frame (not independent looks:
    agreement does not add confidence, see vote(independent=False)). whole_plate_from: see vote."""
    rs = [Reading(texts.texts[i], float(texts.confidence[i]), np.asarray(texts.char_confidence[i])) for i in range(n, n + V)]
    v = vote(rs, n_alternatives=0, independent=False, whole_plate_from=whole_plate_from)
    if v is None:
        return rs[0]
    return Reading(v.plate, v.confidence, v.char_confidence)


@dataclass
class _Detected:
    batch: list[Frame]
    moving: list[bool]
    todo: list[Frame]
    dets: list[Detections]
    crops: list[np.ndarray]
    owners: list[tuple[int, int]]
    small: list[np.ndarray]  # per frame in todo: detections too small to read (tracked only)


class _ReadWorker:
    """Runs the second half of the pipeline on its own thread, so the detector of batch k+1 and
    the OCR of batch k use both cores (onnxruntime and OpenCV release the GIL). A bounded queue
    keeps them in step: when the reads cannot be stored, the detector stops too."""

    def __init__(self, fn: Callable[["_Detected"], None], depth: int = 2):
        import queue as _q

        self._fn = fn
        self._q: "_q.Queue" = _q.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="edge-read-stage", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    item() if callable(item) else self._fn(item)
                except BaseException as err:  # re-raised on the node's thread
                    self.error = err

    def put(self, item: "_Detected | Callable[[], None]") -> None:
        if self.error is not None:
            raise self.error
        self._q.put(item)

    def close(self) -> None:
        self._q.put(None)
        self._t.join()
        if self.error is not None:
            raise self.error


class EdgeNode:
    """One camera's pipeline. `run()` consumes the source until it ends or `stop` is set."""

    def __init__(
        self,
        config: EdgeNodeConfig,
        source: FrameSource,
        detector: Detector,
        ocr: PlateOCR,
        sink: ReadSink,
        cropper: Callable | None = None,
        on_metrics: Callable[[dict], None] | None = None,
        on_frame: Callable[[Frame, Detections], None] | None = None,
    ):
        self.config = config
        self.source = source
        self.detector = detector
        self.ocr = ocr
        self.sink = sink
        self.cropper = cropper or default_cropper()
        self.on_metrics = on_metrics
        self.on_frame = on_frame  # benches: see each processed frame's detections
        self.gate = MotionGate(config.motion_threshold, max_skip=config.motion_max_skip) if config.motion_gating else None
        self.tracker = IouTracker(config.track_iou, config.track_timeout_s, config.max_track_s)
        # One camera's plate sizes, learned from its reads (photos of many cameras share none).
        self.plate_size = (
            PlateSizeModel(config.plate_size_max_ratio)
            if config.plate_size_max_ratio and not source.independent else None
        )
        self.metrics = Metrics()
        self.stop_event = threading.Event()
        ocr_size = (getattr(ocr, "width", None), getattr(ocr, "height", None))
        if not all(isinstance(v, int) and v > 0 for v in ocr_size):
            ocr_size = (192, 96)  # US plates are 2:1
        self.out_size = (config.crop_width or ocr_size[0], config.crop_height or ocr_size[1])
        self.ocr_variants = config.ocr_variants or (3 if source.independent else 1)
        if getattr(ocr, "one_crop_per_detection", False) and self.ocr_variants > 1:
            # vision=labels: the OCR hands out the ground truth's texts, one per detection in order;
            # several framings per plate (the default for photo folders) took the next plates' texts
            if config.ocr_variants:
                log.warning("%s: vision=labels reads each plate once: ocr_variants %d is not used",
                            config.camera_id, config.ocr_variants)
            self.ocr_variants = 1
        self.crop_dir = Path(config.output_dir) if config.save_crops else None
        self._reader: ReaderThread | None = None
        self._recent: dict[str, float] = {}  # plate -> media time of its read's last sighting
        self._pending: list[Track] = []  # ended inside the frame: waiting for a continuation
        # ready when the sink failed (outbox full or unwritable, node stopping): the final flush
        # hands them to the sink again, which stores them or logs each in full
        self._unemitted: list[Track] = []
        self._last_frame_at: tuple[float, float] | None = None  # (media time, time.monotonic()) of the last batch
        self._next_metrics = time.monotonic() + config.metrics_interval_s
        # crops that could not be saved: the first failure is logged, later ones counted, logged at
        # most every CROP_WARN_EVERY_S and summed up at the end (a full disk must not bury the log)
        self._crop_warned_at: float | None = None
        self._crop_unlogged = 0
        self._metrics_lock = threading.Lock()  # the node's thread and the read stage's (blocked) both emit
        # A sink that can block (the outbox, full or unwritable) calls this while it waits, so the
        # metrics lines and the status message keep coming and say the node is blocked.
        if hasattr(sink, "on_blocked") and getattr(sink, "on_blocked", None) is None:
            sink.on_blocked = self._metrics_due

    # -- main loop ---------------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> Metrics:
        cfg = self.config
        self.source.paced = cfg.pacing == "realtime"  # before iter(): how the source dates its frames
        frames = iter(self.source)
        if cfg.pacing == "realtime" and not self.source.live:
            frames = paced(frames, cfg.speed)
        self._reader = reader = ReaderThread(frames, maxsize=max(8, 2 * cfg.batch_frames), drop_oldest=self.source.live)
        self._next_metrics = time.monotonic() + cfg.metrics_interval_s
        ended = False
        worker = _ReadWorker(self._read_stage) if cfg.overlap_stages else None
        try:
            while not ended and not self.stop_event.is_set():
                batch: list[Frame] = []
                try:
                    first = reader.get(timeout=0.5)
                except Exception as err:  # queue.Empty, or the source raised
                    if type(err).__name__ == "Empty":
                        # Tracker work stays on the thread that owns the tracker.
                        worker.put(self._tick_idle) if worker is not None else self._tick_idle()
                        self._metrics_due()
                        continue
                    log.error("source failed: %s", err)
                    raise
                if first is None:
                    ended = True
                else:
                    batch.append(first)
                    while len(batch) < cfg.batch_frames:
                        nxt = reader.get_nowait()
                        if nxt is False:
                            break
                        if nxt is None:
                            ended = True
                            break
                        batch.append(nxt)
                if batch:
                    self.metrics.queue_depth = reader.depth
                    self._last_frame_at = (batch[-1].timestamp, time.monotonic())
                    if worker is not None:
                        worker.put(self._detect_stage(batch))
                    else:
                        self.process_batch(batch)
                    if progress:
                        progress(len(batch))
                self._metrics_due()
        finally:
            reader.stop()
            failed: BaseException | None = None
            if worker is not None:
                try:
                    worker.close()  # the batches already detected are read before the final flush
                except BaseException as err:  # the sink failed: still flush (each read stored or logged)
                    failed = err
            self.metrics.frames_dropped = reader.dropped
            self.metrics.source_skipped = self.source.skipped
            try:
                # Vehicles still in view when the source ends (or the node is stopped) are reads too.
                self._finish(self.tracker.flush(), final=True)
            finally:
                self.metrics.end()
                self._summarise_crops()
                self._emit_metrics()
            if failed is not None:
                raise failed
        return self.metrics

    def _tick_idle(self) -> None:
        # No frame for a while (a stalled stream): a live source's media time is the clock's, so it
        # goes on without frames. Tracks time out and the pieces that ended inside the frame (waiting
        # for a continuation) are published when their wait is over, not when frames come back.
        if not self.source.live or self._last_frame_at is None:
            return
        media, at = self._last_frame_at
        now = media + (time.monotonic() - at)
        self._finish(self.tracker.expire(now), now=now)

    def _metrics_due(self) -> None:
        """The periodic metrics line and callback, when metrics_interval_s has passed. Called by the
        main loop, and by a blocked sink while it waits (the main loop is then waiting on it)."""
        if time.monotonic() < self._next_metrics:
            return
        with self._metrics_lock:
            if time.monotonic() < self._next_metrics:
                return
            self._next_metrics = time.monotonic() + self.config.metrics_interval_s
            if self._reader is not None:
                self.metrics.queue_depth = self._reader.depth
            self._emit_metrics()

    def stage_counters(self) -> dict:
        """What the stages count themselves, for the metrics line, the status and the summary: tracks
        open, and the boxes (detector, tracker) and readings (OCR) left out for being NaN or infinite
        (a plug-in stage may not keep these counters: 0)."""
        return {
            "active_tracks": len(self.tracker),
            "non_finite_boxes": int(getattr(self.detector, "non_finite_boxes", 0))
            + int(getattr(self.tracker, "non_finite_boxes", 0)),
            "non_finite_reads": int(getattr(self.ocr, "non_finite_reads", 0)),
        }

    def _emit_metrics(self) -> None:
        extra = self.stage_counters()
        sink_state = getattr(self.sink, "state", None)
        if callable(sink_state):
            extra.update(sink_state())
        snap = self.metrics.snapshot(extra)
        stages = " ".join(f"{k}={v:.1f}" for k, v in snap["stage_ms_per_frame"].items())
        blocked = ""
        if snap.get("outbox_full") or snap.get("outbox_unwritable"):
            blocked = (f"; BLOCKED for {snap['blocked_for_s']:.0f} s: the outbox is "
                       f"{'full' if snap.get('outbox_full') else 'not writable'}, no new frames are taken")
        log.log(
            logging.WARNING if blocked else logging.INFO,
            "%s: %.1f fps (recent %.1f), %d frames (%d processed, %d static), %d plates, %d reads, "
            "queue %d; ms/frame %s%s",
            self.config.camera_id, snap["fps"], snap["fps_recent"], snap["frames"], snap["processed"],
            snap["gated"], snap["plates"], snap["reads"], snap["queue_depth"], stages, blocked,
        )
        if self.on_metrics:
            try:
                self.on_metrics(snap)
            except Exception as err:  # metrics must never stop the pipeline
                log.warning("metrics callback failed: %s", err)

    # -- one batch ---------------------------------------------------------------------------
    def process_batch(self, batch: Sequence[Frame]) -> None:
        """All stages for one batch, on the calling thread."""
        self._read_stage(self._detect_stage(batch))

    def _detect_stage(self, batch: Sequence[Frame]) -> "_Detected":
        """Motion gate, detector and crops (the first half; may run ahead of the second)."""
        m = self.metrics
        m.frames += len(batch)
        for f in batch:
            m.add("decode", f.decode_ms / 1000)

        t = time.perf_counter()
        if self.gate is not None and not self.source.independent:
            moving = [self.gate(f.image) for f in batch]
        else:
            moving = [True] * len(batch)
        m.add("motion", time.perf_counter() - t)

        todo = [f for f, mv in zip(batch, moving) if mv]
        m.processed += len(todo)
        m.gated += len(batch) - len(todo)

        t = time.perf_counter()
        if not todo:
            dets = []
        elif hasattr(self.detector, "predict_frames"):  # stages that need the Frame (labels)
            dets = self.detector.predict_frames(todo)
        else:
            dets = self.detector.predict([f.image for f in todo])
        m.add("detect", time.perf_counter() - t)

        t = time.perf_counter()
        crops: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []  # (index in todo, detection index)
        V = self.ocr_variants
        min_h = self.config.min_plate_height
        small: list[np.ndarray] = []  # per frame: which detections are too small to read
        for k, (f, d) in enumerate(zip(todo, dets)):
            tiny = (d.boxes[:, 3] - d.boxes[:, 1]) < min_h if len(d) else np.zeros(0, bool)
            small.append(tiny)
            if tiny.any():
                d = d[~tiny]
            if len(d):
                # V crops per plate, variant-major within the frame: [all v0, all v1, ...]
                variants = [self.cropper(f.image, d if v == 0 else _scaled(d, VARIANT_SCALES[v]), self.out_size) for v in range(V)]
                kept = np.nonzero(~tiny)[0]
                for jj, j in enumerate(kept):
                    crops.extend(variants[v][jj] for v in range(V))
                    owners.append((k, int(j)))
        m.add("crop", time.perf_counter() - t)
        return _Detected(list(batch), moving, todo, dets, crops, owners, small)

    def _read_stage(self, d: "_Detected") -> None:
        """OCR over every crop of the batch, tracker, votes, read events (the second half)."""
        m = self.metrics
        batch, moving, todo, dets, crops, owners = d.batch, d.moving, d.todo, d.dets, d.crops, d.owners
        t = time.perf_counter()
        # each plate's width in the frame: an ensemble asks its camera recognizer about small ones
        with np.errstate(invalid="ignore", over="ignore"):  # an infinite box's width is NaN: no second opinion
            widths = np.repeat([float(dets[k].boxes[j, 2] - dets[k].boxes[j, 0]) for k, j in owners], self.ocr_variants)
        texts = read_plates(self.ocr, crops, widths) if crops else None
        m.ocr_plates += len(owners)
        m.ocr_crops += len(crops)
        V = self.ocr_variants
        combined = [_combine_variants(texts, p * V, V, self.config.min_confidence) for p in range(len(owners))] if V > 1 else []
        if combined and self.config.second_look_max_chars:
            combined = self._second_look(todo, dets, owners, combined, texts)
        m.add("ocr", time.perf_counter() - t)

        t = time.perf_counter()
        per_frame: list[list[Observation]] = [[] for _ in todo]
        not_plates: list[list[int]] = [[] for _ in todo]  # oversized, or failing the plate check
        # Lettering far larger than this camera's plates at its row (a van's placard) is no plate.
        oversized = [self.plate_size.implausible(dt.boxes) if self.plate_size is not None else None for dt in dets]
        for p, (k, j) in enumerate(owners):
            f, det = todo[k], dets[k]
            n = p * V  # the plain crop; n+1.. are its framing variants
            if oversized[k] is not None and oversized[k][j]:
                not_plates[k].append(j)
                m.oversized += 1
                continue
            if self._fails_plate_check(float(det.scores[j]), texts.texts[n]):
                not_plates[k].append(j)
                continue
            if V == 1:
                reading = Reading(texts.texts[n], float(texts.confidence[n]), np.asarray(texts.char_confidence[n]))
            else:
                reading = combined[p]
            h = float(det.boxes[j, 3] - det.boxes[j, 1])
            reading = Reading(reading.text, reading.confidence, reading.char_confidence, min(1.0, (h / self.config.full_weight_height) ** 2))
            region = texts.region[n] if texts.region and n < len(texts.region) else None
            rconf = (
                float(texts.region_confidence[n])
                if texts.region_confidence is not None and n < len(texts.region_confidence)
                else None
            )
            per_frame[k].append(
                Observation(
                    frame_index=f.index,
                    timestamp=f.timestamp,
                    box=np.asarray(det.boxes[j], np.float32),
                    score=float(det.scores[j]),
                    reading=reading,
                    corners=None if det.corners is None else np.asarray(det.corners[j], np.float32),
                    crop=crops[n],
                    frame_size=f.size,
                    captured_at=f.captured_at,
                    region=region,
                    region_confidence=rconf,
                )
            )
        for k, tiny in enumerate(d.small):
            f, det = todo[k], dets[k]
            for j in np.nonzero(tiny)[0]:
                per_frame[k].append(
                    Observation(
                        frame_index=f.index, timestamp=f.timestamp, box=np.asarray(det.boxes[j], np.float32),
                        score=float(det.scores[j]), reading=Reading("", 0.0, np.zeros(0, np.float32), 0.0),
                        corners=None if det.corners is None else np.asarray(det.corners[j], np.float32),
                        frame_size=f.size, captured_at=f.captured_at,
                    )
                )
        m.plates += len(owners) - sum(map(len, not_plates))
        if self.on_frame:
            for f, fd, drop in zip(todo, dets, not_plates):
                if drop:
                    keep = np.ones(len(fd), bool)
                    keep[drop] = False
                    fd = fd[keep]
                self.on_frame(f, fd)
        finished: list[Track] = []
        k = 0
        for f, mv in zip(batch, moving):
            if mv:
                finished += self.tracker.update(f.timestamp, per_frame[k])
                k += 1
            else:
                self.tracker.hold(f.timestamp)
                finished += self.tracker.expire(f.timestamp)  # those not held: plates that left
            if self.source.independent:
                finished += self.tracker.flush()
        m.add("track", time.perf_counter() - t)
        self._finish(finished, now=batch[-1].timestamp)

    def _fails_plate_check(self, score: float, plain_text: str) -> bool:
        """The plate check (edge/vision/verify.py) on the plain crop's reading, made here anyway:
        an unsure detection without enough characters is a plate-like part, not a plate."""
        check = self.config.plate_check_chars
        return bool(check) and score < SURE_SCORE and len(plain_text) < check

    def _second_look(self, todo, dets, owners, readings: list[Reading], texts) -> list[Reading]:
        """Short readings (at most config.second_look_max_chars characters) of detections that pass
        the plate check, read again from the SECOND_LOOK_SCALES framings, all in one OCR batch; see
        _one_more_character."""
        V = self.ocr_variants
        short = [
            p for p, r in enumerate(readings)
            if 0 < len(r.text) <= self.config.second_look_max_chars
            and not self._fails_plate_check(float(dets[owners[p][0]].scores[owners[p][1]]), texts.texts[p * V])
        ]
        if not short:
            return readings
        crops: list[np.ndarray] = []
        widths: list[float] = []
        for p in short:
            k, j = owners[p]
            det = dets[k][j : j + 1]
            for s in SECOND_LOOK_SCALES:
                crops.extend(self.cropper(todo[k].image, _scaled(det, s), self.out_size))
            widths += [float(det.boxes[0, 2] - det.boxes[0, 0])] * len(SECOND_LOOK_SCALES)
        wide = read_plates(self.ocr, crops, widths)
        self.metrics.ocr_crops += len(crops)
        S = len(SECOND_LOOK_SCALES)
        out = list(readings)
        for q, p in enumerate(short):
            looks = [(wide.texts[i], wide.char_confidence[i]) for i in range(q * S, (q + 1) * S)]
            longer = _one_more_character(readings[p], looks)
            if longer is not None:
                out[p] = longer
        return out

    # -- tracks -> read events ---------------------------------------------------------------------
    def _finish(self, tracks: Sequence[Track], now: float | None = None, final: bool = False) -> None:
        """Ended tracks -> read events, after merging the pieces of one pass."""
        if not tracks and not self._pending and not (final and self._unemitted):
            return
        t = time.perf_counter()
        ready = self._merge_pieces(tracks, now, final)
        if final:
            ready, self._unemitted = self._unemitted + ready, []
        window = self.config.repeat_window_s
        sink_error: Exception | None = None
        for i, track in enumerate(ready):
            event = self.track_to_event(track)
            if event is None:
                self.metrics.dropped_tracks += 1
                continue
            if window > 0 and not self.source.independent:
                seen_at = self._recent.get(event.plate)
                last = track.last.timestamp
                if seen_at is not None and track.first.timestamp - seen_at <= window:
                    self._recent[event.plate] = last
                    self.metrics.merged_tracks += 1
                    continue
                self._recent[event.plate] = last
                if len(self._recent) > 1000:  # forget plates read long ago
                    self._recent = {p: t for p, t in self._recent.items() if last - t <= window}
            try:
                self.sink.emit(event)
            except Exception as err:
                # Not stored (the sink logged this read in full). The node stops; the tracks after
                # it are not dropped unseen: the final flush offers each to the sink.
                if not final:
                    self._unemitted += ready[i + 1 :]
                    raise
                sink_error = sink_error or err
                continue
            self.metrics.reads += 1
            if self.plate_size is not None and track.last.frame_size:
                self.plate_size.learn(np.stack([o.box for o in track.observations]), track.last.frame_size[1])
        self.metrics.add("emit", time.perf_counter() - t)
        if sink_error is not None:
            raise sink_error

    def _merge_pieces(self, tracks: Sequence[Track], now: float | None, final: bool) -> list[Track]:
        W = self.config.merge_window_s
        if self.source.independent or W <= 0:
            return list(tracks)
        ready: list[Track] = []
        for track in tracks:
            track.voted = _voted_text(track)
            if track.voted is None:
                ready.append(track)  # nothing to read: dropped by track_to_event
                continue
            while True:  # pieces chain: A+B may then match an earlier piece C
                host = None
                for p in self._pending:
                    gap = track.first.timestamp - p.last.timestamp
                    if -0.5 <= gap <= W and _similar(p.voted, track.voted) and (host is None or p.last.timestamp > host.last.timestamp):
                        host = p
                if host is None:
                    break
                self._pending.remove(host)
                host.absorb(track)
                host.voted = _voted_text(host)
                self.metrics.merged_tracks += 1
                track = host
            if track.left_the_frame():
                ready.append(track)
            else:
                self._pending.append(track)
        if final:
            ready += self._pending
            self._pending = []
        elif now is not None and self._pending:
            keep = []
            for p in self._pending:
                waited = now - p.last.timestamp
                # A track that began after this one ended may still turn out to continue it.
                successor = any(0 <= a.first.timestamp - p.last.timestamp <= W for a in self.tracker.active)
                (keep if waited <= W or (successor and waited <= 30.0) else ready).append(p)
            self._pending = keep
        return ready

    def track_to_event(self, track: Track) -> ReadEvent | None:
        cfg = self.config
        min_frames = 1 if self.source.independent else cfg.min_track_frames
        short = len(track.observations) < min_frames  # published only when its reading is sure
        if short and not cfg.short_track_confidence:
            return None
        v = vote(track.readings(), n_alternatives=cfg.alternatives, whole_plate_from=cfg.min_confidence)
        if v is None or not cfg.min_plate_chars <= len(v.plate) <= 10 or v.confidence < cfg.min_confidence:
            return None
        if short and v.confidence < cfg.short_track_confidence:
            return None
        best = track.best
        # The best sighting whose own reading agrees with the vote shows the plate as published.
        agreeing = [o for o in track.observations if o.reading.text == v.plate]
        shown = best if best is not None and (best.reading.text == v.plate or not agreeing) else max(
            agreeing, key=lambda o: o.reading.confidence
        )
        read_id = new_read_id()
        crop_ref = None
        crop = shown.crop if shown.crop is not None else (best.crop if best is not None else None)
        if self.crop_dir is not None and crop is not None:
            crop_ref = self._save_crop(read_id, crop, shown.captured_at)
        x1, y1, x2, y2 = (float(c) for c in shown.box)
        fw, fh = shown.frame_size or (None, None)
        if fw:
            x1, x2 = min(max(x1, 0.0), fw - 1.0), min(max(x2, 0.0), float(fw))
            y1, y2 = min(max(y1, 0.0), fh - 1.0), min(max(y2, 0.0), float(fh))
        region = _majority_region(track)
        captured = shown.captured_at or datetime.now(timezone.utc)
        return ReadEvent(
            read_id=read_id,
            camera_id=cfg.camera_id,
            agency_id=cfg.agency_id,
            captured_at=captured,
            plate=v.plate,
            confidence=float(min(max(v.confidence, 0.0), 1.0)),
            char_confidence=[float(min(max(c, 0.0), 1.0)) for c in v.char_confidence],
            region=region[0] if region else None,
            region_confidence=region[1] if region else None,
            box=Box(x=max(x1, 0.0), y=max(y1, 0.0), w=max(x2 - x1, 1e-3), h=max(y2 - y1, 1e-3)),
            corners=None if shown.corners is None else [(float(x), float(y)) for x, y in shown.corners],
            frame_size=tuple(int(v) for v in shown.frame_size) if shown.frame_size else None,
            location=Location(lat=cfg.location[0], lon=cfg.location[1]) if cfg.location else None,
            direction=Direction(track.direction()),
            crop_ref=crop_ref,
            alternatives=[Alternative(plate=t, confidence=c) for t, c in v.alternatives if len(t) <= 10],
            frames_seen=len(track.observations),
            track_id=track.track_id,
        )

    def _save_crop(self, read_id: str, crop: np.ndarray, captured: datetime | None) -> str | None:
        day = (captured or datetime.now(timezone.utc)).strftime("%Y%m%d")
        rel = Path("crops") / day / f"{read_id}.jpg"
        path = self.crop_dir / rel
        try:
            self._check_crop_disk_space()
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise OSError("JPEG encoding failed")
            write_private(path, buf.tobytes())  # owner-only, as the outbox and audit log
        except (OSError, cv2.error) as err:
            # The read matters more than its picture: publish without crop_ref.
            self.metrics.crops_not_saved += 1
            now = time.monotonic()
            if self._crop_warned_at is None:
                log.warning("cannot save crop %s: %s; the read is published without it (later failures "
                            "are counted and summed up at the end)", path, err)
            elif now - self._crop_warned_at >= CROP_WARN_EVERY_S:
                log.warning("cannot save crop %s: %s (%d more since the last logged)", path, err,
                            self._crop_unlogged + 1)
            else:
                self._crop_unlogged += 1
                return None
            self._crop_warned_at, self._crop_unlogged = now, 0
            return None
        return rel.as_posix()

    def _check_crop_disk_space(self) -> None:
        """OSError when the crops' disk has less than config.crop_min_free_mb free: the outbox on it
        must keep room for reads (a full disk stops the camera; a read without its crop does not)."""
        floor_mb = self.config.crop_min_free_mb
        if not floor_mb:
            return
        where = self.crop_dir
        while not where.exists() and where != where.parent:  # the crops folder is made at the first crop
            where = where.parent
        free_mb = shutil.disk_usage(where).free / 2**20
        if free_mb < floor_mb:
            raise OSError(f"only {free_mb:.0f} MB free on the disk of {self.crop_dir}, under crop_min_free_mb "
                          f"{floor_mb}: crops are not saved, so that the outbox keeps room for reads")

    def _summarise_crops(self) -> None:
        if self._crop_unlogged:
            log.warning("%s: %d crop(s) in all could not be saved under %s; their reads were published "
                        "without crop_ref", self.config.camera_id, self.metrics.crops_not_saved, self.crop_dir)
            self._crop_unlogged = 0


def _voted_text(track: Track) -> str | None:
    v = vote(track.readings(), n_alternatives=0)
    return v.plate if v is not None else None


def _similar(a: str | None, b: str | None) -> bool:
    """Readings close enough to be the same plate misread: edit distance <= 2 (<= 1 for short)."""
    if not a or not b:
        return False
    limit = 1 if min(len(a), len(b)) <= 4 else 2
    if abs(len(a) - len(b)) > limit:
        return False
    return edit_distance(a, b) <= limit


def _majority_region(track: Track) -> tuple[str, float] | None:
    score: dict[str, float] = {}
    for o in track.observations:
        if o.region and len(o.region) == 2 and o.region.isalpha():
            score[o.region.upper()] = score.get(o.region.upper(), 0.0) + float(o.region_confidence or 0.5)
    if not score:
        return None
    best = max(score, key=score.get)
    n = sum(1 for o in track.observations if o.region)
    return best, float(min(1.0, score[best] / max(n, 1)))
