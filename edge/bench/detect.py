"""`alpr-edge bench detect DIR`: plate detector recall, false alarms per frame and speed.

DIR holds images and `labels.csv` (`file,x,y,w,h,plate`, one row per labelled plate; `name,,,,,`
for a frame labelled as showing no plate), read as `bench frames` reads it (edge.sources.folder). A
labelled plate counts as found when a predicted box overlaps it with IoU > 0.4 (the upstream openalpr
benchmark rule); a prediction matching no label is a false alarm, and the false alarms on the
plate-less frames are also counted apart (what a camera facing an empty road would raise). Frames
can show unlabelled background plates, so some "false alarms" are real plates: `--save-false-alarms
FOLDER` writes each one as a picture to look at. A labelled image that does not decode is skipped
and reported, its plates counted as not found, as `bench frames` does. Timing is the detector stage
alone (letterbox, network, decoding, NMS) on one onnxruntime thread, per frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IOU_MATCH = 0.4


@dataclass(frozen=True)
class FrameMatch:
    found: int  # labelled plates with a prediction of IoU > 0.4
    false_alarms: int  # predictions matching no label
    false_alarm_idx: np.ndarray  # indices of those predictions
    missed_idx: np.ndarray  # indices of labels not found
    # per found label: its best-overlapping prediction's width over the label's. Boxes narrower
    # than the plate cut edge characters out of the OCR's crop, which recall (IoU > 0.4) hides.
    width_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def match_frame(pred_boxes: np.ndarray, label_boxes: np.ndarray, iou_match: float = IOU_MATCH) -> FrameMatch:
    """Match one frame's predictions (N,4) to its labels (M,4), both xyxy frame pixels."""
    from edge.vision.detector import box_iou

    pred_boxes = np.asarray(pred_boxes, np.float32).reshape(-1, 4)
    label_boxes = np.asarray(label_boxes, np.float32).reshape(-1, 4)
    iou = box_iou(pred_boxes, label_boxes)
    hit = iou > iou_match
    found_mask = hit.any(axis=0) if len(pred_boxes) else np.zeros(len(label_boxes), bool)
    fa_mask = ~hit.any(axis=1) if len(label_boxes) else np.ones(len(pred_boxes), bool)
    found_idx = np.nonzero(found_mask)[0]
    best = iou[:, found_idx].argmax(axis=0) if len(found_idx) else np.zeros(0, np.int64)
    pred_w = pred_boxes[best, 2] - pred_boxes[best, 0]
    label_w = np.maximum(label_boxes[found_idx, 2] - label_boxes[found_idx, 0], 1e-6)
    return FrameMatch(
        int(found_mask.sum()), int(fa_mask.sum()), np.nonzero(fa_mask)[0], np.nonzero(~found_mask)[0],
        (pred_w / label_w).astype(np.float32),
    )


