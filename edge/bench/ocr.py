"""`alpr-edge bench ocr DIR`: plate-reading accuracy and speed on labelled crops.

DIR holds images and `labels.csv` (`file,state,plate`). Engines: `onnx` (this project's model,
the default), and the reference engines `tesseract` and `rapidocr` when installed (the `bench`
extra; Tesseract also needs Debian's `tesseract-ocr`). Every engine reads the same crops in the
same run. Figures:
- exact: share of crops whose read equals the label;
- exact_o0: the same with O and 0 counted equal (many US plates draw them alike);
- char_acc: 1 - (sum of edit distances) / (sum of label lengths), floored at 0;
- ms_per_plate_b1: one crop per call, one thread; ms_per_plate_batched: batches of --batch crops
  (wall clock; cpu_ms_* are this process's CPU time, which other load on the machine inflates less).
With --json the last stdout line is one JSON object: the first engine's figures at top level,
every engine under "engines".
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge.vision.vote import edit_distance  # noqa: F401  (re-exported for the bench and tests)
from edge.bench.report import wilson_interval

ENGINES = ("onnx", "tesseract", "rapidocr")




def score_reads(preds: Sequence[str], labels: Sequence[str]) -> dict:
    if len(preds) != len(labels):
        raise ValueError(f"preds: {len(preds)} reads for {len(labels)} labels")
    n = len(labels)
    if n == 0:
        return {"n": 0, "exact": 0.0, "exact_ci95": [0.0, 1.0], "exact_o0": 0.0, "char_acc": 0.0}
    o0 = str.maketrans("O", "0")
    exact = sum(p == t for p, t in zip(preds, labels))
    exact_o0 = sum(p.translate(o0) == t.translate(o0) for p, t in zip(preds, labels))
    dist = sum(edit_distance(p, t) for p, t in zip(preds, labels))
    chars = sum(len(t) for t in labels)
    return {
        "n": n,
        "exact": exact / n,
        "exact_ci95": [round(v, 4) for v in wilson_interval(exact, n)],  # 81 crops: 96.3% is 89.7-98.7%
        "exact_o0": exact_o0 / n,
        "char_acc": max(0.0, 1.0 - dist / max(chars, 1)),
    }


def confusions(preds: Sequence[str], labels: Sequence[str]) -> list[tuple[str, str, int]]:
    """(label char, read char, count) substitutions among same-length misreads, most common first."""
    from collections import Counter

    c: Counter = Counter()
    for p, t in zip(preds, labels):
        if p != t and len(p) == len(t):
            c.update((a, b) for a, b in zip(t, p) if a != b)
    return [(a, b, k) for (a, b), k in c.most_common()]


def load_dir(root: Path, split: str, unreadable: list[str] | None = None
             ) -> tuple[list[str], list[np.ndarray], list[str], list[str]]:
    """The labelled crops of `root` in `split`: (files, images, plates, states). A crop that does not
    decode is refused, or, with a list as `unreadable`, skipped and its name appended there (bench
    ocr: one bad file does not cost the whole run, as bench frames and bench detect skip a frame)."""
    import cv2

    from edge.training.splits import split as split_names

    path = Path(root) / "labels.csv"
    if not path.is_file():
        raise SystemExit(f"bench ocr: {path} not found (need labels.csv with file,state,plate)")
    from edge.sources.folder import open_csv

    try:
        with open_csv(path) as f:
            # "file, state, plate": names and values without the spaces after the commas
            reader = csv.DictReader(f)
            rows = [{(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items()}
                    for r in reader]
            columns = {(k or "").strip() for k in reader.fieldnames or []}  # also with no row under them
    except UnicodeDecodeError as err:
        raise SystemExit(f"bench ocr: {path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                         f"{err.start}); save it as UTF-8 CSV") from None
    missing = {"file", "plate"} - columns
    if missing:
        raise SystemExit(f"bench ocr: {path} lacks column(s) {sorted(missing)}")
    if {"x", "y", "w", "h"} <= columns:  # plate boxes: whole frames, not crops
        raise SystemExit(f"bench ocr: {path} labels plate boxes in frames (file,x,y,w,h,plate); bench ocr reads "
                         f"plate crops (file,state,plate): use `alpr-edge bench frames {root}` for frames")
    # every row checked before the split picks its part: a row without a file was dropped by
    # --split val|train without a word, and the line numbers named were those of the part
    for line, r in enumerate(rows, 2):
        if not (r.get("file") or "").strip() or not (r.get("plate") or "").strip():
            raise SystemExit(f"bench ocr: {path} line {line}: no file or plate in {r}")
    if split != "all":
        train, val = split_names([r["file"] for r in rows])
        keep = set(val if split == "val" else train)
        rows = [r for r in rows if r["file"] in keep]
    files, images, plates, states = [], [], [], []
    for r in rows:
        img = cv2.imread(str(Path(root) / r["file"]), cv2.IMREAD_COLOR)
        if img is None:
            if unreadable is None:
                raise SystemExit(f"bench ocr: {root}/{r['file']} is not a readable image")
            unreadable.append(r["file"])
            continue
        files.append(r["file"])
        images.append(img)
        plates.append(r["plate"].strip().upper())
        states.append((r.get("state") or "").strip().upper())
    return files, images, plates, states


def shrink_like_camera(img: np.ndarray, size: tuple[int, int], jpeg_quality: int = 60) -> np.ndarray:
    """The image as a camera with fewer pixels on it delivers it: shrunk (area) to `size` (w, h) and
    JPEG-compressed at that size (quality 60, a common camera setting). Deterministic."""
    import cv2

    small = cv2.resize(img, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else small


def at_plate_width(img: np.ndarray, width: int, jpeg_quality: int = 60) -> np.ndarray:
    """The crop as a camera farther away delivers it: shrunk until the plate is `width` pixels
    wide and JPEG-compressed at that size (shrink_like_camera), then scaled back up (linear) as the
    node's rectifier scales plates to the OCR's size. Deterministic, so every engine and every run
    sees the same pixels. Crops already narrower are left alone."""
    import cv2

    h, w = img.shape[:2]
    if w <= width:
        return img
    small = shrink_like_camera(img, (int(width), max(4, int(round(h * width / w)))), jpeg_quality)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------------------------
# engines: each returns (read_batch(crops) -> texts, batches_natively, extra-info callable)


class NotInstalled(Exception):
    pass


_KEEP = re.compile(r"[^A-Z0-9]")


def _clean(text: str) -> str:
    return _KEEP.sub("", text.upper())


def make_onnx(args):
    from edge.vision.ocr import load_ocr, read_plates

    ocr = load_ocr(args.model, intra_op_threads=1, max_batch=args.batch)

    def read(crops):
        # the plates' widths as a camera delivered them (--plate-width), else the crops' own
        widths = [args.plate_width] * len(crops) if args.plate_width else [c.shape[1] for c in crops]
        return read_plates(ocr, crops, widths)

    return read, True


def make_tesseract(args):
    try:
        import pytesseract
    except ImportError as err:
        raise NotInstalled("pytesseract not installed (pip install .[bench])") from err
    if shutil.which("tesseract") is None:
        raise NotInstalled("tesseract binary not installed (apt-get install tesseract-ocr)")
    import cv2

    config = "--psm 7 --oem 1 -c tessedit_char_whitelist=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

    def read(crops):
        out = []
        for c in crops:
            g = cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)
            out.append(_clean(pytesseract.image_to_string(g, config=config)))
        return out

    return read, False


def make_rapidocr(args):
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as err:
        raise NotInstalled("rapidocr-onnxruntime not installed (pip install .[bench])") from err
    try:
        engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    except TypeError:  # older releases take no thread arguments
        engine = RapidOCR()

    def read(crops):
        out = []
        for c in crops:
            result, _ = engine(c)
            out.append(_rapid_plate_text(result or []))
        return out

    return read, False


def _rapid_plate_text(result) -> str:
    """RapidOCR finds every text line on a plate (state name, slogan, registration). The plate
    number is the tallest line; lines nearly as tall (a split 'ABC 1234') join it, left to right."""
    lines = []
    for box, text, _score in result:
        t = _clean(text)
        if not t:
            continue
        b = np.asarray(box, np.float32)
        lines.append((float(b[:, 1].max() - b[:, 1].min()), float(b[:, 0].min()), t))
    if not lines:
        return ""
    tallest = max(h for h, _, _ in lines)
    return "".join(t for h, x, t in sorted((l for l in lines if l[0] >= 0.75 * tallest), key=lambda l: l[1]))


def _cpu_s() -> float:
    """CPU seconds of this process (high resolution) and of its finished children (Tesseract runs
    as a child; os.times counts those in clock ticks, fine for its ~100 ms per plate)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


