"""Training data for the plate recognizer: the real development crops (train split only) and
synthetic plates, both pushed through the same augmentation.

Augmentation stands in for what the edge pipeline hands the OCR stage: detector boxes that are
loose or tight by some pixels, perspective left over after rectification, small or blurry crops,
sensor noise and JPEG artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.training.images import ImageReader, read_label_rows
from edge.training.splits import split

# Rendering/augmenting happens at twice the network input, then one area resize down, so the
# geometric jitter does not alias.
WORK_SCALE = 2


@dataclass
class PlateSet:
    images: list[np.ndarray]  # BGR uint8, any size
    texts: list[str]
    states: list[str]  # two-letter lowercase code or ""
    files: list[str]


def read_labels(root: Path) -> list[dict]:
    path = Path(root) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels.csv (file,state,plate) not found")
    rows = []
    for line, r in read_label_rows(path):
        for key in ("file", "plate"):
            if not r.get(key):
                raise ValueError(f"{path} line {line}: no {key!r} in {r}")
        rows.append(r)
    return rows


def load_crops(root: Path, part: str = "train") -> PlateSet:
    """part: 'train', 'val' or 'all' of the fixed split (edge/training/splits.py)."""
    rows = read_labels(root)
    train, val = split([r["file"] for r in rows])
    keep = {"train": set(train), "val": set(val), "all": set(train) | set(val)}[part]
    out = PlateSet([], [], [], [])
    reader = ImageReader(root, "crops")
    for r in rows:
        if r["file"] not in keep:
            continue
        img = reader.read(r["file"])
        if img is None:
            continue
        out.images.append(img)
        out.texts.append(r["plate"].strip().upper())
        out.states.append((r.get("state") or "").strip().lower())
        out.files.append(r["file"])
    reader.check()
    return out


def read_frame_labels(root: Path) -> list[dict]:
    """The rows of a frames folder's labels.csv (file,x,y,w,h,plate), in file order, each checked
    (all of them, whatever part is then read): a row without a file name, or whose box is not
    four finite numbers (other than a plate-less `name.jpg,,,,,`), is refused naming its line (a
    float() or int() error named neither, and an empty name read the folder itself as an image)."""
    from edge.sources.folder import is_plate_less_row

    path = Path(root) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels.csv (file,x,y,w,h,plate) not found")
    rows = []
    for line, row in read_label_rows(path):
        if not row.get("file"):
            raise ValueError(f"{path} line {line}: no file name in {row}")
        if not is_plate_less_row(row):
            try:
                box = [float(row[k]) for k in ("x", "y", "w", "h")]
            except (KeyError, TypeError, ValueError):
                box = []
            if len(box) != 4 or not np.isfinite(box).all() or row.get("plate") is None:
                raise ValueError(f"{path} line {line}: bad row {row} (file,x,y,w,h,plate; "
                                 "a frame with no plate: name.jpg,,,,,)")
        rows.append(row)
    return rows


def load_frame_plates(root: Path, part: str = "train") -> PlateSet:
    """Plates cut out of the real frames (`frames/labels.csv`: file,x,y,w,h,plate) by their
    labelled 2:1 box: the small, low-resolution plates a camera actually delivers. Only `part` of
    the frames' fixed split is read (train for training)."""
    rows = read_frame_labels(root)
    train, val = split([r["file"] for r in rows])
    keep = {"train": set(train), "val": set(val), "all": set(train) | set(val)}[part]
    from edge.sources.folder import is_plate_less_row

    out = PlateSet([], [], [], [])
    reader = ImageReader(root, "frames")
    name = frame = None  # the frame of the previous row: a frame's plates are on consecutive rows
    for r in rows:
        if r["file"] not in keep or is_plate_less_row(r):  # a frame labelled as showing no plate
            continue
        if r["file"] != name:
            name, frame = r["file"], reader.read(r["file"])
        if frame is None:
            continue
        x, y, w, h = (int(float(r[k])) for k in ("x", "y", "w", "h"))
        x0, y0 = max(0, x), max(0, y)
        crop = frame[y0 : y + h, x0 : x + w]
        if crop.size == 0 or len(r["plate"].strip()) < 2:
            continue
        out.images.append(np.ascontiguousarray(crop))
        out.texts.append(r["plate"].strip().upper())
        out.states.append("")  # frames carry no state label
        out.files.append(r["file"])
    reader.check()
    return out


