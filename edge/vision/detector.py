"""Plate detector stage on onnxruntime: letterbox, one network pass, numpy decoding and NMS.

The network (trained by `edge.training.detector`) is a small CenterNet-style fully convolutional
net. For a letterboxed frame it outputs, on a grid of stride `stride`:

- `heat` (1, 1, H/s, W/s): probability that a plate centre lies in that cell;
- `reg` (1, 12, H/s, W/s): centre offset inside the cell (dx, dy, in cells), log box size
  (log(w/s), log(h/s)) and the 4 plate corners relative to the centre, in units of the box width
  (x0 y0 x1 y1 x2 y2 x3 y3; top-left, top-right, bottom-right, bottom-left).

Input size, stride and channel order are stored in the ONNX metadata (`metadata_props`), so a
retrained model with another input size needs no code change here.

Boxes follow the labels' convention: a 2:1 (width:height) box around the whole plate, centred on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge.vision.base import MAX_BOX_COORDINATE, Detections, Detector, box_iou

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "detector.onnx"

PAD_VALUE = 114  # letterbox fill; training pads tiles that run past the frame with the same grey
REG_CHANNELS = 12


@dataclass(frozen=True)
class Letterbox:
    """Where a frame went inside the network input: x_net = x_frame * scale (top-left aligned)."""

    scale: float
    width: int  # resized frame size inside the canvas
    height: int


def resize_for_net(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to `size` = (width, height) the way the detector was trained to see frames.

    Large downscales (1080p -> 768 wide is 2.5x) first halve the image with exact 2x2 averaging
    (INTER_AREA's fast integer path; an odd last row/column is dropped), then one bilinear resize of
    at most 2x: anti-aliased like INTER_AREA at any ratio but ~10x cheaper on one core.
    Training tiles use this same function.
    """
    w, h = int(size[0]), int(size[1])
    img = image
    while img.shape[1] > 2 * w and img.shape[0] > 2 * h:
        hh, ww = img.shape[0] // 2, img.shape[1] // 2
        img = cv2.resize(img[: 2 * hh, : 2 * ww], (ww, hh), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def letterbox(frame: np.ndarray, size: tuple[int, int], pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize `frame` (HxWx3 uint8) to fit `size` = (width, height), keeping its aspect ratio.

    The frame goes to the top-left corner and the rest is filled with `pad_value`, so the mapping
    back to frame pixels is a single division. Resized by `resize_for_net`, as the training tiles.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
        raise ValueError(f"frame must be a non-empty HxWx3 uint8 (BGR) image, got shape {frame.shape} dtype {frame.dtype}")
    in_w, in_h = size
    h, w = frame.shape[:2]
    scale = min(in_w / w, in_h / h)
    nw, nh = max(1, min(in_w, round(w * scale))), max(1, min(in_h, round(h * scale)))
    resized = resize_for_net(frame, (nw, nh))
    canvas = np.full((in_h, in_w, 3), pad_value, np.uint8)
    canvas[:nh, :nw] = resized
    return canvas, Letterbox(scale, nw, nh)


def local_peaks(heat: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of cells above `threshold` that are the maximum of their 3x3 neighbourhood."""
    padded = np.pad(heat, 1, mode="constant", constant_values=-1.0)
    h, w = heat.shape
    neighbourhood = np.max(
        np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]), axis=0
    )
    return np.nonzero((heat >= threshold) & (heat >= neighbourhood))


def decode(
    heat: np.ndarray, reg: np.ndarray, stride: int, threshold: float, max_candidates: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn one image's output maps into (boxes (N,4), scores (N,), corners (N,4,2)) in network pixels.

    heat: (H, W) probabilities; reg: (12, H, W). Boxes are made exactly 2:1 around the predicted
    centre (width = geometric mean of the predicted width and twice the predicted height).
    """
    if heat.ndim != 2 or reg.shape != (REG_CHANNELS, *heat.shape):
        raise ValueError(f"heat must be (H, W) and reg (12, H, W), got {heat.shape} and {reg.shape}")
    rows, cols = local_peaks(heat, threshold)
    scores = heat[rows, cols]
    if scores.size > max_candidates:
        keep = np.argpartition(-scores, max_candidates)[:max_candidates]
        rows, cols, scores = rows[keep], cols[keep], scores[keep]
    r = reg[:, rows, cols]  # (12, N)
    # A faulty model's NaN, infinite or huge outputs give NaN or infinite boxes here (inf - inf, a
    # float32 overflow): expected, and dropped and counted by the caller (OnnxPlateDetector), so not
    # reported by numpy as well (a RuntimeWarning per frame in the user's log)
    with np.errstate(over="ignore", invalid="ignore"):
        cx = (cols + r[0]) * stride
        cy = (rows + r[1]) * stride
        log_w = np.clip(r[2], -4.0, 8.0)
        log_h = np.clip(r[3], -4.0, 8.0)
        w = np.sqrt(np.exp(log_w) * 2.0 * np.exp(log_h)) * stride
        h = w / 2.0
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
        corners = (np.stack([cx, cy], axis=1)[:, None, :] + r[4:12].T.reshape(-1, 4, 2) * w[:, None, None]).astype(
            np.float32
        )
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order].astype(np.float32), corners[order]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first.

    The IoU matrix is computed once (N is at most ~100 candidates), then suppression walks it.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = box_iou(boxes[order], boxes[order])
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, np.int64)


class OnnxPlateDetector(Detector):
    """Finds plates with the project's ONNX detector (models/detector.onnx by default).

    threshold: minimum heatmap score of a detection. nms_iou: boxes overlapping a better one by
    more than this are dropped. threads: onnxruntime intra-op threads (1 = the edge budget).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        threshold: float | None = None,
        nms_iou: float = 0.3,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"detector model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.input_size = (int(meta["input_width"]), int(meta["input_height"]))
            self.stride = int(meta["stride"])
        except KeyError as err:
            raise ValueError(f"{path}: ONNX metadata lacks {err.args[0]!r} (not an alpr-edge detector?)") from None
        except ValueError:
            raise ValueError(f"{path}: ONNX metadata input_width, input_height and stride must be integers, got "
                             f"{meta['input_width']!r}, {meta['input_height']!r}, {meta['stride']!r}") from None
        self._check_signature(path)
        self.channel_order = meta.get("channel_order", "BGR")
        self.threshold = float(threshold if threshold is not None else meta.get("threshold", 0.3))
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        self.nms_iou = float(nms_iou)
        self.input_name = self.session.get_inputs()[0].name
        self.model_path = path
        # Detections with a NaN or infinite box or score (a model's overflow, a broken export) are
        # dropped, the first logged, all counted here: the other plates of the frame still count.
        self.non_finite_boxes = 0

    def _check_signature(self, path: Path) -> None:
        """The graph's input and outputs agree with the metadata: a model that does not is refused
        here, naming the file, rather than by the first frame."""
        (w, h), s = self.input_size, self.stride
        if min(w, h, s) < 1:
            raise ValueError(f"{path}: ONNX metadata: input {w}x{h} and stride {s} must be positive")
        inp = self.session.get_inputs()[0]
        # the batch: 1, any number (a name), or a fixed N (a user's export): run N frames a call
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or any(
                isinstance(got, int) and got != want for got, want in zip(inp.shape[1:], (h, w, 3))) or (
                isinstance(inp.shape[0], int) and inp.shape[0] < 1):
            raise ValueError(f"{path}: input {inp.name!r} is {inp.type} {inp.shape}; the metadata asks for "
                             f"uint8 (N, {h}, {w}, 3) (NHWC)")
        batch = inp.shape[0]
        self.fixed_batch: int | None = batch if isinstance(batch, int) else None
        outs = self.session.get_outputs()
        grid = ({h // s, -(-h // s)}, {w // s, -(-w // s)})  # the input over the stride, floor or ceiling
        if len(outs) < 2 or any(
                len(o.shape) != 4 or (isinstance(o.shape[1], int) and o.shape[1] != c)
                or (self.fixed_batch is not None and isinstance(o.shape[0], int) and o.shape[0] != self.fixed_batch)
                or any(isinstance(g, int) and g not in ok for g, ok in zip(o.shape[2:], grid))
                for o, c in zip(outs, (1, REG_CHANNELS))):
            # the batch the input takes: its fixed N, else any ("N"), not always the shipped model's 1
            b = self.fixed_batch if self.fixed_batch is not None else "N"
            gh, gw = (f"{h // s}" if h % s == 0 else f"{h}/{s}"), (f"{w // s}" if w % s == 0 else f"{w}/{s}")
            raise ValueError(f"{path}: outputs {[(o.name, o.shape) for o in outs[:2]]}; expected the heatmap "
                             f"({b}, 1, {gh}, {gw}) then the regression maps ({b}, {REG_CHANNELS}, {gh}, {gw}) "
                             f"(input {inp.name!r} {inp.shape}; metadata: input {w}x{h}, stride {s})")

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        n = self.fixed_batch
        if n is None or n == 1:
            return [self._predict_one(f) for f in frames]
        # A model exported with a fixed batch of N > 1 takes exactly N frames per call: chunks of N,
        # the last one padded with blank canvases whose outputs are dropped.
        out: list[Detections] = []
        frames = list(frames)
        for start in range(0, len(frames), n):
            chunk = frames[start : start + n]
            boxed = [letterbox(f, self.input_size) for f in chunk]
            canvases = [self._channels(c) for c, _ in boxed]
            blank = np.full_like(canvases[0], PAD_VALUE)
            batch = np.stack(canvases + [blank] * (n - len(chunk)))
            heat, reg = self.session.run(None, {self.input_name: batch})
            out += [self._decode(heat[i, 0], reg[i], lb, f) for i, (f, (_, lb)) in enumerate(zip(chunk, boxed))]
        return out

    def _channels(self, canvas: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(canvas[:, :, ::-1] if self.channel_order == "RGB" else canvas)

    def _predict_one(self, frame: np.ndarray) -> Detections:
        canvas, lb = letterbox(frame, self.input_size)
        heat, reg = self.session.run(None, {self.input_name: self._channels(canvas)[None]})
        return self._decode(heat[0, 0], reg[0], lb, frame)

    def _decode(self, heat: np.ndarray, reg: np.ndarray, lb: Letterbox, frame: np.ndarray) -> Detections:
        boxes, scores, corners = decode(heat, reg, self.stride, self.threshold)
        # In frame pixels before the check: a huge but finite box can overflow float32 there (a
        # 1080p frame is 2.5x the network's input), and an infinite box then reached the tracker
        with np.errstate(over="ignore", invalid="ignore"):
            frame_boxes, frame_corners = boxes / lb.scale, corners / lb.scale
        finite = (np.abs(frame_boxes) <= MAX_BOX_COORDINATE).all(axis=1) & np.isfinite(scores)  # NaN: False
        if not finite.all():
            # NMS and the tracker cannot place a NaN box (its IoU with anything is 0) and the read
            # event refuses one: dropped here, so the frame's other plates are still read
            dropped = int((~finite).sum())
            if not self.non_finite_boxes:
                log.warning("%s: the model gave %d detection(s) with a NaN or infinite box (or one beyond 1e18 px) "
                            "in a frame; dropped (each one counted, not logged again)", self.model_path, dropped)
            self.non_finite_boxes += dropped
            boxes, scores = boxes[finite], scores[finite]
            frame_boxes, frame_corners = frame_boxes[finite], frame_corners[finite]
        if len(boxes) == 0:
            return Detections.empty()
        # corners alone not finite: the plate's box is all that is known of it
        bad = ~np.isfinite(frame_corners).all(axis=(1, 2))
        if bad.any():
            b = frame_boxes[bad]
            frame_corners[bad] = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)
        keep = nms(boxes, scores, self.nms_iou)  # in network pixels, as trained and tuned
        boxes, scores, corners = frame_boxes[keep], scores[keep], frame_corners[keep]
        h, w = frame.shape[:2]
        # Plates cut by the frame edge keep their 2:1 box; clip only the corners used for cropping.
        corners[..., 0] = np.clip(corners[..., 0], 0, w - 1)
        corners[..., 1] = np.clip(corners[..., 1], 0, h - 1)
        return Detections(boxes.astype(np.float32), scores.astype(np.float32), corners.astype(np.float32))