def run_bench(
    folder: Path,
    split: str = "all",
    model: str | None = None,
    threshold: float | None = None,
    save_false_alarms: Path | None = None,
    repeats: int = 1,
    plate_check_chars: int | None = None,
    ocr_model: str | None = None,
) -> dict:
    """Recall, false alarms and speed of the detection stage as the edge node runs it (the network,
    then the plate check when `plate_check_chars` > 0) and, beside it, of the network alone at
    its own threshold. Both on the same frames in the same run."""
    import cv2

    from edge.node.config import EdgeNodeConfig
    from edge.training.splits import split as split_names
    from edge.vision.detector import OnnxPlateDetector

    folder = Path(folder)
    labels = labelled_boxes(folder)
    names = sorted(labels)
    if split != "all":
        train, val = split_names(names)
        names = {"train": train, "val": val}[split]
    if not names:
        raise ValueError(f"{folder}: no labelled frames in split {split!r}")
    cv2.setNumThreads(1)  # the letterbox resize counts in the one-core budget too
    node_defaults = EdgeNodeConfig.model_fields
    if plate_check_chars is None:
        plate_check_chars = node_defaults["plate_check_chars"].default
    network = stage = OnnxPlateDetector(model, threshold=threshold, threads=1)
    if plate_check_chars:
        from edge.vision.ocr import load_ocr
        from edge.vision.verify import PROPOSAL_THRESHOLD, OcrCheckedDetector

        # the proposals come from the same loaded model at their own threshold (a second load took
        # as long again, and a model giving NaN boxes was warned about twice)
        proposals = AtThreshold(network, threshold if threshold is not None else PROPOSAL_THRESHOLD)
        stage = OcrCheckedDetector(proposals, load_ocr(ocr_model, intra_op_threads=1), plate_check_chars,
                                   min_height=node_defaults["min_plate_height"].default)
    if save_false_alarms:
        save_false_alarms = Path(save_false_alarms)
        try:
            save_false_alarms.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # before the run, naming the flag
            raise ValueError(f"--save-false-alarms {save_false_alarms}: {err.strerror or err}") from None
    names, frames, unreadable, sizes = _read_frames(folder, names)
    res = _measure(stage, names, frames, labels, repeats, save_false_alarms, unreadable)
    res.update(split=split, plate_check_chars=int(plate_check_chars), skipped=len(unreadable),
               unreadable=unreadable, frame_sizes=sizes, model=str(network.model_path))
    if plate_check_chars:
        from edge.vision.ocr import model_paths

        res["ocr_model"] = ",".join(str(p) for p in model_paths(ocr_model))
        net = _measure(network, names, frames, labels, repeats, None, unreadable)
        res["network_only"] = {k: net[k] for k in ("recall", "fp_per_frame", "false_alarms", "plate_less_false_alarms",
                                                   "plate_less_frames_alarmed", "ms_per_frame",
                                                   "cpu_ms_per_frame", "ms_per_1080p_frame",
                                                   "cpu_ms_per_1080p_frame", "threshold", "missed",
                                                   "non_finite_boxes")}
    return res


class AtThreshold:
    """A loaded OnnxPlateDetector at a score threshold of its own: two stages measured on one
    session (the threshold is set for each call; the bench runs one stage at a time). Its dropped
    NaN boxes are the loaded detector's count, of which _measure takes the difference per stage."""

    def __init__(self, detector, threshold: float):
        self.detector, self.threshold = detector, float(threshold)
        self.input_size, self.model_path = detector.input_size, detector.model_path

    @property
    def non_finite_boxes(self) -> int:
        return self.detector.non_finite_boxes

    def predict(self, frames):
        own = self.detector.threshold
        self.detector.threshold = self.threshold
        try:
            return self.detector.predict(frames)
        finally:
            self.detector.threshold = own


def labelled_boxes(folder: Path) -> dict[str, np.ndarray]:
    """{file: (N, 4) xyxy label boxes} by the folder reader bench frames uses, so both benches take
    the same labels; N = 0 for a frame labelled as showing no plate. A folder without labels, or
    labelling images it lacks, is refused with the reason."""
    from edge.sources.folder import read_labels

    labels = read_labels(folder)
    if not labels:
        raise FileNotFoundError(f"{folder}: no plate labels (labels.csv with file,x,y,w,h,plate, "
                                "or openalpr .txt files)")
    absent = [n for n in sorted(labels) if not (folder / n).is_file()]
    if absent:
        raise ValueError(f"{folder}: labels name {len(absent)} image(s) not in the folder: {', '.join(absent[:10])}")
    return {n: np.asarray([lab.box for lab in labs], np.float32).reshape(-1, 4) for n, labs in labels.items()}


