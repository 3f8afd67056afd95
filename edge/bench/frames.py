"""`alpr-edge bench frames DIR` and `alpr-edge bench video FILE`: the whole edge node, end to end.

bench frames: every labelled image of a folder through the node (detect, rectify, OCR, vote with
one sighting, read event). A labelled plate counts as read when some read event of that frame has
exactly its text; unlabelled plates in the background count as neither hit nor false alarm.
Also reported: detection recall (a detection with IoU > 0.4 against the label, the upstream
openalpr benchmark's rule) and the reads that matched no label ("other", background plates or
false alarms). With the project's fixed split, figures are given for the validation part (never
trained on) and the training part separately.

bench video: a video file through the node as fast as possible; fps, reads, and where the time goes
(ms per frame by stage, detector ms per processed frame, OCR ms per plate).

Both also sweep the publishing threshold (`by_min_confidence`): what the run would have read, and
misread, had the node published only reads at least that confident. A read is a lookup against a
hotlist, so a misread is a false hit on someone else's car: the sweep says what a stricter
threshold costs in reads for what it saves in misreads, measured, not guessed.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.sources.base import PlateLabel


def register(sub) -> None:
    p = sub.add_parser("frames", help="end-to-end read rate and ms/frame on a folder of labelled frames")
    p.add_argument("folder", help="image folder with labels.csv (file,x,y,w,h,plate) or openalpr .txt labels")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="labels from this CSV (file,x,y,w,h,plate) instead of the folder's own, e.g. "
                   "benchmarks/openalpr-us-speed.labels.csv for the dev set's speed frames")
    p.add_argument("--split", choices=["all", "val", "train"], default="all",
                   help="the fixed validation split of the dev set's frames, or all (with --labels: all only)")
    p.add_argument("--limit", type=int, default=None, help="first N labelled images only")
    p.add_argument("--vision", choices=["onnx", "label-boxes"], default="onnx",
                   help="label-boxes: the labelled boxes instead of the detector (the OCR's share of the misses)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="shrink each frame by this factor (area) and JPEG it at that size (quality 60), labels "
                   "with it: the same scene from a camera with fewer pixels, or farther away (0 < S <= 1)")
    p.add_argument("--save-misses", metavar="FOLDER", default=None,
                   help="write a PNG per labelled plate not read: the plate in context, its label (green), "
                   "the node's detections (red) with what was read there")
    _common(p)
    p.set_defaults(func=_frames)

    v = sub.add_parser("video", help="edge node throughput on a video file: fps, reads, stage breakdown")
    v.add_argument("file", help="video file (any FFmpeg codec)")
    v.add_argument("--no-motion-gating", action="store_true", help="process every frame")
    v.add_argument("--max-frames", type=int, default=None)
    v.add_argument("--vision", choices=["onnx", "labels", "label-boxes"], default="onnx",
                   help="labels: ground truth instead of the models (measures everything but them); "
                   "label-boxes: ground-truth boxes, real OCR")
    _common(v)
    v.set_defaults(func=_video)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector-model", default=None, help="detector ONNX (node default models/detector.onnx)")
    p.add_argument("--ocr-model", default=None,
                   help="OCR ONNX, or several comma-separated (node default: models/ocr.onnx,models/ocr-camera.onnx)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per stage")
    p.add_argument("--min-confidence", type=float, default=None, help="voted confidence to publish (node default)")
    p.add_argument("--min-plate-chars", type=int, default=None, help="shorter readings are not published (node default 4)")
    p.add_argument("--plate-size-max-ratio", type=float, default=None,
                   help="video: detections this many times taller than the camera's learned plate height at that row are dropped (node default 4; 0: off)")
    p.add_argument("--ocr-variants", type=int, default=None, help="framings per plate read and voted (node default)")
    p.add_argument("--second-look-max-chars", type=int, default=None,
                   help="with framings voted: readings this short are read again wider (node default 5; 0: off)")
    p.add_argument("--detector-threshold", type=float, default=None)
    p.add_argument("--plate-check-chars", type=int, default=None,
                   help="keep detections the OCR reads this many characters in (node default 3; 0: off)")
    p.add_argument("--detect-tiles", default=None, help="detector over COLSxROWS overlapping tiles, e.g. 2x2")
    p.add_argument("--json", action="store_true", help="one JSON object as the last stdout line")


def _config(args, source: str, **over):
    from edge.node.config import build_config

    return build_config(
        camera_id="bench",
        agency_id="bench",
        source=source,
        detector_model=args.detector_model,
        ocr_model=args.ocr_model,
        threads=args.threads,
        min_confidence=args.min_confidence,
        min_plate_chars=args.min_plate_chars,
        plate_size_max_ratio=args.plate_size_max_ratio,
        ocr_variants=args.ocr_variants,
        second_look_max_chars=args.second_look_max_chars,
        detector_threshold=args.detector_threshold,
        detect_tiles=args.detect_tiles,
        plate_check_chars=args.plate_check_chars,
        save_crops=False,
        metrics_interval_s=3600,
        **over,
    )


def _stages(cfg):
    from edge.node.runner import load_stages

    return load_stages(cfg)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _frames(args) -> int:
    from edge.bench.report import (machine_info, picture_error, picture_name, print_json_last, print_table,
                                   surroundings, wilson_interval, write_picture)
    from edge.node.pipeline import EdgeNode, MemorySink
    from edge.sources.folder import FolderSource, read_labels
    from edge.training.splits import is_validation

    logging.getLogger("edge").setLevel(logging.WARNING)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise SystemExit(f"bench frames: folder not found: {folder}")
    try:
        labels = read_labels(folder, args.labels)
    except ValueError as e:
        raise SystemExit(f"bench frames: {e}") from None
    if not labels:
        raise SystemExit(f"bench frames: no labels in {args.labels or folder} (labels.csv or openalpr .txt files)")
    names = sorted(labels)
    absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        raise SystemExit(f"bench frames: {args.labels or folder / 'labels.csv'} labels {len(absent)} image(s) not in "
                         f"{folder}: {', '.join(absent[:10])}")
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"bench frames: --limit must be at least 1, got {args.limit}")
    save_dir = Path(args.save_misses) if args.save_misses else None
    if save_dir is not None:  # before the run, so a bad folder is said at once, not after it
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SystemExit(f"bench frames: --save-misses {save_dir}: {err.strerror or err}") from None
    if args.labels:
        if args.split != "all":
            # the fixed split is a hash of the dev set's frame names: it means nothing for other labels
            raise SystemExit("bench frames: --split val|train applies to the dev set's own labels, not to --labels")
    if args.split != "all":
        names = [n for n in names if is_validation(n) == (args.split == "val")]
    if args.limit:
        names = names[: args.limit]
    if not 0 < args.scale <= 1:
        raise SystemExit(f"bench frames: --scale must be in (0, 1], got {args.scale}")
    cfg = _config(args, str(folder), vision=args.vision)
    detector, ocr = _stages(cfg)
    source = FolderSource(folder, names=names, labels_file=args.labels)
    if args.scale != 1:
        source = _Shrunk(source, args.scale)
        labels = {name: [_scaled_label(lab, args.scale) for lab in labs] for name, labs in labels.items()}
    sink = MemorySink()
    per_frame_events: dict[str, list] = {}
    detections: dict[str, object] = {}
    frame_at: dict[object, str] = {}  # capture time -> file: the folder source gives each its own

    # --save-misses: each label's surroundings, cut while the frame is at hand (not whole frames,
    # which would hold every image of a large folder in memory until the end)
    around: dict[tuple[str, int], tuple[np.ndarray, tuple[int, int]]] = {}

    def on_frame(frame, dets):
        detections[frame.name] = dets
        frame_at[frame.captured_at] = frame.name
        if args.save_misses:
            for i, lab in enumerate(frame.labels or []):
                around[(frame.name, i)] = surroundings(frame.image, lab.box)

    node = EdgeNode(cfg, source, detector, ocr, sink, on_frame=on_frame)
    # Attribute each read to its frame by capture time (unique per image in a folder source).
    emit = sink.emit

    def emit_with_frame(event):
        per_frame_events.setdefault(frame_at[event.captured_at], []).append(event)
        emit(event)

    sink.emit = emit_with_frame
    t0 = time.perf_counter()
    m = node.run()
    wall = time.perf_counter() - t0

    groups = {"all": names}
    if args.split == "all" and not args.labels:
        groups["val"] = [n for n in names if is_validation(n)]
        groups["train"] = [n for n in names if not is_validation(n)]
    results = {}
    misses = []
    pictures: list[str] = []
    used_names: set[str] = set()
    picture_failed: OSError | None = None
    for gname, gnames in groups.items():
        n_plates = read = found = 0
        for name in gnames:
            events = per_frame_events.get(name, [])
            texts = [e.plate for e in events]
            for i, lab in enumerate(labels.get(name, [])):
                n_plates += 1
                ok = lab.plate in texts
                read += ok
                d = detections.get(name)
                if d is not None and any(_iou(lab.box, b) > 0.4 for b in d.boxes.tolist()):
                    found += 1
                if not ok and gname == "all":
                    # a frame that did not decode counts as not read, and says so
                    misses.append((name, lab.plate, ",".join(texts) or ("-" if d is not None else "(unreadable frame)")))
                    if save_dir is not None and picture_failed is None and (name, i) in around:
                        # the whole file name, extension included: a.jpg and a.png, or one plate
                        # labelled twice in a frame, each get their own picture
                        path = save_dir / picture_name(used_names, name, lab.plate)
                        try:
                            write_picture(path, _miss_picture(*around[(name, i)], lab, detections.get(name), events))
                        except OSError as err:  # said at the end, after the figures, not silently
                            picture_failed = err
                        else:
                            pictures.append(str(path))
        sweep = frames_confidence_sweep(
            [labels.get(name, []) for name in gnames], [per_frame_events.get(name, []) for name in gnames],
            cfg.min_confidence,
        )
        results[gname] = {
            "n": len(gnames),
            "plates": n_plates,
            "read_rate": round(read / n_plates, 4) if n_plates else 0.0,
            # a split of 17 frames cannot tell 88% from 94%: say so with the figure
            "read_rate_ci95": [round(v, 4) for v in wilson_interval(read, n_plates)],
            "detect_recall": round(found / n_plates, 4) if n_plates else 0.0,
            "other_reads": sweep[0]["other_reads"],  # at the run's own threshold: every read
            "misreads": sweep[0]["misreads"],
            "by_min_confidence": sweep,
        }
    ms_per_frame = 1000 * wall / max(m.frames, 1)
    rows = [
        [g if g != "all" or args.split == "all" else args.split, r["n"], r["plates"], r["read_rate"], "{:.1%}-{:.1%}".format(*r["read_rate_ci95"]), r["detect_recall"], r["other_reads"]]
        for g, r in results.items()
    ]
    print_table(
        f"bench frames: {folder} ({ms_per_frame:.1f} ms/frame)",
        ["split", "frames", "plates", "read rate", "95% interval (Wilson)", "detect recall (IoU>0.4)", "other reads"], rows,
    )
    if misses:
        print_table("missed plates", ["file", "label", "read"], misses[:40])
    # the frames that never reached the node (did not decode), by name, as bench detect and bench ocr give them
    unreadable = [n for n in names if n not in detections]
    if source.skipped:
        print(f"{source.skipped} frame(s) did not decode and were skipped; their plates count as not read:",
              " ".join(unreadable))
    shown = "val" if "val" in results else "all"
    print_table(
        f"publishing only reads at least this confident ({shown}; misread: a read on a labelled plate with other text)",
        ["min confidence", "read rate", "misreads", "other reads"],
        [[r["min_confidence"], r["read_rate"], r["misreads"], r["other_reads"]] for r in results[shown]["by_min_confidence"]],
    )
    out = {
        "bench": "frames",
        "folder": str(folder),
        "scale": args.scale,
        **results["all"],
        "ms_per_frame": round(ms_per_frame, 2),
        "splits": {k: v for k, v in results.items() if k != "all"},
        "stage_ms_per_frame": m.snapshot()["stage_ms_per_frame"],
        "skipped": source.skipped,
        "unreadable": unreadable,
        "missed": [{"file": f, "label": lab, "read": r} for f, lab, r in misses],
        "machine": machine_info(),
    }
    if save_dir is not None:
        out["miss_pictures"] = pictures
        if picture_failed is not None:
            out["miss_pictures_error"] = picture_error("--save-misses", picture_failed, len(pictures))
        print(f"{len(pictures)} pictures of missed plates in {save_dir}")
    if args.json:
        print_json_last(out)
    if picture_failed is not None:
        raise SystemExit(f"bench frames: {out['miss_pictures_error']}")
    return 0


@dataclass
class SourceRun:
    metrics: object  # edge.node.pipeline.Metrics
    events: list  # the read events, in order
    wall_s: float

    @property
    def fps(self) -> float:
        return self.metrics.frames / self.wall_s if self.wall_s > 0 else 0.0


def run_on_source(cfg, source, detector, ocr) -> SourceRun:
    """One edge node over a whole source as fast as it goes, its reads kept in memory."""
    from edge.node.pipeline import EdgeNode, MemorySink

    sink = MemorySink()
    node = EdgeNode(cfg, source, detector, ocr, sink)
    t0 = time.perf_counter()
    m = node.run()
    return SourceRun(m, sink.events, time.perf_counter() - t0)


def _video(args) -> int:
    from edge.bench.report import machine_info, print_json_last, print_table
    from edge.sources.base import SourceError
    from edge.sources.video import VideoFileSource

    logging.getLogger("edge").setLevel(logging.WARNING)
    if args.max_frames is not None and args.max_frames < 1:  # 0 or less ran nothing and reported it
        raise SystemExit(f"bench video: --max-frames must be at least 1, got {args.max_frames}")
    try:
        source = VideoFileSource(args.file)
    except SourceError as err:  # a missing or undecodable file is bad input: exit 2, as `run` does
        raise SystemExit(f"bench video: {err}") from None
    cfg = _config(args, args.file, motion_gating=not args.no_motion_gating, vision=args.vision)
    detector, ocr = _stages(cfg)
    limited = _Limited(source, args.max_frames)
    run = run_on_source(cfg, limited, detector, ocr)
    m, wall, fps = run.metrics, run.wall_s, run.fps
    if m.frames == 0:  # a table of zeros and exit 0 read as a measurement
        raise SystemExit(f"bench video: no frame of {args.file} decodes ({source.skipped} skipped, "
                         f"{source.length or 'an unknown number of'} announced): nothing to measure")
    snap = m.snapshot()
    stages = snap["stage_ms_per_frame"]
    rows = [[k, v] for k, v in stages.items()]
    rows += [["detect per processed frame", snap["detect_ms_per_processed_frame"]], ["ocr per plate", snap["ocr_ms_per_plate"]]]
    w, h = source.size
    print_table(
        f"bench video: {args.file} ({w}x{h}), {m.frames} frames, {fps:.1f} fps, motion gating "
        f"{'off' if args.no_motion_gating else 'on'} ({m.processed} processed, {m.gated} static)",
        ["stage", "ms per frame"],
        rows,
    )
    if source.skipped:  # corrupt frames or a truncated file: fewer frames than the video holds
        print(f"{source.skipped} frame(s) of {args.file} did not decode and were skipped")
    out = {}
    truth = source.ground_truth
    if truth is not None and source.skipped:
        # Frames that did not decode (a truncated or damaged file) were never seen: a vehicle that
        # passed only in them cannot be read, and counted as an unread pass it lowered the read
        # rate of the frames that were processed. Scored over the frames processed, and said.
        seen = {k: v for k, v in truth.items() if k in limited.delivered}
        unseen = _pass_truth(truth, args.max_frames)[0] - _pass_truth(seen, args.max_frames)[0]
        truth = seen
    if truth is not None:
        out["ground_truth"] = score_passes(truth, [e.plate for e in run.events], args.max_frames)
        if source.skipped:
            out["ground_truth"]["passes_in_undecoded_frames"] = len(unseen)
        bad = getattr(source.ground_truth, "bad_lines", [])
        out["ground_truth"]["bad_lines"] = len(bad)
        rows_gt = [[k, _cell(v)] for k, v in out["ground_truth"].items()]
        print_table("against the synthetic ground truth", ["", ""], rows_gt)
        if bad:
            print(f"warning: {len(bad)} line(s) of ground_truth.jsonl did not parse (first: line {bad[0]}): "
                  "the passes, wrong and unread counts above are incomplete")
        sweep = video_confidence_sweep(truth, run.events, cfg.min_confidence, args.max_frames)
        out["ground_truth"]["by_min_confidence"] = sweep
        print_table(
            "publishing only reads at least this confident",
            ["min confidence", "passes read", "wrong reads"],
            [[r["min_confidence"], r["passes_read"], r["wrong_reads"]] for r in sweep],
        )
    out = {
        "bench": "video",
        "file": str(args.file),
        "frame_size": [w, h],
        "motion_gating": not args.no_motion_gating,
        "frames": m.frames,
        "skipped": source.skipped,
        "processed": m.processed,
        "gated": m.gated,
        "fps": round(fps, 2),
        "wall_s": round(wall, 3),
        "reads": m.reads,
        "plates_in_reads": sorted(e.plate for e in run.events),
        "plates_sighted": m.plates,
        "stage_ms_per_frame": stages,
        "detect_ms_per_processed_frame": snap["detect_ms_per_processed_frame"],
        "ocr_ms_per_plate": snap["ocr_ms_per_plate"],
        "threads": args.threads,
        "vision": args.vision,
        **out,
        "machine": machine_info(),
    }
    if args.json:
        print_json_last(out)
    return 0


# A vehicle counts as a pass when its plate is in view in at least this many frames, and as a
# readable pass when its plate is also at least READABLE_PLATE_HEIGHT px tall at its closest.
MIN_PASS_SIGHTINGS = 3
READABLE_PLATE_HEIGHT = 16.0


def _pass_truth(ground_truth: dict, max_frames: int | None) -> tuple[set, set, set, list]:
    """From a scene's per-frame ground truth: the plates of the vehicle passes, of the readable
    ones, every plate in the scene, and each pass's plate width at its closest (sorted)."""
    sightings: dict[int, int] = {}
    plate_of: dict[int, str] = {}
    tallest: dict[int, float] = {}
    widest: dict[int, float] = {}
    for idx, labs in ground_truth.items():
        if max_frames and idx >= max_frames:
            continue
        for lab in labs:
            sightings[lab.track] = sightings.get(lab.track, 0) + 1
            plate_of[lab.track] = lab.plate
            tallest[lab.track] = max(tallest.get(lab.track, 0.0), lab.box[3] - lab.box[1])
            widest[lab.track] = max(widest.get(lab.track, 0.0), lab.box[2] - lab.box[0])
    vehicles = [v for v, n in sightings.items() if n >= MIN_PASS_SIGHTINGS]
    passes = {plate_of[v] for v in vehicles}
    readable = {plate_of[v] for v in vehicles if tallest[v] >= READABLE_PLATE_HEIGHT}
    return passes, readable, set(plate_of.values()), sorted(widest[v] for v in vehicles)