MAKERS: dict[str, Callable] = {"onnx": make_onnx, "tesseract": make_tesseract, "rapidocr": make_rapidocr}


def run_engine(name: str, args, images, plates, states) -> dict:
    try:
        read, batches = MAKERS[name](args)
    except NotInstalled as err:
        return {"engine": name, "error": f"not installed: {err}"}
    # Warm-up outside the clock (first-call allocations).
    read(images[:1])
    # Fast engines get several timed passes (median); slow reference engines one.
    passes = 5 if batches else 1
    t_b1, c_b1, t_b, c_b = [], [], [], []
    batched_res = None
    for _ in range(passes):
        t0, c0 = time.perf_counter(), _cpu_s()
        reads_b1 = [read([img]) for img in images]
        t_b1.append(time.perf_counter() - t0)
        c_b1.append(_cpu_s() - c0)
        if batches:
            t0, c0 = time.perf_counter(), _cpu_s()
            batched_res = read(images)
            t_b.append(time.perf_counter() - t0)
            c_b.append(_cpu_s() - c0)
    per = 1000 / len(images)
    ms_b1, cpu_b1 = float(np.median(t_b1)) * per, float(np.median(c_b1)) * per
    if batches:
        ms_batched, cpu_batched = float(np.median(t_b)) * per, float(np.median(c_b)) * per
        texts = list(batched_res.texts)
        if [r.texts[0] for r in reads_b1] != texts:  # batching must not change a read
            raise RuntimeError(f"{name}: batched reads differ from batch-1 reads")
    else:
        texts = [r[0] for r in reads_b1]
        ms_batched, cpu_batched = ms_b1, cpu_b1
    out = {"engine": name, **score_reads(texts, plates), "ms_per_plate_b1": ms_b1, "ms_per_plate_batched": ms_batched,
           # CPU time of this process per plate: the same figures, less what other processes took
           "cpu_ms_per_plate_b1": cpu_b1, "cpu_ms_per_plate_batched": cpu_batched}
    if batched_res is not None and batched_res.region and any(states):
        have = [i for i, s in enumerate(states) if s]
        out["state_acc"] = float(np.mean([batched_res.region[i] == states[i] for i in have]))
        conf = batched_res.confidence
        right = [conf[i] for i in range(len(texts)) if texts[i] == plates[i]]
        wrong = [conf[i] for i in range(len(texts)) if texts[i] != plates[i]]
        out["mean_confidence_right"] = float(np.mean(right)) if right else None
        out["mean_confidence_wrong"] = float(np.mean(wrong)) if wrong else None
    out["confusions"] = [f"{a}->{b} x{k}" for a, b, k in confusions(texts, plates)[:10]]
    out["misreads"] = [[t, p] for p, t in zip(texts, plates) if p != t]
    return out


