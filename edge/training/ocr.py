"""Train the plate recognizer (CTC) and export it to ONNX.

    python -m edge.training.ocr --out runs/ocr --export models/ocr.onnx --minutes 60

Data: synthetic plates (edge/synth) and the real development crops of the TRAIN part of the fixed
split (edge/training/splits.py); the validation crops are only evaluated, never trained on. The
first `--synth-only-steps` steps see synthetic plates only; the model at that point is evaluated
on the real validation crops and exported as `<out>/synth_only.onnx` (what synthetic data alone
gives), then real crops are mixed in.

The learning-rate schedule runs on progress = max(step / steps, trained time / minutes), so a run
on a busy machine still anneals fully and exports within its time budget. Checkpoints go to
`<out>/last.pt` every few minutes; `--resume` continues from there (trained time included).
Torch is the `train` extra only; nothing here is imported at run time.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("edge.training.ocr")

DEFAULT_CROPS = Path("../shared/data/openalpr-us/crops")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edge.training.ocr", description=__doc__.split("\n\n")[0])
    p.add_argument("--crops", type=Path, default=DEFAULT_CROPS, help="real crops dir with labels.csv (train split used)")
    p.add_argument("--out", type=Path, default=Path("runs/ocr"), help="checkpoints, log, summary (outside git)")
    p.add_argument("--export", type=Path, default=None, help="write the final ONNX model here (e.g. models/ocr.onnx)")
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget; the run anneals and stops within it")
    p.add_argument("--steps", type=int, default=40000, help="step budget (whichever of steps/minutes ends first)")
    p.add_argument("--synth-only-steps", type=int, default=0, help="first steps on synthetic plates only")
    p.add_argument("--synth-fraction", type=float, default=0.5, help="share of synthetic plates per batch after that (1 = synthetic only)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--state-weight", type=float, default=0.3, help="weight of the state head's loss (0: no state head)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    p.add_argument("--workers", type=int, default=1,
                   help="data processes (augmentation, rendering); 0 = in-process. Worker k of N makes batches "
                        "k, k+N, ... so the steps stay in order; the synthetic pool is split between them")
    p.add_argument("--device", default="cpu",
                   help="torch device of the model (cpu, cuda, cuda:1, or auto: cuda when there is one); the data "
                        "pipeline always runs on the CPU in the --workers processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=float, default=240.0, help="seconds between validation passes")
    p.add_argument("--ckpt-every", type=float, default=180.0, help="seconds between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--synth-pool", type=int, default=3000, help="synthetic plates kept in memory, refreshed while training")
    p.add_argument("--synth-refresh", type=int, default=6, help="new synthetic plates rendered per batch")
    p.add_argument("--channels", default=None,
                   help="5 comma-separated widths of a narrower recognizer (default 16,48,64,96,128); with "
                        "--init MODEL.onnx the start is MODEL pruned to them (its most important channels)")
    p.add_argument("--teacher", type=Path, default=None,
                   help="ONNX recognizer to distil from: its per-column class distributions join the loss")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the distillation term")
    p.add_argument("--kd-temp", type=float, default=2.0, help="softmax temperature of the distillation term")
    p.add_argument("--input-width", type=int, default=144,
                   help="recognizer input width in pixels (height 48); a narrower input is proportionally "
                        "faster, and --init weights carry over (the net is fully convolutional)")
    p.add_argument("--synth-mixed", type=float, default=0.0,
                   help="chance that a synthetic serial's characters ignore the state format (any letter or digit "
                        "in each slot), so context cannot stand in for the glyph")
    p.add_argument("--synth-picture", type=float, default=0.0,
                   help="chance that a synthetic serial gets a picture (tree, flag, logo) between its groups")
    p.add_argument("--serial-fonts", default="plate",
                   help="comma-separated faces synthetic serials are drawn in, one per plate (edge.synth.plates."
                        "SERIAL_FONTS: plate, plate-bebas, plate-din, plate-routed); repeat a name to weight it")
    p.add_argument("--synth-stacked", type=float, default=0.0,
                   help="chance of small stacked side characters on any synthetic plate (left out of the label)")
    p.add_argument("--frames", type=Path, default=None,
                   help="also train on plates cut from the TRAIN part of a real frames folder (labels.csv: file,x,y,w,h,plate)")
    p.add_argument("--frames-detected", type=Path, default=None,
                   help="also train on the TRAIN frames' plates as the edge node crops them (project detector + "
                        "rectifier, the node's framing variants)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm statistics fixed (fine-tuning; required with an --init .onnx)")
    p.add_argument("--invert", type=float, default=0.0,
                   help="chance of inverting a training crop (light-on-dark plates are rare in the data)")
    p.add_argument("--camera-chain", type=float, default=0.0,
                   help="chance that a training crop is shrunk to 40-130 px wide, blurred, noised and JPEG-compressed "
                        "at that size, then scaled back (small plates far from the camera)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from the (EMA) weights of another run's checkpoint, or of an exported .onnx model (with --freeze-bn), with a fresh schedule")
    args = p.parse_args(argv)
    if not 0.0 <= args.synth_fraction <= 1.0:
        p.error("--synth-fraction must be within [0, 1]")
    # refused here, naming the option, not minutes into a run or as a torch traceback
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        p.error(f"--minutes must be a positive number, got {args.minutes}")
    for name in ("steps", "batch", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.workers < 0:
        p.error(f"--workers must be 0 or more, got {args.workers}")
    # each was refused without naming the option (--seed -1: "expected non-negative integer";
    # --synth-refresh -1: "n must be >= 0", after the synthetic pool was rendered), or not at all
    # (--kd-temp 0: a NaN loss, and a model that reads nothing exported as if trained)
    for name in ("seed", "synth_refresh", "synth_only_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    for name in ("lr", "kd_temp"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            p.error(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    for name in ("weight_decay", "kd_weight", "state_weight"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            p.error(f"--{name.replace('_', '-')} must be a number >= 0, got {getattr(args, name)}")
    from edge.synth.plates import check_serial_fonts

    try:
        args.serial_fonts = check_serial_fonts(args.serial_fonts)
    except ValueError as err:
        p.error(f"--serial-fonts: {err}")
    return args


# --------------------------------------------------------------------------------------------
# data


def with_picture(layout: str, rng: np.random.Generator) -> str:
    """`layout` with its first gap turned into a picture, or one put where letters meet digits."""
    for k, ch in enumerate(layout):
        if ch in " -":
            return layout[:k] + "#" + layout[k + 1 :]
    start = 3 if layout.startswith("^") else 0
    cuts = [k for k in range(start + 1, len(layout))
            if layout[k - 1].isalnum() and layout[k].isalnum() and layout[k - 1].isalpha() != layout[k].isalpha()]
    if not cuts:
        return layout
    k = cuts[int(rng.integers(len(cuts)))]
    return layout[:k] + "#" + layout[k:]


# Characters of a mixed synthetic serial: every letter and digit but O and Q. The real labels write
# 0 for a round O-like glyph on most plates (many states print them alike), and Q is rare.
MIXED_CHARS = "ABCDEFGHIJKLMNPRSTUVWXYZ0123456789"


class SynthSource:
    """Synthetic plates from edge/synth, rendered at the augmentation work size.

    stacked: chance that any state's serial gets two small stacked characters in front. The real
    crop labels leave such side characters out (Idaho's "6C" over/under reads "8862"; Vermont's
    vertical "TRK" is not in "19012"), so here the label leaves them out too, whatever the
    renderer's own convention: the model learns to skip them, as the labels it is measured on do.

    picture: chance that a serial's first gap (space or dash) becomes a picture ('#': tree, flag,
    heart, logo, ...), or, on serials without a gap, that one goes in where letters meet digits.
    Real plates print them there (Oregon's tree, Alaska's flag, specialty logos) and they were the
    commonest cause of end-to-end misreads (read as 0/D, or eating the characters beside them).

    mixed: chance that each character of a serial is drawn from all of MIXED_CHARS instead of its
    format slot's class (a digit where the state prints digits, ...), keeping the layout (length,
    gaps, picture). The idea: state formats could let a network with a wide receptive field learn
    "a digit comes after three digits" and read a D there as 0, as some end-to-end misreads looked
    (Oregon's 378DXR read 3780XR). Tried at 0.5 in the fifth session: those misreads stayed and
    rare letters got worse (models/ocr.md), so no shipped model uses it; kept for experiments.
    """

    def __init__(self, work_hw: tuple[int, int], stacked: float = 0.0, picture: float = 0.0, mixed: float = 0.0,
                 serial_fonts: tuple[str, ...] = ("plate",)):
        import dataclasses

        from edge.synth import plates

        self.serial_fonts = plates.check_serial_fonts(serial_fonts)

        original = getattr(plates.random_serial, "original", plates.random_serial)

        def serial_as_labelled(style, rng):
            if stacked > 0 and style.stacked < stacked:
                style = dataclasses.replace(style, stacked=stacked)
            layout, text = original(style, rng)
            if mixed > 0 and rng.random() < mixed:
                head = 3 if layout.startswith("^") else 0
                draw = rng.integers(len(MIXED_CHARS), size=len(layout))
                layout = layout[:head] + "".join(MIXED_CHARS[d] if ch.isalnum() else ch
                                                 for ch, d in zip(layout[head:], draw))
                text = "".join(ch for ch in layout[head:] if ch.isalnum())
            if picture > 0 and "#" not in layout and rng.random() < picture:
                layout = with_picture(layout, rng)
            if layout.startswith("^"):  # '^xy': x over y, drawn small before the serial
                text = "".join(ch for ch in layout[3:] if ch.isalnum())
            return layout, text

        serial_as_labelled.original = original
        plates.random_serial = serial_as_labelled  # this (training) process only
        self._render = plates.render_plates
        self.work_hw = work_hw

    def render(self, n: int, rng: np.random.Generator):
        batch = self._render(n, rng, size=self.work_hw, degrade=True, serial_fonts=self.serial_fonts)
        return list(batch.images), [t.upper() for t in batch.texts], [str(s or "").lower() for s in batch.states]


def batch_stream(args, start_step: int, worker_seed: int, stride: int = 1):
    """Endless (x, targets, target_lengths, state_ids, step) batches: steps start_step, start_step + stride, ..."""
    import cv2

    from edge.training.ocr_data import (WORK_SCALE, augment, camera_chain, encode_texts, load_crops, load_detected_frame_plates,
                                        load_frame_plates)
    from edge.training.ocr_model import ALPHABET, INPUT_HEIGHT, STATES
    from edge.vision.ocr import preprocess

    cv2.setNumThreads(1)
    rng = np.random.default_rng([args.seed, start_step, worker_seed])
    out_hw = (INPUT_HEIGHT, args.input_width)
    work_hw = (INPUT_HEIGHT * WORK_SCALE, args.input_width * WORK_SCALE)
    state_index = {s: i for i, s in enumerate(STATES)}
    real = load_crops(args.crops, "train")
    extra = []
    if args.frames is not None:
        # plates cut from the TRAIN frames by their labelled box (validation frames never)
        extra.append(load_frame_plates(args.frames, "train"))
    if args.frames_detected is not None:
        # the same frames' plates as the edge node crops them (detector + rectifier), validation never
        extra.append(load_detected_frame_plates(args.frames_detected, "train"))
    for fp in extra:
        real.images += fp.images
        real.texts += fp.texts
        real.states += fp.states
        real.files += fp.files
    # Upstream marks a few unreadable/odd plates with a one-character placeholder label ("0" on
    # a "00000" plate): those teach the model nothing right, so they are left out of training.
    keep = [i for i, t in enumerate(real.texts) if len(t) >= 2]
    need_synth = args.synth_fraction > 0 or args.synth_only_steps > 0
    synth = (SynthSource(work_hw, args.synth_stacked, args.synth_picture, args.synth_mixed, args.serial_fonts)
             if need_synth else None)
    pool_imgs, pool_texts = [], []
    if synth is not None:
        t0 = time.perf_counter()
        pool_imgs, pool_texts, _ = synth.render(max(1, -(-args.synth_pool // stride)), rng)
        log.info("rendered %d synthetic plates in %.1fs", len(pool_imgs), time.perf_counter() - t0)
    step = start_step
    while True:
        frac = 1.0 if step < args.synth_only_steps else args.synth_fraction
        n_synth = int(round(args.batch * frac))
        n_real = args.batch - n_synth
        imgs, texts, states = [], [], []
        if n_synth:
            new_imgs, new_texts, _ = synth.render(args.synth_refresh, rng)
            slots = rng.integers(0, len(pool_imgs), len(new_imgs))
            for s, im, t in zip(slots, new_imgs, new_texts):
                pool_imgs[s], pool_texts[s] = im, t
            for k in rng.integers(0, len(pool_imgs), n_synth):
                im = pool_imgs[k]
                # the renderer already degrades; add lighter geometry/photometry on top
                if rng.random() < 0.4:
                    im = augment(im, rng, out_hw, strength=0.5)
                imgs.append(im)
                texts.append(pool_texts[k])
                states.append(-100)  # synthetic state styles are not real ones: no state loss
        for k in rng.choice(keep, n_real):
            imgs.append(augment(real.images[k], rng, out_hw, strength=1.0) if rng.random() < 0.9 else real.images[k])
            texts.append(real.texts[k])
            states.append(state_index.get(real.states[k], -100))
        if args.invert > 0:  # light characters on a dark plate (Indiana, Oregon specials, ...)
            for k in np.flatnonzero(rng.random(len(imgs)) < args.invert):
                imgs[k] = 255 - imgs[k]
        if args.camera_chain > 0:
            for k in np.flatnonzero(rng.random(len(imgs)) < args.camera_chain):
                imgs[k] = camera_chain(imgs[k], rng)
        x = preprocess(imgs, *out_hw)
        targets, lengths = encode_texts(texts, ALPHABET)
        yield x, targets, lengths, np.array(states, np.int64), step
        step += stride


def make_loader(args, start_step: int):
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            if info is None:
                return batch_stream(args, start_step, 0)
            torch.set_num_threads(1)
            # The loader takes one batch from each worker in turn: worker k makes steps
            # start+k, start+k+N, ..., so the stream arrives numbered in order.
            return batch_stream(args, start_step + info.id, info.id + 1, stride=info.num_workers)

    if args.workers < 0:
        raise SystemExit("--workers: 0 or more")
    return torch.utils.data.DataLoader(
        Stream(), batch_size=None, num_workers=args.workers, prefetch_factor=4 if args.workers else None,
        persistent_workers=False, pin_memory=str(args.device).startswith("cuda"),
    )


def pick_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch build sees no CUDA device")
    return torch.device(name)


# --------------------------------------------------------------------------------------------
# evaluation and export


def evaluate(model, images, texts, states=None, batch: int = 128) -> dict:
    """Exact / O-0 / character accuracy of a torch model on BGR crops (no augmentation)."""
    import torch

    from edge.bench.ocr import score_reads
    from edge.training.ocr_model import ALPHABET, STATES
    from edge.vision.ocr import ctc_greedy_decode, preprocess

    was_training = model.training
    model.eval()
    preds, state_preds = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(preprocess(images[i : i + batch], *model.input_hw))
            out = model(x.to(next(model.parameters()).device))
            logits, st = out if isinstance(out, tuple) else (out, None)
            preds += ctc_greedy_decode(logits.cpu().numpy(), ALPHABET)[0]
            if st is not None:
                state_preds += [STATES[k] for k in st.argmax(1).tolist()]
    model.train(was_training)
    res = score_reads(preds, texts)
    if states is not None and state_preds:
        res["state_acc"] = float(np.mean([p == s for p, s in zip(state_preds, states)]))
    res["errors"] = [(t, p) for p, t in zip(preds, texts) if p != t]
    return res


def export_onnx(model, path: Path, extra_meta: dict | None = None) -> str:
    """Export with a dynamic batch axis and the input spec in metadata_props; returns sha256."""
    import hashlib

    import onnx
    import torch

    from edge.training import save_onnx
    from edge.training.ocr_model import ALPHABET, STATES
    from edge.training.onnx_layout import sequence_head_to_4d

    model = copy.deepcopy(model).cpu().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    has_state = model.state_head is not None
    outputs = ["logits", "state_logits"] if has_state else ["logits"]
    height, width = model.input_hw
    dummy = torch.zeros(1, 1, height, width)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact for this net
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, dummy, str(tmp), input_names=["image"], output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in ["image", *outputs]}, opset_version=17, dynamo=False,
        )
    m = onnx.load(str(tmp))
    # 1-D head convolutions as (1, k) 2-D ones: onnxruntime's fast layout then covers the whole net
    sequence_head_to_4d(m)
    meta = {
        "alphabet": ALPHABET,
        "blank": "0",
        "input_height": str(height),
        "input_width": str(width),
        "input": "gray, per-crop standardized (edge.vision.ocr.preprocess)",
        "states": json.dumps(STATES if has_state else []),
        "version": "1",
        **{k: str(v) for k, v in (extra_meta or {}).items()},
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "alpr-edge"
    onnx.checker.check_model(m)
    save_onnx(m, path)  # renamed over the target: an interrupted export leaves the model there as it was
    tmp.unlink(missing_ok=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_onnx_matches(model, path: Path, images) -> float:
    """Max |torch - onnxruntime| logit difference on real inputs (export sanity check)."""
    import torch

    from edge.vision.ocr import OnnxPlateOCR, preprocess

    x = preprocess(images, *model.input_hw)
    with torch.no_grad():
        out = copy.deepcopy(model).cpu().eval()(torch.from_numpy(x))
    ref = (out[0] if isinstance(out, tuple) else out).numpy()
    got = OnnxPlateOCR(path)._run(x)[0]
    return float(np.abs(ref - got).max())


# --------------------------------------------------------------------------------------------
# training


def lr_at(progress: float, base: float, warmup: float = 0.03) -> float:
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    p = (progress - warmup) / (1 - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


class Ema:
    """Exponential moving average of the weights (and BN statistics): steadier than the last step
    on a small real set, and what gets evaluated and exported."""

    def __init__(self, model, decay: float = 0.998):
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        self.warm = False  # a fresh model's average starts short; an initialized one need not
        for p in self.model.parameters():
            p.requires_grad_(False)

    def update(self, model, step: int) -> None:
        import torch

        d = self.decay if self.warm else min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, m in zip(self.model.state_dict().values(), model.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(m.detach(), alpha=1 - d)
                else:
                    e.copy_(m)


def train(args) -> dict:
    import torch
    import torch.nn.functional as F

    from edge.training.ocr_data import load_crops
    from edge.training.ocr_model import STATES, PlateRecognizer, load_onnx_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input shape all run long
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "last.pt"
    channels = tuple(int(v) for v in args.channels.split(",")) if args.channels else None
    model = PlateRecognizer(n_states=len(STATES) if args.state_weight > 0 else 0, channels=channels,
                            input_width=args.input_width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    ema = Ema(model)
    step, trained_s, synth_only_done = 0, 0.0, args.synth_only_steps == 0
    history: list[dict] = []
    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        ema.model.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, trained_s, history = ck["step"], ck["trained_s"], ck.get("history", [])
        synth_only_done = ck.get("synth_only_done", synth_only_done)
        log.info("resumed from %s at step %d (%.1f min trained)", ckpt_path, step, trained_s / 60)
    elif args.resume:
        log.info("--resume: no %s yet, starting fresh", ckpt_path)
    if step == 0 and args.init is not None and str(args.init).endswith(".onnx"):
        # a shipped model whose run's checkpoint is gone (float or int8, BatchNorms folded)
        if not args.freeze_bn:
            raise SystemExit("--init with an .onnx model needs --freeze-bn (its BatchNorms are folded)")
        try:  # a model of these widths (the default, or --channels as the model has them)
            load_onnx_weights(model, args.init)
        except ValueError:
            if not channels:
                raise
            # a wider model: pruned to the --channels widths, then trained (distilled) at those
            from edge.training.ocr_model import prune_recognizer

            big = PlateRecognizer(n_states=model.n_states, input_width=args.input_width)
            load_onnx_weights(big, args.init)
            model.load_state_dict(prune_recognizer(big, channels).state_dict())
        ema.model.load_state_dict(model.state_dict())
        ema.warm = True
        log.info("initialized from %s", args.init)
    elif step == 0 and args.init is not None:
        ck = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["ema"])
        ema.model.load_state_dict(ck["ema"])
        ema.warm = True
        log.info("initialized from %s (step %d of that run)", args.init, ck["step"])

    val = load_crops(args.crops, "val")
    train_set = load_crops(args.crops, "train")

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {"model": model.state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(), "step": step,
             "trained_s": trained_s, "history": history, "synth_only_done": synth_only_done, "args": vars(args)},
            tmp,
        )
        os.replace(tmp, ckpt_path)

    def run_eval(tag: str) -> dict:
        r = evaluate(ema.model, val.images, val.texts, val.states)
        entry = {"tag": tag, "step": step, "minutes": round(trained_s / 60, 2), "val_exact": r["exact"],
                 "val_exact_o0": r["exact_o0"], "val_char_acc": r["char_acc"], "val_state_acc": r.get("state_acc")}
        history.append(entry)
        log.info("eval %s | errors: %s", json.dumps(entry), r["errors"][:12])
        return entry

    teacher = None
    if args.teacher is not None:
        from edge.vision.ocr import OnnxPlateOCR

        teacher = OnnxPlateOCR(args.teacher, intra_op_threads=args.threads, max_batch=args.batch)
        if (teacher.height, teacher.width) != model.input_hw:  # its columns must be the student's
            raise SystemExit(f"--teacher {args.teacher}: input {teacher.height}x{teacher.width}, the student's is "
                             f"{model.input_hw[0]}x{model.input_hw[1]} (--input-width)")
    loader = iter(make_loader(args, step))
    model.train()
    if args.freeze_bn:  # fine-tuning: BatchNorms keep their statistics (affine parts still learn)
        for mod in model.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.eval()
    t_last = time.perf_counter()
    last_ckpt = last_eval = trained_s
    losses: list = []  # loss tensors, read back every 100 steps (no GPU sync per step)
    while True:
        progress = max(step / args.steps, trained_s / (args.minutes * 60))
        if not synth_only_done and step >= args.synth_only_steps:
            # The synthetic-only model: its figure on real crops is what synthetic data alone gives.
            entry = run_eval("synthetic-only")
            export_onnx(ema.model, args.out / "synth_only.onnx", {"trained_on": "synthetic plates only"})
            json.dump(entry, open(args.out / "synth_only.json", "w"), indent=1)
            synth_only_done = True
            save()
        if progress >= 1.0:
            break
        x_cpu, targets, lengths, state_ids, data_step = next(loader)
        has_state = bool((state_ids >= 0).any())  # on the CPU copy: no GPU sync
        assert int(data_step) == step, (int(data_step), step)
        x = x_cpu.to(device, non_blocking=True)
        targets, state_ids = targets.to(device, non_blocking=True), state_ids.to(device, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, args.lr)
        out = model(x)
        logits, state_logits = out if isinstance(out, tuple) else (out, None)
        logp = F.log_softmax(logits, dim=2).permute(1, 0, 2)  # T, N, C
        in_lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
        loss = F.ctc_loss(logp, targets, in_lengths, lengths, blank=0, zero_infinity=True)
        if state_logits is not None and has_state:
            loss = loss + args.state_weight * F.cross_entropy(state_logits, state_ids, ignore_index=-100)
        if teacher is not None:  # match the teacher's per-column distributions (KL, softened)
            t_logits = torch.from_numpy(teacher._run(x_cpu.numpy())[0]).to(device)
            T = args.kd_temp
            p_t = F.softmax(t_logits / T, dim=2)
            kl = (p_t * (F.log_softmax(t_logits / T, dim=2) - F.log_softmax(logits / T, dim=2))).sum(2).mean()
            loss = loss + args.kd_weight * T * T * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        ema.update(model, step)
        losses.append(loss.detach())
        step += 1
        now = time.perf_counter()
        trained_s += now - t_last
        t_last = now
        if step % 100 == 0:
            mean_loss = float(torch.stack(losses).mean())
            losses.clear()
            log.info("step %d  %.1f min  lr %.2e  loss %.3f", step, trained_s / 60, opt.param_groups[0]["lr"], mean_loss)
        if trained_s - last_eval >= args.eval_every:
            run_eval("periodic")
            last_eval = trained_s
            t_last = time.perf_counter()  # evaluation time is not training time
        if trained_s - last_ckpt >= args.ckpt_every:
            save()
            last_ckpt = trained_s

    save()
    final = run_eval("final")
    tr = evaluate(ema.model, train_set.images, train_set.texts, train_set.states)
    summary = {"final_val": final, "train_exact": tr["exact"], "train_exact_o0": tr["exact_o0"],
               "train_char_acc": tr["char_acc"], "train_state_acc": tr.get("state_acc"),
               "val_errors": evaluate(ema.model, val.images, val.texts)["errors"],
               "steps": step, "minutes": trained_s / 60, "args": {k: str(v) for k, v in vars(args).items()},
               "history": history}
    if args.export:
        meta = {"trained_steps": step, "channels": ",".join(map(str, ema.model.channels))}
        if args.teacher is not None:
            meta["distilled_from"] = str(args.teacher)
        sha = export_onnx(ema.model, args.export, meta)
        summary["onnx"] = {"path": str(args.export), "sha256": sha, "bytes": args.export.stat().st_size,
                           "max_abs_logit_diff_vs_torch": check_onnx_matches(ema.model, args.export, val.images)}
    json.dump(summary, open(args.out / "summary.json", "w"), indent=1)
    log.info("done: %s", json.dumps({k: v for k, v in summary.items() if k not in ("history", "args")}))
    return summary


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    args = parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    from edge.training import require_train_extra

    require_train_extra("python -m edge.training.ocr")
    from edge.training import run_main

    sys.exit(run_main("python -m edge.training.ocr", main))