class FrameFiles:
    """The labelled images of a folder that decode, decoded again each time they are iterated:
    holding them all took the folder's decoded size in memory (108 mostly 720p frames: 500 MB; a
    folder of 5,000 such frames would need 14 GB). Decoding is not in the timed part."""

    def __init__(self, folder: Path, names: list[str]):
        self.folder, self.names = folder, names

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, name: str) -> np.ndarray:
        import cv2

        frame = cv2.imread(str(self.folder / name), cv2.IMREAD_COLOR)
        if frame is None:  # it decoded when the bench began
            raise ValueError(f"{self.folder / name}: no longer a readable image (changed while the bench ran?)")
        return frame

    def __iter__(self):
        return (self._read(name) for name in self.names)

    def head(self, n: int) -> list[np.ndarray]:
        return [self._read(name) for name in self.names[:n]]


def _read_frames(folder: Path, names: list[str]) -> tuple[list[str], "FrameFiles", list[str], dict[str, int]]:
    """The names of the images that decode (as FrameFiles), the names that do not, and the frame
    sizes: those that do not are skipped and reported, as bench frames does, so one bad file does
    not cost the whole run. None decoding is an error."""
    import cv2

    kept, unreadable = [], []
    sizes: dict[str, int] = {}
    for name in names:
        frame = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if frame is None:
            unreadable.append(name)
        else:
            kept.append(name)
            key = f"{frame.shape[1]}x{frame.shape[0]}"
            sizes[key] = sizes.get(key, 0) + 1
    if not kept:
        raise ValueError(f"{folder}: none of the {len(names)} labelled images is a readable image")
    return kept, FrameFiles(folder, kept), unreadable, sizes


def _measure(det, names, frames, labels, repeats: int, save_false_alarms: Path | None,
             unreadable: list[str] = ()) -> dict:
    """One detection stage over the frames: matches, false alarm pictures, timings. The plates of
    the `unreadable` frames count as not found (recall on every labelled plate, as bench frames)."""
    from edge.bench.report import picture_error, picture_name, write_picture

    found = false_alarms = plate_less_fa = plate_less_alarmed = 0
    n_labels = sum(len(labels[n]) for n in unreadable)
    times: list[float] = []
    cpu_times: list[float] = []
    missed: list[str] = [n for n in unreadable if len(labels[n])]
    fa_files: list[str] = []
    used_names: set[str] = set()
    picture_failed: OSError | None = None
    ratios: list[np.ndarray] = []
    # detections the network gave a NaN or infinite box (dropped by OnnxPlateDetector), once per frame
    network = getattr(det, "detector", det)
    non_finite = 0
    for name, frame in zip(names, frames):
        det.predict([frame])  # warm-up of this frame's size, not timed
        for r in range(repeats):
            before = getattr(network, "non_finite_boxes", 0)
            t0, c0 = time.perf_counter(), time.process_time()
            dets = det.predict([frame])[0]
            times.append((time.perf_counter() - t0) * 1000)
            cpu_times.append((time.process_time() - c0) * 1000)
            if r == 0:
                non_finite += getattr(network, "non_finite_boxes", 0) - before
        gt = labels[name]
        m = match_frame(dets.boxes, gt)
        n_labels += len(gt)
        found += m.found
        false_alarms += m.false_alarms
        if not len(gt):  # labelled as showing no plate: every detection there is a false alarm
            plate_less_fa += m.false_alarms
            plate_less_alarmed += m.false_alarms > 0
        ratios.append(m.width_ratio)
        if len(m.missed_idx):
            missed.append(name)
        if save_false_alarms is not None and picture_failed is None:
            for k, i in enumerate(m.false_alarm_idx):
                # the whole file name, extension included: a.jpg's and a.png's pictures both kept
                path = save_false_alarms / picture_name(used_names, name, f"fa{k}")
                try:
                    write_picture(path, _false_alarm_picture(frame, dets.boxes[i], float(dets.scores[i]), gt))
                except OSError as err:  # no more pictures; said after the figures, which go on
                    picture_failed = err
                    break
                fa_files.append(str(path))
    times_arr = np.asarray(times)
    ratio = np.concatenate(ratios) if ratios else np.zeros(0, np.float32)
    fit = {"p5": float(np.percentile(ratio, 5)), "p50": float(np.median(ratio)), "p95": float(np.percentile(ratio, 95)),
           "narrower_10pct": int((ratio < 0.9).sum())} if len(ratio) else {}
    return {
        "n": n_labels,
        "frames": len(names),
        "recall": found / max(n_labels, 1),
        "fp_per_frame": false_alarms / len(names),
        "false_alarms": false_alarms,
        "plate_less_frames": sum(not len(labels[n]) for n in names),
        "plate_less_false_alarms": plate_less_fa,
        "plate_less_frames_alarmed": plate_less_alarmed,  # of those frames, how many had any
        "ms_per_frame": float(np.mean(times_arr)),
        "ms_p50": float(np.percentile(times_arr, 50)),
        "ms_p95": float(np.percentile(times_arr, 95)),
        # CPU time of this single-threaded process per frame: what one core spends, which stays
        # meaningful when other jobs share the machine and stretch the wall-clock figure
        "cpu_ms_per_frame": float(np.mean(cpu_times)),
        **dict(zip(("ms_per_1080p_frame", "cpu_ms_per_1080p_frame"), speed_1080p(det, frames.head(10)))),
        "threshold": det.threshold,
        "input_size": list(det.input_size),
        "missed": missed,
        "false_alarm_pictures": fa_files,
        **({"false_alarm_pictures_error": picture_error("--save-false-alarms", picture_failed, len(fa_files))}
           if picture_failed is not None else {}),
        "box_width_ratio": fit,  # found plates: matched box width / labelled width
        "non_finite_boxes": non_finite,  # detections with a NaN or infinite box, dropped (a model fault)
    }