def run(args) -> int:
    from edge.bench.report import machine_info, print_json_last, print_table

    import cv2

    engines = []
    for e in args.engine or ["onnx"]:
        for name in ENGINES if e == "all" else [e]:
            if name not in engines:
                engines.append(name)
    cv2.setNumThreads(1)  # one thread per engine, OpenCV pre-processing included
    if args.batch < 1:  # said by flag, not as the OCR config's max_batch
        raise SystemExit(f"bench ocr: --batch must be at least 1, got {args.batch}")
    if args.plate_width is not None and args.plate_width < 8:
        raise SystemExit(f"bench ocr: --plate-width {args.plate_width}: a plate at least 8 px wide")
    unreadable: list[str] = []
    files, images, plates, states = load_dir(args.dir, args.split, unreadable)
    if not images and unreadable:
        raise SystemExit(f"bench ocr: none of the {len(unreadable)} labelled crops in {args.dir} (split {args.split}) "
                         f"is a readable image: {', '.join(unreadable[:10])}")
    if not images:
        raise SystemExit(f"bench ocr: no crops in {args.dir} (split {args.split})")
    if args.plate_width:
        images = [at_plate_width(im, args.plate_width) for im in images]
    results = [run_engine(e, args, images, plates, states) for e in engines]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["engine"], "-", r["error"], "", "", "", "", "", "", ""])
        else:
            rows.append([r["engine"], r["n"], "{:.1%} ({:.0%}-{:.0%})".format(r["exact"], *r["exact_ci95"]), f"{r['exact_o0']:.1%}", f"{r['char_acc']:.1%}",
                         f"{r['ms_per_plate_b1']:.3f}", f"{r['ms_per_plate_batched']:.3f}",
                         f"{r['cpu_ms_per_plate_b1']:.3f}", f"{r['cpu_ms_per_plate_batched']:.3f}",
                         f"{r['state_acc']:.1%}" if "state_acc" in r else "-"])
    print_table(
        f"bench ocr: {args.dir} (split {args.split}, {len(images)} crops"
        + (f", plates {args.plate_width} px wide)" if args.plate_width else ")"),
        ["engine", "n", "exact (95% interval)", "exact O=0", "char acc", "ms/plate b1", "ms/plate batched", "cpu ms b1",
         "cpu ms batched", "state acc"],
        rows,
    )
    if unreadable:  # skipped, not scored: the figures above are over the crops that decoded
        print(f"{len(unreadable)} crop(s) did not decode and were skipped (not scored):", " ".join(unreadable))
    if any("state_acc" in r for r in results):
        # The renderer's state designs are its own, so training gives synthetic crops no state loss.
        print("state acc: a hint learned from real crops only (models/ocr.md); on synthetic crops it measures nothing")
    for r in results:
        if r.get("misreads"):
            shown = ", ".join(f"{t}->{p or '(empty)'}" for t, p in r["misreads"][:15])
            print(f"{r['engine']} misreads (label->read): {shown}")
    first = results[0]
    summary = {k: v for k, v in first.items() if k not in ("confusions", "misreads")}
    summary.update({"split": args.split, "plate_width": args.plate_width, "skipped": len(unreadable),
                    "unreadable": unreadable, "engines": {r["engine"]: r for r in results}, "machine": machine_info()})
    if args.json:
        print_json_last(summary)
    return 0 if "error" not in first else 1


def register(sub) -> None:
    p = sub.add_parser("ocr", help="plate OCR accuracy and speed on labelled crops (DIR/labels.csv: file,state,plate)")
    p.add_argument("dir", type=Path, help="folder with crops and labels.csv")
    p.add_argument("--engine", action="append", choices=(*ENGINES, "all"),
                   help="engine to run (repeatable; default onnx; all = every engine). tesseract/rapidocr need the bench extra")
    p.add_argument("--split", choices=("val", "train", "all"), default="all",
                   help="part of the fixed split (edge/training/splits.py) to read; all for other folders")
    p.add_argument("--model", default=None,
                   help="ONNX model, or several comma-separated (the first reads every plate, the others give a "
                        "second opinion on small ones); "
                        "default: the node's pair, models/ocr.onnx,models/ocr-camera.onnx")
    p.add_argument("--batch", type=int, default=64, help="crops per call in the batched timing")
    p.add_argument("--plate-width", type=int, default=None, metavar="PX",
                   help="read each crop as a camera would deliver it with the plate PX pixels wide (shrunk, "
                        "JPEG at that size, scaled back): will a camera at this distance read plates?")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)
