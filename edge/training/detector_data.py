"""Training tiles for the plate detector: real frames plus plates pasted with perspective.

Every tile is a `tile` x `tile` patch at the scale the network sees at run time (a frame
letterboxed into the detector input, times a random zoom so smaller and larger plates occur too).
Sources, all from the TRAIN part of the fixed split (edge/training/splits.py):

- the real development frames with their labelled plate (its 2:1 box);
- real plates pasted with a random perspective, size, blur and lighting: cut from train frames by
  their labels, the tight train crops, and rendered synthetic plates when `edge.synth.plates` exists;
- distractors pasted the same way (text lines that are not plates, patches of other frames,
  camera timestamps), so that a pasted rectangle's seam is not what makes a plate;
- synthetic backgrounds (gradients, noise, grille-like bars) besides the real frames.

Targets are kept as plain arrays per tile: boxes (N,4) xyxy with the 2:1 convention, corners (N,4,2),
and `has_corners` (N,) (False for the real labels, which only give an axis-aligned box).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.training.images import ImageReader, read_label_rows
from edge.training.splits import split
from edge.vision.detector import PAD_VALUE, resize_for_net

log = logging.getLogger(__name__)

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "openalpr-us"
IGNORE_CSV = Path(__file__).with_name("detector_ignore.csv")


@dataclass
class LabelledFrame:
    name: str
    image: np.ndarray  # BGR uint8
    boxes: np.ndarray  # (N, 4) xyxy float32
    # unlabelled plates seen in the frame (edge/training/detector_ignore.csv): neither plate nor
    # background for the loss, so the net is not taught that a real plate is background
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


@dataclass
class Tile:
    image: np.ndarray  # (T, T, 3) uint8 BGR
    boxes: np.ndarray  # (N, 4) float32 xyxy, 2:1 around each plate
    corners: np.ndarray  # (N, 4, 2) float32
    has_corners: np.ndarray  # (N,) bool
    ignore: np.ndarray  # (M, 4) float32 xyxy: real plates cut by the tile edge, neither plate nor background


def read_labels(folder: Path, file_name: str = "labels.csv") -> dict[str, list[tuple[float, float, float, float]]]:
    """labels.csv `file,x,y,w,h,plate` -> {file: [xyxy, ...]}; a plate-less row (`name.jpg,,,,,`,
    as `synth scene --frames-every` writes) gives its frame no boxes: a negative to train on."""
    from edge.sources.folder import is_plate_less_row

    path = Path(folder) / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (expected columns file,x,y,w,h,plate)")
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    rows = read_label_rows(path)
    missing = {"file", "x", "y", "w", "h"} - (set(rows[0][1]) if rows else _columns(path))
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    for line, row in rows:
        if not row.get("file"):  # would name the folder itself as the image
            raise ValueError(f"{path} line {line}: no file name in {row}")
        if is_plate_less_row(row):
            out.setdefault(row["file"], [])
            continue
        try:
            x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
        except (TypeError, ValueError):  # a short row (None) or a non-number
            raise ValueError(f"{path} line {line}: bad row {row}") from None
        out.setdefault(row["file"], []).append((x, y, x + w, y + h))
    return out


def _columns(path: Path) -> set[str]:
    """The column names of a labels file with no rows."""
    from edge.sources.folder import open_csv

    with open_csv(path) as fh:
        return {(name or "").strip() for name in next(csv.reader(fh), [])}


def load_frames(folder: Path, part: str) -> list[LabelledFrame]:
    """Labelled frames of `part` ('train', 'val' or 'all') of the fixed split."""
    labels = read_labels(folder)
    ignore = read_labels(IGNORE_CSV.parent, IGNORE_CSV.name) if IGNORE_CSV.is_file() else {}
    train, val = split(sorted(labels))
    names = {"train": train, "val": val, "all": train + val}[part]
    frames = []
    reader = ImageReader(folder, "frames")
    for name in names:
        image = reader.read(name)
        if image is None:
            continue
        ign = np.asarray(ignore.get(name, []), np.float32).reshape(-1, 4)
        frames.append(LabelledFrame(name, image, np.asarray(labels[name], np.float32).reshape(-1, 4), ign))
    reader.check()
    return frames


def load_train_crops(folder: Path) -> list[np.ndarray]:
    """The tight real plate crops of the TRAIN part (file names split like every other model)."""
    names = [row["file"] for _line, row in read_label_rows(folder / "labels.csv")]
    train, _ = split(sorted(names))
    reader = ImageReader(folder, "crops")  # they were dropped without a word
    crops = [reader.read(n) for n in train]
    reader.check()
    return [c for c in crops if c is not None]


def synthetic_plates(count: int, seed: int) -> list[np.ndarray]:
    """Clean rendered plates (all states) from edge.synth.plates, or [] if the renderer is missing."""
    try:
        from edge.synth.plates import render_plate_images
    except ImportError:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        # varied render heights: the pasted plate is downscaled anyway, this varies stroke detail
        (img, _text, _state), = render_plate_images(1, rng, height=int(rng.choice([60, 90, 120])))
        out.append(np.ascontiguousarray(img))
    return out


def box_2to1(quad: np.ndarray) -> np.ndarray:
    """The label convention for a plate quad: 2:1 box centred on its bounding box, w = max(bw, 2*bh).

    Same rule as edge.synth.plates.plate_box, so synthetic scenes and training agree.
    """
    x1, y1 = quad.min(axis=0)
    x2, y2 = quad.max(axis=0)
    cx, cy, w = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 2 * (y2 - y1))
    return np.array([cx - w / 2, cy - w / 4, cx + w / 2, cy + w / 4], np.float32)


class TileSampler:
    """Draws random training tiles. Deterministic for a given seed."""

    def __init__(
        self,
        frames: list[LabelledFrame],
        plates: list[np.ndarray],
        input_size: tuple[int, int],
        tile: int = 256,
        seed: int = 0,
        hard_negatives: dict[str, np.ndarray] | None = None,
        hard_fraction: float = 0.3,
    ) -> None:
        if not frames:
            raise ValueError("no training frames")
        if not plates:
            raise ValueError("no plate images to paste")
        self.frames = frames
        self.plates = plates
        self.input_size = input_size
        self.tile = tile
        self.rng = np.random.default_rng(seed)
        # mined false alarms of an earlier model on the TRAIN frames: {frame name: (N, 4) xyxy};
        # a share of frame tiles is centred on one so the confusers (lights, emblems) come often
        names = {f.name for f in frames}
        self.hard = [(i, b) for i, f in enumerate(frames) for b in (hard_negatives or {}).get(f.name, [])
                     if f.name in names]
        self.hard_fraction = hard_fraction if self.hard else 0.0

    # -- public -------------------------------------------------------------------------------
    def sample(self) -> Tile:
        rng = self.rng
        if rng.random() < 0.8:
            image, boxes, ignore = self._frame_tile()
        else:
            image, boxes = self._synthetic_background(), np.zeros((0, 4), np.float32)
            ignore = np.zeros((0, 4), np.float32)
        corners = np.stack([_box_corners(b) for b in boxes]) if len(boxes) else np.zeros((0, 4, 2), np.float32)
        has_corners = np.zeros(len(boxes), bool)

        occupied = [b for b in boxes] + [b for b in ignore]
        n_paste = rng.choice([0, 1, 1, 2, 3])
        new_boxes, new_corners = [], []
        for _ in range(n_paste):
            plate = self.plates[rng.integers(len(self.plates))]
            quad = self._place_quad(plate.shape[1] / plate.shape[0], occupied, small_bias=True)
            if quad is None:
                continue
            _paste(image, self._plate_look(plate), quad, rng)
            b = box_2to1(quad)
            occupied.append(b)
            new_boxes.append(b)
            new_corners.append(quad.astype(np.float32))
        for _ in range(rng.choice([0, 1, 1, 2])):
            patch = self._distractor()
            quad = self._place_quad(patch.shape[1] / patch.shape[0], occupied, small_bias=False)
            if quad is not None:
                _paste(image, patch, quad, rng)
                occupied.append(box_2to1(quad))
        if rng.random() < 0.25:
            _timestamp(image, rng)
        image = self._photometric(image)
        if new_boxes:
            boxes = np.concatenate([boxes, np.stack(new_boxes)])
            corners = np.concatenate([corners, np.stack(new_corners)])
            has_corners = np.concatenate([has_corners, np.ones(len(new_boxes), bool)])
        return Tile(image, boxes.astype(np.float32), corners.astype(np.float32), has_corners, ignore)

    # -- backgrounds ----------------------------------------------------------------------------
    def _frame_tile(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng, T = self.rng, self.tile
        hard_box = None
        if self.hard_fraction and rng.random() < self.hard_fraction:
            idx, hard_box = self.hard[rng.integers(len(self.hard))]
            fr = self.frames[idx]
        else:
            fr = self.frames[rng.integers(len(self.frames))]
        h, w = fr.image.shape[:2]
        base = min(self.input_size[0] / w, self.input_size[1] / h)
        # zoom 0.6x..1.6x around the run-time scale: plates from ~15 px to ~250 px wide
        scale = base * math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
        boxes = fr.boxes * scale
        extra_ignore = fr.ignore * scale
        if hard_box is not None:
            b = np.asarray(hard_box, np.float32) * scale
            x0 = int(round(rng.uniform(b[2] - T + 8, b[0] - 8))) if b[2] - b[0] < T - 16 else int((b[0] + b[2]) / 2 - T / 2)
            y0 = int(round(rng.uniform(b[3] - T + 8, b[1] - 8))) if b[3] - b[1] < T - 16 else int((b[1] + b[3]) / 2 - T / 2)
        elif rng.random() < 0.7 and len(boxes):
            b = boxes[rng.integers(len(boxes))]
            cx = rng.uniform(b[2] - T + 8, b[0] - 8) if b[2] - b[0] < T - 16 else (b[0] + b[2]) / 2 - T / 2
            cy = rng.uniform(b[3] - T + 8, b[1] - 8) if b[3] - b[1] < T - 16 else (b[1] + b[3]) / 2 - T / 2
            x0, y0 = int(round(cx)), int(round(cy))
        else:
            x0 = int(rng.integers(-T // 4, max(1, int(w * scale) - 3 * T // 4)))
            y0 = int(rng.integers(-T // 4, max(1, int(h * scale) - 3 * T // 4)))
        # Resize only the needed source window (INTER_AREA as at run time), then place it.
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(int(w * scale), x0 + T), min(int(h * scale), y0 + T)
        tile = np.full((T, T, 3), PAD_VALUE, np.uint8)
        if sx1 > sx0 and sy1 > sy0:
            src = fr.image[
                int(sy0 / scale) : min(h, int(math.ceil(sy1 / scale)) + 1),
                int(sx0 / scale) : min(w, int(math.ceil(sx1 / scale)) + 1),
            ]
            # resize the source window with the exact ratio (as the run-time letterbox does), then
            # cut it to the tile window
            ox, oy = int(sx0 / scale) * scale, int(sy0 / scale) * scale
            rs = resize_for_net(src, (max(1, round(src.shape[1] * scale)), max(1, round(src.shape[0] * scale))))
            dx, dy = int(round(sx0 - ox)), int(round(sy0 - oy))
            patch = rs[dy : dy + (sy1 - sy0), dx : dx + (sx1 - sx0)]
            tile[sy0 - y0 : sy0 - y0 + patch.shape[0], sx0 - x0 : sx0 - x0 + patch.shape[1]] = patch
        shift = np.array([x0, y0, x0, y0], np.float32)
        boxes, extra_ignore = boxes - shift, extra_ignore - shift
        visible = _visible_fraction(boxes, T)
        ignore = np.concatenate([boxes[(visible > 0) & (visible <= 0.6)], extra_ignore[_visible_fraction(extra_ignore, T) > 0]])
        return tile, boxes[visible > 0.6], ignore

    def _synthetic_background(self) -> np.ndarray:
        rng, T = self.rng, self.tile
        kind = rng.integers(4)
        if kind == 0:  # smooth gradient + noise
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            t = np.linspace(0, 1, T, dtype=np.float32)[:, None, None]
            img = (a * (1 - t) + b * t) * np.ones((1, T, 1), np.float32)
            img = img + rng.normal(0, rng.uniform(2, 20), img.shape)
        elif kind == 1:  # grille-like bars and holes
            img = np.full((T, T, 3), rng.integers(0, 120), np.float32)
            period = int(rng.integers(4, 20))
            bright = rng.integers(80, 255)
            for y in range(int(rng.integers(0, period)), T, period):
                img[y : y + period // 2] = bright
            if rng.random() < 0.5:
                img = img.transpose(1, 0, 2).copy()
            img = img + rng.normal(0, 6, img.shape)
        elif kind == 2:  # a stretched patch of another frame (no labelled plate in it: plates are small)
            fr = self.frames[rng.integers(len(self.frames))]
            h, w = fr.image.shape[:2]
            x, y = rng.integers(0, max(1, w - 64)), rng.integers(0, max(1, h - 64))
            img = cv2.resize(fr.image[y : y + 64, x : x + 64], (T, T), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            fb = fr.boxes
            if len(fb) and np.any((fb[:, 0] < x + 64) & (fb[:, 2] > x) & (fb[:, 1] < y + 64) & (fb[:, 3] > y)):
                img = cv2.GaussianBlur(img, (0, 0), 6)
        else:  # random rectangles and lines: car-body-ish clutter
            img = np.full((T, T, 3), rng.integers(0, 256, 3), np.float32)
            for _ in range(int(rng.integers(3, 12))):
                p1, p2 = rng.integers(0, T, 2), rng.integers(0, T, 2)
                color = tuple(int(c) for c in rng.integers(0, 256, 3))
                if rng.random() < 0.5:
                    cv2.rectangle(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), color, -1)
                else:
                    cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), color, int(rng.integers(1, 6)))
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2))
        return np.clip(img, 0, 255).astype(np.uint8)

    # -- pasted things ------------------------------------------------------------------------
    def _place_quad(self, aspect: float, occupied: list, small_bias: bool) -> np.ndarray | None:
        """A random plate-like quad inside the tile, not overlapping earlier objects."""
        rng, T = self.rng, self.tile
        for _ in range(10):
            if small_bias:  # log-uniform 16..230 px: most real plates are 25-60 px at run time,
                # close-ups reach ~220 px (a plate filling a quarter of the frame width)
                w = math.exp(rng.uniform(math.log(16), math.log(230)))
            else:
                w = math.exp(rng.uniform(math.log(14), math.log(200)))
            h = w / aspect * rng.uniform(0.85, 1.15)
            if h > T * 0.8 or w > T * 0.9:
                continue
            cx, cy = rng.uniform(w / 2, T - w / 2), rng.uniform(h / 2, T - h / 2)
            quad = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float32)
            # yaw: one side shorter; then roll; then small corner jitter
            if rng.random() < 0.6:
                k = rng.uniform(0.75, 1.0)
                side = [1, 2] if rng.random() < 0.5 else [0, 3]
                quad[side, 1] *= k
                quad[:, 0] *= rng.uniform(0.8, 1.0)
            if rng.random() < 0.3:  # pitch: top or bottom edge shorter
                k = rng.uniform(0.85, 1.0)
                edge = [0, 1] if rng.random() < 0.5 else [2, 3]
                quad[edge, 0] *= k
            ang = math.radians(float(np.clip(rng.normal(0, 5), -15, 15)))
            rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], np.float32)
            quad = quad @ rot.T + rng.normal(0, 0.02 * w, (4, 2)).astype(np.float32)
            quad += np.array([cx, cy], np.float32)
            box = box_2to1(quad)
            if any(_iou1(box, o) > 0.0 for o in occupied):
                continue
            return quad
        return None

    def _plate_look(self, plate: np.ndarray) -> np.ndarray:
        """A plate image with random surround (plate frame/bumper margin), colour and lighting."""
        rng = self.rng
        img = plate.astype(np.float32)
        if rng.random() < 0.3:  # dim plate frame around it (a holder), as many real plates have
            m = int(max(1, round(img.shape[0] * rng.uniform(0.02, 0.08))))
            img = cv2.copyMakeBorder(img, m, m, m, m, cv2.BORDER_CONSTANT, value=[float(rng.uniform(0, 80))] * 3)
        gain = rng.uniform(0.45, 1.15)
        img = img * gain * rng.uniform(0.9, 1.1, 3) + rng.uniform(-20, 20)
        if rng.random() < 0.3:  # a shadow band
            y = int(rng.integers(0, img.shape[0]))
            img[:y] *= rng.uniform(0.4, 0.8)
        return np.clip(img, 0, 255).astype(np.uint8)

    def _distractor(self) -> np.ndarray:
        """Something pasted like a plate that is not one: text line, sign, frame patch."""
        rng = self.rng
        kind = rng.integers(3)
        if kind == 0:  # single text line, long (not plate-shaped)
            n = int(rng.integers(6, 16))
            text = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -.:/"), n))
            return _text_patch(text, rng, lines=1)
        if kind == 1:  # sign / sticker: several lines of small text, any aspect
            lines = int(rng.integers(2, 5))
            text = " ".join(
                "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), int(rng.integers(3, 10))))
                for _ in range(lines)
            )
            return _text_patch(text, rng, lines=lines)
        fr = self.frames[rng.integers(len(self.frames))]  # piece of another frame away from its plate
        h, w = fr.image.shape[:2]
        for _ in range(5):
            pw = int(rng.integers(32, max(33, w // 4)))
            ph = int(max(8, pw / rng.uniform(0.5, 4)))
            x, y = int(rng.integers(0, max(1, w - pw))), int(rng.integers(0, max(1, h - ph)))
            b = np.array([x, y, x + pw, y + ph], np.float32)
            if all(_iou1(b, o) == 0 for o in fr.boxes):
                return fr.image[y : y + ph, x : x + pw].copy()
        return _text_patch("SLOW", rng, lines=1)

    def _photometric(self, img: np.ndarray) -> np.ndarray:
        rng = self.rng
        out = img.astype(np.float32)
        if rng.random() < 0.8:
            out = out * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
        if rng.random() < 0.3:
            gamma = rng.uniform(0.6, 1.6)
            out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
        if rng.random() < 0.3:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.3))
        if rng.random() < 0.4:
            out = out + rng.normal(0, rng.uniform(1, 8), out.shape)
        if rng.random() < 0.1:
            g = out.mean(axis=2, keepdims=True)
            out = np.repeat(g, 3, axis=2)
        out = np.clip(out, 0, 255).astype(np.uint8)
        if rng.random() < 0.3:
            ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
            if ok:
                out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        return out


# -- small helpers ------------------------------------------------------------------------------
def _box_corners(b: np.ndarray) -> np.ndarray:
    return np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32)


def _iou1(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _visible_fraction(boxes: np.ndarray, size: int) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros((0,), np.float32)
    cl = np.clip(boxes, 0, size)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    vis = np.clip(cl[:, 2] - cl[:, 0], 0, None) * np.clip(cl[:, 3] - cl[:, 1], 0, None)
    return vis / np.maximum(area, 1e-6)


def _paste(tile: np.ndarray, patch: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> None:
    """Warp `patch` onto `quad` of `tile` in place, downscaling first with INTER_AREA (no aliasing)."""
    ph, pw = patch.shape[:2]
    target_w = float(np.linalg.norm(quad[1] - quad[0]))
    if target_w * 2 < pw:
        f = max(target_w * 2 / pw, 2.0 / min(ph, pw))
        patch = cv2.resize(patch, (max(2, round(pw * f)), max(2, round(ph * f))), interpolation=cv2.INTER_AREA)
        ph, pw = patch.shape[:2]
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
    T = tile.shape[0]
    warped = cv2.warpPerspective(patch, m, (tile.shape[1], T), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (tile.shape[1], T), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        mask = cv2.GaussianBlur(mask, (0, 0), 0.7)
    if rng.random() < 0.4:  # the camera's blur applies to the plate too
        warped = cv2.GaussianBlur(warped, (0, 0), rng.uniform(0.3, 1.0))
    a = mask[..., None]
    tile[:] = (tile.astype(np.float32) * (1 - a) + warped.astype(np.float32) * a).astype(np.uint8)


def _text_patch(text: str, rng: np.random.Generator, lines: int) -> np.ndarray:
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX]))
    words = text.split(" ") if lines > 1 else [text]
    rows = [" ".join(words[i::lines]) for i in range(lines)] if lines > 1 else words
    scale, thick = 1.2, int(rng.integers(1, 4))
    sizes = [cv2.getTextSize(r or " ", font, scale, thick)[0] for r in rows]
    w = max(s[0] for s in sizes) + 16
    lh = max(s[1] for s in sizes) + 12
    bg = rng.integers(0, 256, 3)
    fg = (255 - bg + rng.integers(-60, 60, 3)) % 256
    img = np.full((lh * len(rows) + 8, w, 3), bg, np.uint8)
    for i, r in enumerate(rows):
        cv2.putText(img, r, (8, lh * (i + 1)), font, scale, tuple(int(c) for c in fg), thick, cv2.LINE_AA)
    return img


def _timestamp(img: np.ndarray, rng: np.random.Generator) -> None:
    """A camera date/time overlay (one or two lines), a common text false alarm in real frames."""
    date = f"20{rng.integers(10, 27)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    clock = f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    lines = [f"{date} {clock}"] if rng.random() < 0.5 else [date, clock]
    scale = rng.uniform(0.3, 0.8)
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX]))
    x, y = int(rng.integers(0, img.shape[1] // 2)), int(rng.integers(12, img.shape[0]))
    step = int(30 * scale) + 4
    for i, text in enumerate(lines):
        org = (x, y + i * step)
        cv2.putText(img, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, org, font, scale, (255, 255, 255), 1, cv2.LINE_AA)