def speed_1080p(det, frames: list[np.ndarray], repeats: int = 3) -> tuple[float, float]:
    """(wall ms, CPU ms) per 1920x1080 frame on the detector's thread setting: the bench frames
    resized to 1080p (real content, so decoding sees real candidate counts)."""
    import cv2

    big = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for f in frames[:10]]
    if not big:
        big = [np.zeros((1080, 1920, 3), np.uint8)]
    det.predict(big[:1])
    times, cpu = [], []
    for f in big:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            det.predict([f])
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    return float(np.mean(times)), float(np.mean(cpu))


def _false_alarm_picture(frame: np.ndarray, box: np.ndarray, score: float, labels: np.ndarray) -> np.ndarray:
    """The false alarm (red) with context, labelled plates in green, upscaled small ones."""
    import cv2

    from edge.bench.report import surroundings

    x1, y1, x2, y2 = box
    pic, (cx1, cy1) = surroundings(frame, box)
    for lb in labels:
        cv2.rectangle(pic, (int(lb[0] - cx1), int(lb[1] - cy1)), (int(lb[2] - cx1), int(lb[3] - cy1)), (0, 200, 0), 1)
    cv2.rectangle(pic, (int(x1 - cx1), int(y1 - cy1)), (int(x2 - cx1), int(y2 - cy1)), (0, 0, 255), 1)
    if pic.shape[1] < 320:
        f = 320 / pic.shape[1]
        pic = cv2.resize(pic, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    cv2.putText(pic, f"{score:.2f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    return pic


def _plate_less_cell(r: dict, frames: int) -> str:
    """False alarms on the frames labelled as showing no plate, and in how many of them; "-" without such frames."""
    return f"{r['plate_less_false_alarms']} ({r['plate_less_frames_alarmed']}/{frames})" if frames else "-"


def _cmd(args) -> int:
    from edge.bench.report import machine_info, print_json_last, print_table

    if args.repeats < 1:  # zero timed runs left nothing to score: an UnboundLocalError traceback
        raise SystemExit(f"bench detect: --repeats must be at least 1, got {args.repeats}")
    # named by option, not as the detector's "threshold must be in (0, 1)" / the check's "min_chars >= 1"
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise SystemExit(f"bench detect: --threshold must be within (0, 1), got {args.threshold}")
    if args.plate_check_chars is not None and args.plate_check_chars < 0:
        raise SystemExit(f"bench detect: --plate-check-chars must be 0 (off) or more, got {args.plate_check_chars}")
    if not Path(args.dir).is_dir():  # was "no plate labels" for a folder that is not there
        raise SystemExit(f"bench detect: folder not found: {args.dir}")
    res = run_bench(
        Path(args.dir),
        split=args.split,
        model=args.model,
        threshold=args.threshold,
        save_false_alarms=Path(args.save_false_alarms) if args.save_false_alarms else None,
        repeats=args.repeats,
        plate_check_chars=args.plate_check_chars,
        ocr_model=args.ocr_model,
    )
    res["machine"] = machine_info()
    cols = ["frames", "skipped", "plates", "recall", "fp/frame", "plate-less fp", "ms/frame",
            "cpu ms/frame", "ms/1080p", "cpu ms/1080p", "threshold"]
    row = lambda name, r: [name, res["frames"], res["skipped"], res["n"], r["recall"], r["fp_per_frame"],
                           _plate_less_cell(r, res["plate_less_frames"]),
                           r["ms_per_frame"], r["cpu_ms_per_frame"], r["ms_per_1080p_frame"],
                           r["cpu_ms_per_1080p_frame"], r["threshold"]]
    rows = []
    if "network_only" in res:
        rows.append(row(f"network + plate check ({res['plate_check_chars']}+ chars)", res))
        rows.append(row("network alone", res["network_only"]))
    else:
        rows.append(row("network alone", res))
    print_table(f"bench detect: {args.dir} (split {args.split})", ["stage"] + cols, rows)
    fit = res["box_width_ratio"]
    if fit:
        print(f"box fit (matched box width / labelled plate width): "
              f"p5 {fit['p5']:.2f}, median {fit['p50']:.2f}, p95 {fit['p95']:.2f}; "
              f"{fit['narrower_10pct']} boxes more than 10% narrower than their plate")
    if res["unreadable"]:
        print(f"{res['skipped']} frame(s) did not decode and were skipped; their plates count as not found:",
              " ".join(res["unreadable"]))
    if res.get("non_finite_boxes"):
        print(f"{res['non_finite_boxes']} detection(s) with a NaN or infinite box were dropped (a model fault)")
    if res["missed"]:
        print("missed:", " ".join(res["missed"]))
    if res["false_alarm_pictures"]:
        print("false alarm pictures:", " ".join(res["false_alarm_pictures"]))
    if args.json:
        print_json_last(res)
    if "false_alarm_pictures_error" in res:
        raise SystemExit(f"bench detect: {res['false_alarm_pictures_error']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("detect", help="plate detector: recall (IoU > 0.4), false alarms per frame, ms per frame")
    p.add_argument("dir", help="folder of images + labels.csv (file,x,y,w,h,plate; NAME,,,,, for a frame "
                                "with no plate)")
    p.add_argument("--split", choices=["all", "train", "val"], default="all",
                   help="part of the fixed split (edge/training/splits.py) to use")
    p.add_argument("--model", default=None, help="ONNX detector (default models/detector.onnx)")
    p.add_argument("--threshold", type=float, default=None, help="score threshold (default: the model's)")
    p.add_argument("--save-false-alarms", metavar="FOLDER", default=None, help="write each false alarm as a PNG")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per frame")
    p.add_argument("--plate-check-chars", type=int, default=None,
                   help="the node's plate check: keep detections the OCR reads this many characters in "
                        "(default: the node's, 3; 0: off); the network alone is measured beside it")
    p.add_argument("--ocr-model", default=None, help="ONNX OCR of the plate check, one or comma-separated (default: the node's pair)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_cmd)
