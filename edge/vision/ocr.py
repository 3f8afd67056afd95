"""The OCR stage: reads plate crops with the project's ONNX recognizer (onnxruntime only).

Pre-processing, CTC decoding and confidences are numpy over the whole batch. The model carries
its own input size, alphabet and state list in the ONNX metadata, so a retrained model with a
different input or alphabet needs no code change here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.vision.base import PlateOCR, PlateTexts
from edge.vision.vote import edit_distance

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL = MODELS_DIR / "ocr.onnx"
# What the node reads with by default: the crop recognizer, and the camera recognizer's second
# opinion on small plates (EnsemblePlateOCR; why and the figures: models/ocr-camera.md).
DEFAULT_MODELS = (DEFAULT_MODEL, MODELS_DIR / "ocr-camera.onnx")


def model_paths(value) -> tuple[Path, ...]:
    """One ONNX path, a comma-separated string of paths, or a sequence of them -> a tuple of paths.
    None -> DEFAULT_MODELS. Used by every --ocr-model flag and the node config."""
    if value is None:
        return DEFAULT_MODELS
    items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, os.PathLike) else list(value)
    paths = tuple(Path(str(v).strip()) for v in items if str(v).strip())
    if not paths:
        raise ValueError("no OCR model named")
    return paths


class OcrConfig(BaseModel):
    """How the OCR stage runs."""

    model_config = ConfigDict(extra="forbid")

    # (a missing file is a FileNotFoundError naming it, raised by OnnxPlateOCR before this validates)
    model_path: Path = Field(default=DEFAULT_MODEL, description="ONNX recognizer (metadata holds its input spec)")
    intra_op_threads: int = Field(default=1, ge=0, description="onnxruntime threads per call; 0 lets it choose")
    max_batch: int = Field(default=64, ge=1, description="crops per onnxruntime call")


def preprocess(crops: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """BGR (or gray) uint8 crops of any size -> (N, 1, height, width) float32, standardized per crop.

    Per-crop standardization (zero mean, unit spread) takes out exposure and plate colour, which
    vary far more between real plates than anything the characters' shapes depend on.
    """
    n = len(crops)
    small = np.empty((n, height, width), np.uint8)
    big = np.empty((2 * height, 2 * width), np.uint8)  # reused: OpenCV writes into it, no allocation
    for i, crop in enumerate(crops):
        if not isinstance(crop, np.ndarray) or crop.ndim not in (2, 3) or crop.size == 0:
            shape = getattr(crop, "shape", None)
            raise ValueError(f"crops[{i}]: expected a non-empty HxW or HxWx3 uint8 image, got shape {shape}")
        if crop.dtype != np.uint8:  # before any OpenCV call, which refuses some dtypes in its own words
            raise ValueError(f"crops[{i}]: expected uint8 pixels, got {crop.dtype}")
        if crop.ndim == 3:
            if crop.shape[2] == 3:
                crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
            elif crop.shape[2] == 1:
                crop = crop[:, :, 0]
            else:
                raise ValueError(f"crops[{i}]: expected 1 or 3 channels, got {crop.shape[2]}")
        # Linear to twice the input size, then an exact 2x2 average: close to one area resize of
        # the whole crop at a third of its cost, and the identity path for training images,
        # which are augmented at twice the input size.
        if crop.shape[0] != 2 * height or crop.shape[1] != 2 * width:
            crop = cv2.resize(crop, (2 * width, 2 * height), dst=big, interpolation=cv2.INTER_LINEAR)
        cv2.resize(crop, (width, height), dst=small[i], interpolation=cv2.INTER_AREA)
    # One float conversion and standardization for the whole batch (a uint8 -> float copy per crop
    # cost as much as its resize); mean and spread from exact integer sums (255^2 fits in uint16).
    u = small.reshape(n, -1)
    k = u.shape[1]
    s1 = u.sum(axis=1, dtype=np.int64).astype(np.float64)
    sq = u.astype(np.uint16)
    np.multiply(sq, sq, out=sq)
    s2 = sq.sum(axis=1, dtype=np.int64).astype(np.float64)
    mean = s1 / k
    std = np.sqrt(np.maximum(s2 / k - mean * mean, 0.0))
    scale = (1.0 / np.maximum(std, 8.0)).astype(np.float32)  # a flat grey crop stays flat, its noise unblown
    out = u.astype(np.float32)
    out -= mean.astype(np.float32)[:, None]
    out *= scale[:, None]
    return out.reshape(n, 1, height, width)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ctc_greedy_decode(
    logits: np.ndarray, alphabet: str, blank: int = 0
) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """Best-path CTC decoding of (N, T, C) scores.

    A character is emitted at each frame whose best class is not blank and differs from the
    previous frame's best class. Its confidence is the softmax probability at that frame; the
    plate's confidence is the product of its characters' (0 for an empty read).
    Returns (texts, plate_confidence (N,), per-character confidences).
    """
    if logits.ndim != 3:
        raise ValueError(f"logits: expected (N, T, C), got shape {logits.shape}")
    if logits.shape[2] != len(alphabet) + 1:
        raise ValueError(f"logits: {logits.shape[2]} classes but the alphabet has {len(alphabet)} + blank")
    x = logits.astype(np.float32, copy=False)
    best = x.argmax(axis=2)  # N, T (the best score is the best probability)
    top = np.take_along_axis(x, best[:, :, None], axis=2)
    # softmax probability of the best class: exp(0) / sum(exp(x - best)), without the full softmax
    best_p = 1.0 / np.exp(x - top).sum(axis=2)
    n, t = best.shape
    prev = np.concatenate([np.full((n, 1), blank, best.dtype), best[:, :-1]], axis=1)
    emit = (best != blank) & (best != prev)
    table = list(alphabet)
    table.insert(blank, "\0")
    if alphabet.isascii():  # one bytes buffer for the batch, cut per plate: no per-character Python
        codes = np.frombuffer("".join(table).encode("ascii"), np.uint8)[best]
        codes[~emit] = 0
        flat = codes.tobytes()
        texts = [flat[i * t : (i + 1) * t].replace(b"\0", b"").decode("ascii") for i in range(n)]
    else:
        chars = np.array(table)[best]
        texts = ["".join(chars[i][emit[i]]) for i in range(n)]
    char_conf = np.split(best_p[emit].astype(np.float32), np.cumsum(emit.sum(axis=1))[:-1]) if n else []
    # log-sum for the product: many characters at 0.9x underflow nothing, but keep it exact anyway
    logp = np.where(emit, np.log(np.maximum(best_p, 1e-30)), 0.0).sum(axis=1)
    conf = np.where(emit.any(axis=1), np.exp(logp), 0.0).astype(np.float32)
    return texts, conf, char_conf


def _int_entry(meta: dict, key: str, where, default: str | None = None) -> int:
    try:
        return int(meta[key] if default is None else meta.get(key, default))
    except ValueError:
        raise ValueError(f"{where}: ONNX metadata {key!r} must be an integer, got {meta[key]!r}") from None


class OnnxPlateOCR(PlateOCR):
    """Plate crops -> texts with per-character and per-plate confidence (and a state guess when
    the model has a state head).

    Pre-processing uses OpenCV, whose own thread pool is process-wide: a node that wants the OCR
    on one core calls cv2.setNumThreads(1) itself (the OCR bench does)."""

    def __init__(self, model_path: str | os.PathLike | None = None, intra_op_threads: int = 1, max_batch: int = 64):
        import onnxruntime as ort

        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not path.is_file():  # said plainly here, not as the config model's validation report
            raise FileNotFoundError(f"OCR model not found: {path}")
        self.config = OcrConfig(
            model_path=path,
            intra_op_threads=intra_op_threads,
            max_batch=max_batch,
        )
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.config.intra_op_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.config.model_path), so, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        where = self.config.model_path
        for key in ("alphabet", "input_height", "input_width"):
            if key not in meta:
                raise ValueError(f"{where}: ONNX metadata lacks a valid {key!r} entry (not an alpr-edge recognizer?)")
        self.alphabet = meta["alphabet"]
        self.height = _int_entry(meta, "input_height", where)
        self.width = _int_entry(meta, "input_width", where)
        self.blank = _int_entry(meta, "blank", where, "0")
        try:
            self.states: list[str] = json.loads(meta.get("states", "[]"))
            if not isinstance(self.states, list) or not all(isinstance(v, str) for v in self.states):
                raise ValueError("not a list of strings")
        except ValueError as err:
            raise ValueError(f"{where}: ONNX metadata 'states' must be a JSON list of state codes: {err}") from None
        self.version = meta.get("version", "unknown")
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._check_signature(where)
        # A model exported with a fixed batch dimension (often 1) takes exactly that many crops per
        # call: predict() then runs in chunks of that size, the last one padded. None: any number.
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        # crops whose scores came out NaN or infinite (a model's overflow): read as nothing, the
        # first logged, all counted here (a NaN confidence made its whole pass's vote NaN)
        self.non_finite_reads = 0

    def _check_signature(self, where) -> None:
        """The graph's input and outputs agree with the metadata: a model that does not is refused
        here, naming the file, rather than by the first plate it would read."""
        if not 0 <= self.blank <= len(self.alphabet) or not self.alphabet or min(self.height, self.width) < 1:
            raise ValueError(f"{where}: ONNX metadata: an empty alphabet, a blank index outside it, "
                             f"or an input size under 1 ({self.height}x{self.width})")
        inp = self.session.get_inputs()[0]
        want = (None, 1, self.height, self.width)  # N, gray channel, height, width
        if inp.type != "tensor(float)" or len(inp.shape) != 4 or any(
                isinstance(got, int) and w is not None and got != w for got, w in zip(inp.shape, want)):
            raise ValueError(f"{where}: input {inp.name!r} is {inp.type} {inp.shape}; the metadata asks for "
                             f"float (N, 1, {self.height}, {self.width})")
        outs = {o.name: o for o in self.session.get_outputs()}
        if "logits" not in outs:
            raise ValueError(f"{where}: no output named 'logits' (outputs: {', '.join(outs)})")
        shape = outs["logits"].shape
        if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != len(self.alphabet) + 1):
            raise ValueError(f"{where}: output 'logits' is {shape}; expected (N, T, {len(self.alphabet) + 1}): "
                             f"the {len(self.alphabet)} characters of the metadata's alphabet and the blank")

    def _run(self, batch: np.ndarray):
        n = len(batch)
        if self.fixed_batch is not None and n < self.fixed_batch:  # pad a short last chunk, drop its outputs
            batch = np.concatenate([batch, np.zeros((self.fixed_batch - n, *batch.shape[1:]), batch.dtype)])
        outs = self.session.run(None, {self.input_name: batch})
        named = dict(zip(self.output_names, outs))
        state = named.get("state_logits")
        return named["logits"][:n], None if state is None else state[:n]

    def predict(self, crops: Sequence[np.ndarray]) -> PlateTexts:
        crops = list(crops)
        if not crops:
            return PlateTexts([], np.zeros((0,), np.float32), [], [], np.zeros((0,), np.float32))
        texts: list[str] = []
        confs, char_confs, regions, region_confs = [], [], [], []
        step = self.fixed_batch or self.config.max_batch
        for start in range(0, len(crops), step):
            x = preprocess(crops[start : start + step], self.height, self.width)
            logits, state_logits = self._run(x)
            bad = ~np.isfinite(logits).all(axis=(1, 2))
            if state_logits is not None:
                bad |= ~np.isfinite(state_logits).all(axis=1)
            if bad.any():
                logits, state_logits = self._unread(logits, state_logits, bad)
            t, c, cc = ctc_greedy_decode(logits, self.alphabet, self.blank)
            texts += t
            confs.append(c)
            char_confs += cc
            if state_logits is not None and self.states:
                sp = softmax(state_logits.astype(np.float32), axis=1)
                k = sp.argmax(axis=1)
                regions += [None if b else self.states[i].upper() for i, b in zip(k, bad)]
                region_confs.append(np.where(bad, 0.0, sp[np.arange(len(k)), k]).astype(np.float32))
        return PlateTexts(
            texts=texts,
            confidence=np.concatenate(confs),
            char_confidence=char_confs,
            region=regions,
            region_confidence=np.concatenate(region_confs) if region_confs else None,
        )


    def _unread(self, logits: np.ndarray, state_logits, bad: np.ndarray):
        """The scores of the crops in `bad` (non-finite) replaced by an all-blank reading: they
        decode to "" with confidence 0, and the other crops of the batch read as before."""
        n = int(bad.sum())
        if not self.non_finite_reads:
            import logging

            logging.getLogger(__name__).warning(
                "%s: the model gave NaN or infinite scores for %d crop(s); read as nothing (each one "
                "counted, not logged again)", self.config.model_path, n)
        self.non_finite_reads += n
        logits = np.array(logits, np.float32)
        logits[bad] = 0.0
        logits[bad, :, self.blank] = 1.0
        if state_logits is not None:
            state_logits = np.array(state_logits, np.float32)
            state_logits[bad] = 0.0
        return logits, state_logits


# Plates up to this many pixels wide in the source image get the camera recognizer's second
# opinion: it was trained on plates shrunk to 40-130 px (edge.training.ocr_data.camera_chain) and
# reads those better than the crop recognizer; on larger ones the crop recognizer reads better
# (validation crops at full size: 78/81 against 74/81), and on lettering that the detector took
# for a plate (a van's "HVAC 555", hundreds of pixels wide) the camera recognizer's confident,
# correct reading of the text became a published read.
SECOND_OPINION_MAX_WIDTH = 130.0


class EnsemblePlateOCR(PlateOCR):
    """Several recognizers read the crops. The first is the primary and reads every crop; the
    others give a second opinion on plates at most `max_width` source pixels wide (their training
    domain; None: every plate). How a second opinion counts:

    - same length as the primary's reading (the two agree on the plate's layout): each character
      comes from the recognizer surer of it (ties: the primary). Recognizers trained differently
      misread different characters of one plate; a per-character choice keeps both right halves
      where a whole-reading choice keeps one recognizer's mistake;
    - another length: it replaces the primary's reading when it is more confident and within
      `max_edits` character edits of it (a dropped or doubled character), never when it reads
      something else entirely.

    The state guess comes from the surest state head.

    Why: the default pair (DEFAULT_MODELS) is the crop recognizer, best on sharp plates, and the
    camera recognizer, trained on plates shrunk, blurred and JPEG-compressed as a distant camera
    delivers them, best on small plates; together they read more real camera frames than either
    (models/ocr.md, models/ocr-camera.md)."""

    uses_plate_widths = True  # predict() takes the plates' source widths (read_plates passes them)

    def __init__(self, members: Sequence[OnnxPlateOCR], max_edits: int = 3,
                 max_width: float | None = SECOND_OPINION_MAX_WIDTH):
        if not members:
            raise ValueError("EnsemblePlateOCR needs at least one recognizer")
        self.members = list(members)
        self.max_edits = max_edits
        self.max_width = max_width
        first = self.members[0]
        # the node warps plate crops to the first member's input size
        self.height, self.width = first.height, first.width
        self.version = "+".join(str(m.version) for m in self.members)

    def predict(self, crops: Sequence[np.ndarray], plate_widths: Sequence[float] | None = None) -> PlateTexts:
        """plate_widths: each plate's width in the source image, in pixels (None: the crops' own
        widths, right for crops cut from a frame at their size, wrong for crops already warped)."""
        crops = list(crops)
        out = self.members[0].predict(crops)
        if not crops or len(self.members) == 1:
            return out
        widths = np.asarray([c.shape[1] for c in crops] if plate_widths is None else plate_widths, np.float32)
        if widths.shape != (len(crops),):
            raise ValueError(f"plate_widths: {len(crops)} values expected, got {widths.shape}")
        asked = np.flatnonzero(widths <= self.max_width) if self.max_width is not None else np.arange(len(crops))
        if not len(asked):
            return out
        texts, conf, chars = list(out.texts), out.confidence.copy(), list(out.char_confidence)
        region = list(out.region) if out.region else [None] * len(crops)
        region_conf = (out.region_confidence.copy() if out.region_confidence is not None
                       else np.zeros(len(crops), np.float32))
        for m in self.members[1:]:
            r = m.predict([crops[i] for i in asked])
            for at, i in enumerate(asked):
                other, other_chars = r.texts[at], np.asarray(r.char_confidence[at], np.float32)
                if texts[i] and len(other) == len(texts[i]):
                    # the same layout: each character from the surer reader (strictly: ties keep the earlier)
                    surer = other_chars > chars[i]
                    if surer.any():
                        texts[i] = "".join(o if s else t for t, o, s in zip(texts[i], other, surer))
                        chars[i] = np.where(surer, other_chars, chars[i]).astype(np.float32)
                        conf[i] = float(np.prod(chars[i]))
                elif r.confidence[at] > conf[i] and edit_distance(other, out.texts[i]) <= self.max_edits:
                    # a surer reading a few edits from the primary's (strictly surer: ties keep the earlier)
                    texts[i], conf[i], chars[i] = other, r.confidence[at], other_chars
                if r.region and r.region_confidence is not None and r.region_confidence[at] > region_conf[i]:
                    region[i], region_conf[i] = r.region[at], r.region_confidence[at]
        has_region = any(g is not None for g in region)
        return PlateTexts(texts, conf, chars, region if has_region else [], region_conf if has_region else None)


def load_ocr(models=None, intra_op_threads: int = 1, max_batch: int = 64) -> PlateOCR:
    """The OCR stage for one model path, several (comma-separated string or sequence: an
    EnsemblePlateOCR), or None (DEFAULT_MODELS). A missing file is a FileNotFoundError naming it."""
    members = [OnnxPlateOCR(p, intra_op_threads=intra_op_threads, max_batch=max_batch) for p in model_paths(models)]
    return members[0] if len(members) == 1 else EnsemblePlateOCR(members)


def read_plates(ocr: PlateOCR, crops: Sequence[np.ndarray], plate_widths: Sequence[float] | None = None) -> PlateTexts:
    """ocr.predict(crops), telling an OCR that routes by plate size (EnsemblePlateOCR) how wide
    each plate is in the source image."""
    if plate_widths is not None and getattr(ocr, "uses_plate_widths", False):
        return ocr.predict(crops, plate_widths=plate_widths)
    return ocr.predict(crops)