def score_passes(ground_truth: dict, read_plates: list[str], max_frames: int | None = None) -> dict:
    """Pass-level accuracy of a run's reads against a synthetic scene's per-frame ground truth
    (`VideoFileSource.ground_truth`: frame index -> [PlateLabel]), over the frames processed."""
    passes, readable, truth, closest = _pass_truth(ground_truth, max_frames)
    wrong = [p for p in read_plates if p not in truth]
    return {
        "vehicle_passes": len(passes),
        "passes_read": len(passes & set(read_plates)),
        "pass_read_rate": round(len(passes & set(read_plates)) / max(len(passes), 1), 4),
        "readable_passes": len(readable),  # plate at least 16 px tall at its closest
        "readable_pass_read_rate": round(len(readable & set(read_plates)) / max(len(readable), 1), 4),
        "wrong_reads": len(wrong),
        "duplicate_reads": len(read_plates) - len(set(read_plates)),
        # how large the plates get: each pass's plate width at its closest, in pixels
        "plate_px_at_closest": {
            "min": round(closest[0], 1) if closest else None,
            "median": round(statistics.median(closest), 1) if closest else None,
            "max": round(closest[-1], 1) if closest else None,
        },
        # which ones: a count alone does not say whether a misread is a cut plate or a glyph
        "wrong": sorted(set(wrong)),
        "unread_readable": sorted(readable - set(read_plates)),
    }