def _rand(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def augment(img: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int], strength: float = 1.0) -> np.ndarray:
    """One random view of a plate crop, returned as BGR uint8 of size out_hw * WORK_SCALE.

    strength scales every jitter (0 gives a clean resize)."""
    H, W = out_hw[0] * WORK_SCALE, out_hw[1] * WORK_SCALE
    h, w = img.shape[:2]
    s = strength
    # Where the output rectangle's corners land in the source: zoom (mostly out: detector boxes are
    # looser than these tight crops), shift, rotation, and independent corner jitter (perspective).
    zoom = np.exp(_rand(rng, -0.03, 0.16) * s)
    cx = w / 2 + _rand(rng, -0.025, 0.025) * w * s
    cy = h / 2 + _rand(rng, -0.06, 0.06) * h * s
    half = np.array([w / 2 * zoom * np.exp(_rand(rng, -0.02, 0.06) * s), h / 2 * zoom * np.exp(_rand(rng, -0.06, 0.1) * s)])
    base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * half
    ang = np.deg2rad(_rand(rng, -4, 4) * s)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    quad = base @ rot.T + [cx, cy]
    quad += rng.uniform(-1, 1, (4, 2)) * [0.02 * w * s, 0.05 * h * s]
    dst = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    # Warp from a pre-shrunk source when the crop is much larger than the work size (anti-alias).
    f = min(1.0, 1.5 * W / w)
    if f < 1.0:
        img = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        quad = quad * f
    M = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    border = cv2.BORDER_REPLICATE if rng.random() < 0.6 else cv2.BORDER_REFLECT
    out = cv2.warpPerspective(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=border)
    return photometric(out, rng, s)


def photometric(img: np.ndarray, rng: np.random.Generator, s: float = 1.0) -> np.ndarray:
    """Low resolution, blur, colour/exposure, noise, JPEG: applied at work size, BGR uint8 in/out."""
    H, W = img.shape[:2]
    out = img
    if rng.random() < 0.45 * s:  # small plates far from the camera: lose resolution, then upsample
        f = _rand(rng, 0.25, 0.7)
        small = cv2.resize(out, (max(8, int(W * f)), max(4, int(H * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR if rng.random() < 0.7 else cv2.INTER_NEAREST)
    if rng.random() < 0.35 * s:
        out = cv2.GaussianBlur(out, (0, 0), _rand(rng, 0.5, 2.0))
    if rng.random() < 0.15 * s:  # motion blur along a random direction
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        R = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), _rand(rng, -30, 30), 1.0)
        kern = cv2.warpAffine(kern, R, (k, k))
        kern /= max(kern.sum(), 1e-6)
        out = cv2.filter2D(out, -1, kern)
    x = out.astype(np.float32)
    if rng.random() < 0.8:
        gains = np.exp(rng.uniform(-0.25, 0.25, 3) * s).astype(np.float32)  # colour cast
        contrast = np.exp(_rand(rng, -0.6, 0.3) * s)
        bright = _rand(rng, -50, 50) * s
        x = (x * gains - 128.0) * contrast + 128.0 + bright
    if rng.random() < 0.2 * s:  # uneven light: a linear gradient across the plate
        g = np.linspace(-1, 1, W, dtype=np.float32)[None, :] * _rand(rng, -40, 40)
        g = g + np.linspace(-1, 1, H, dtype=np.float32)[:, None] * _rand(rng, -30, 30)
        x = x + g[:, :, None]
    if rng.random() < 0.5 * s:
        x = x + rng.normal(0, _rand(rng, 2, 14), x.shape).astype(np.float32)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.4 * s:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 85))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def camera_chain(img: np.ndarray, rng: np.random.Generator, width_px: tuple[float, float] = (40.0, 130.0)) -> np.ndarray:
    """A plate as a distant camera delivers it, back at img's size (BGR uint8 in/out).

    The plate is first brought to the size it has on the sensor (width_px wide), and there it gets
    lens blur, sensor noise and JPEG compression: at that size an 8x8 JPEG block is as large as a
    character's stroke, the blocky look of real small plates, which JPEG at the training work size
    (photometric) does not make. Then it is scaled back up, as the node's rectifier does."""
    H, W = img.shape[:2]
    pw = int(round(_rand(rng, *width_px)))
    ph = max(6, int(round(pw * H / W)))
    small = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.6:
        small = cv2.GaussianBlur(small, (0, 0), _rand(rng, 0.3, 0.9))
    if rng.random() < 0.6:
        noisy = small.astype(np.float32) + rng.normal(0, _rand(rng, 1.0, 6.0), small.shape).astype(np.float32)
        small = np.clip(noisy, 0, 255).astype(np.uint8)
    if rng.random() < 0.8:
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 80))])
        if ok:
            small = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR if rng.random() < 0.8 else cv2.INTER_CUBIC)