# Publishing thresholds the sweep reports, from the run's own (the node default is 0.2) up: the
# last ones are where a hotlist alert would sit.
SWEEP_CONFIDENCES = (0.2, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def _thresholds(floor: float) -> list[float]:
    """The run's own threshold, then the sweep's above it (below it nothing was published)."""
    return [round(float(floor), 4)] + [t for t in SWEEP_CONFIDENCES if t > floor + 1e-9]


def frames_confidence_sweep(labels: list, events: list, floor: float) -> list[dict]:
    """Labelled frames: per threshold, the share of labelled plates read exactly by a read at least
    that confident, the misreads (a read whose box overlaps a labelled plate, IoU > 0.4, with other
    text) and the other reads (any read matching no label: misreads, unlabelled background plates,
    false alarms). `labels[i]` / `events[i]`: frame i's PlateLabels and ReadEvents."""
    right: list[float] = []  # per labelled plate: its best exact read's confidence (-1: none)
    misread: list[float] = []
    other: list[float] = []
    for labs, evs in zip(labels, events):
        texts = {lab.plate for lab in labs}
        for lab in labs:
            right.append(max((e.confidence for e in evs if e.plate == lab.plate), default=-1.0))
        for e in evs:
            if e.plate in texts:
                continue
            other.append(e.confidence)
            box = (e.box.x, e.box.y, e.box.x + e.box.w, e.box.y + e.box.h)
            if any(_iou(lab.box, box) > 0.4 for lab in labs):
                misread.append(e.confidence)
    r, m, o = np.asarray(right), np.asarray(misread), np.asarray(other)
    return [
        {
            "min_confidence": t,
            "read_rate": round(float((r >= t).mean()), 4) if len(r) else 0.0,
            "misreads": int((m >= t).sum()),
            "other_reads": int((o >= t).sum()),
        }
        for t in _thresholds(floor)
    ]


def video_confidence_sweep(ground_truth: dict, events: list, floor: float, max_frames: int | None = None) -> list[dict]:
    """A synthetic scene: per threshold, the vehicle passes read by a read at least that confident and
    the wrong reads (plates no vehicle carries) at least that confident, counted as score_passes does."""
    passes, _, truth, _ = _pass_truth(ground_truth, max_frames)  # once, not per threshold
    out = []
    for t in _thresholds(floor):
        kept = [e.plate for e in events if e.confidence >= t]
        out.append({"min_confidence": t, "passes_read": len(passes & set(kept)),
                    "wrong_reads": sum(p not in truth for p in kept)})
    return out


def _cell(v) -> str:
    if isinstance(v, list):
        return ", ".join(v)
    if isinstance(v, dict):
        return " / ".join(f"{k} {x}" for k, x in v.items())
    return v


def _miss_picture(pic: np.ndarray, origin: tuple[int, int], label, dets, events) -> np.ndarray:
    """A missed plate: label box green, the node's detections red, each published read's text at
    its box; small pictures upscaled (nearest) so a person can see what the OCR had."""
    import cv2

    ox, oy = origin  # pic is the bench's own copy (surroundings()): drawn on in place
    f = max(1.0, 480 / max(pic.shape[1], 1))
    if f > 1:
        pic = cv2.resize(pic, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)

    def rect(x1, y1, x2, y2, colour):
        p1 = (int((x1 - ox) * f), int((y1 - oy) * f))
        p2 = (int((x2 - ox) * f), int((y2 - oy) * f))
        cv2.rectangle(pic, p1, p2, colour, 1)
        return p1

    rect(*label.box, (0, 200, 0))
    if dets is not None:
        for b in np.asarray(dets.boxes).reshape(-1, 4):
            rect(*b, (0, 0, 255))
    for e in events:
        x, y = rect(e.box.x, e.box.y, e.box.x + e.box.w, e.box.y + e.box.h, (0, 0, 255))
        cv2.putText(pic, f"{e.plate} {e.confidence:.2f}", (max(0, x), max(14, y - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 0, 255), 1, cv2.LINE_AA)
    cv2.putText(pic, f"label {label.plate}", (4, pic.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 0), 1,
                cv2.LINE_AA)
    return pic


def _scaled_label(lab, scale: float):
    return PlateLabel(lab.plate, tuple(v * scale for v in lab.box), lab.track)


class _Shrunk:
    """An image folder whose frames reach the node shrunk by `scale` and JPEG-compressed at that size
    (edge.bench.ocr.shrink_like_camera), their labels with them: the same scenes from a camera with
    `scale` times the pixels across, or `1/scale` times as far away."""

    def __init__(self, source, scale: float):
        self._s = source
        self._scale = scale

    def __getattr__(self, name):
        return getattr(self._s, name)

    def __iter__(self):
        from dataclasses import replace

        from edge.bench.ocr import shrink_like_camera

        for f in self._s:
            w, h = f.size
            size = (max(1, round(w * self._scale)), max(1, round(h * self._scale)))
            labels = None if f.labels is None else [_scaled_label(lab, self._scale) for lab in f.labels]
            yield replace(f, image=shrink_like_camera(f.image, size), labels=labels)


class _Limited:
    """A source cut after max_frames (None: the whole source)."""

    def __init__(self, source, max_frames):
        self._s = source
        self._max = max_frames
        self.length = min(source.length, max_frames) if (max_frames and source.length) else (max_frames or source.length)

    def __getattr__(self, name):
        return getattr(self._s, name)

    def __iter__(self):
        self.delivered = set()  # frame indices that decoded and were processed
        for f in self._s:
            if self._max is not None and f.index >= self._max:
                return
            self.delivered.add(f.index)
            yield f