def encode_texts(texts: list[str], alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """CTC targets: concatenated class ids (1-based; 0 is blank) and per-text lengths.
    Characters outside the alphabet (spaces, dashes) are dropped."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    ids = [[index[c] for c in t if c in index] for t in texts]
    flat = np.array([i for seq in ids for i in seq], np.int64)
    lengths = np.array([len(seq) for seq in ids], np.int64)
    return flat, lengths


def load_detected_frame_plates(root: Path, part: str = "train", detector_model: Path | None = None,
                               scales: tuple[float, ...] | None = None, size: tuple[int, int] = (144, 48)) -> PlateSet:
    """Plates of the real frames as the edge node feeds them to the OCR: found by the detector,
    rectified from its corners (`edge.vision.rectify.crop_plates`) at the node's framing variants
    (default: the three it votes over by default, `edge.node.pipeline.VARIANT_SCALES[:3]`). A
    detection counts when it overlaps a labelled plate (IoU > 0.4); it takes that plate's text.
    Only `part` of the frames' fixed split is read."""
    from edge.bench.detect import IOU_MATCH
    from edge.node.pipeline import VARIANT_SCALES, _scaled  # the node's framing variants

    if scales is None:
        scales = VARIANT_SCALES[:3]
    from edge.vision.base import box_iou
    from edge.vision.detector import OnnxPlateDetector
    from edge.vision.rectify import crop_plates

    rows = read_frame_labels(root)
    train, val = split(sorted({r["file"] for r in rows}))
    keep = {"train": set(train), "val": set(val), "all": set(train) | set(val)}[part]
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        if r["file"] in keep and len(r["plate"].strip()) >= 2:
            by_file.setdefault(r["file"], []).append(r)
    det = OnnxPlateDetector(detector_model) if detector_model else OnnxPlateDetector()
    out = PlateSet([], [], [], [])
    reader = ImageReader(root, "frames")
    for name in sorted(by_file):
        frame = reader.read(name)
        if frame is None:
            continue
        d = det.predict([frame])[0]
        if not len(d):
            continue
        labels = np.array([[float(r["x"]), float(r["y"]), float(r["x"]) + float(r["w"]), float(r["y"]) + float(r["h"])]
                           for r in by_file[name]], np.float32)
        iou = box_iou(d.boxes, labels)
        for j in range(len(d)):
            k = int(iou[j].argmax())
            if iou[j, k] <= IOU_MATCH:
                continue
            one = d[np.array([j])]
            for s in scales:
                out.images.append(np.ascontiguousarray(crop_plates(frame, one if s == 1.0 else _scaled(one, s), size)[0]))
                out.texts.append(by_file[name][k]["plate"].strip().upper())
                out.states.append("")
                out.files.append(name)
    reader.check()
    return out
