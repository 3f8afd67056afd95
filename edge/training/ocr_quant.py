"""Post-training int8 quantization of the exported recognizer (onnxruntime's static quantizer).

    python -m edge.training.ocr_quant runs/ocr/ocr.onnx models/ocr.onnx

Activations become uint8, weights int8 with per-channel scales and a 7-bit range (`reduce_range`),
calibrated on the real TRAIN crops (never the validation part). The float model's metadata
(input spec, alphabet, states) is carried over. The script prints how many reads of the float and
int8 models differ on the train and validation crops, and on which CPU, so a quantization that
changes the model's behaviour is seen before it ships.

Why 7-bit weights: on x86 CPUs without VNNI (AVX2 only) onnxruntime's int8 kernels multiply pairs
of 8-bit values into 16-bit sums that can saturate. The model shipped before this choice (u8
activations, u8 weights, full range) read 93.8% of the validation crops exactly on an AVX-512 VNNI
machine and 84.0% on an AVX2-only one. Measured on the AVX2 machine with one float model: u8/u8
and s8/s8 full range changed 4 train and 5 validation reads of 389; u8/s8 and s8/s8 with 7-bit
weights changed 0 and 1 (the s8/s8 kernels were 1.5x slower). With 7-bit weights the VNNI and
AVX2 paths compute the same sums, so the model reads the same on any x86 machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


KEEP_FLOAT = {"none": 0, "stem": 1, "stem+dw": 2}


def float_nodes(model, keep: str) -> list[str]:
    """Conv nodes to leave in float: "stem+dw" (the default: the first conv and the depthwise conv
    after it), "stem" (the first conv only) or "none".

    Why these two: the stem has one input channel and 9 multiply-adds per output, where
    onnxruntime's int8 kernel took 24% of the network's time, four times its float kernel. Left
    alone in float, though, its output (the network's largest: 16 x 24 x 72 per plate) went from
    onnxruntime's blocked layout back to NCHW and was quantized, which took as long as the conv
    itself. The depthwise conv after it runs in float in the blocked layout as well and halves the
    height and width, so the layout change and the quantization act on a quarter of the values
    (network -25% in onnxruntime's profile, 0-9% per plate end to end in alternating bench runs;
    models/ocr.md, version 5). "stem+dw" means the first two convs in graph order, which is that
    pair in this project's recognizer. Convs further in cannot stay
    float: a float conv between int8 layers is fused by onnxruntime's graph optimizer
    (Dequantize -> Conv -> Quantize into an int8 conv whose weights it quantizes itself, per
    tensor, full 8-bit range), neither faster here nor the 7-bit setting that reads the same on
    every CPU (module doc)."""
    if keep not in KEEP_FLOAT:
        raise ValueError(f"keep_float: one of {', '.join(KEEP_FLOAT)}; got {keep!r}")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    return [c.name for c in convs[: KEEP_FLOAT[keep]]]


def quantize(src: Path, dst: Path, crops: Path, n_calib: int = 256, seed: int = 0, keep_float: str = "stem+dw",
             version: str | None = None) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge.bench.report import cpu_int8_path
    from edge.training import save_onnx
    from edge.training.ocr_data import augment, load_crops
    from edge.vision.ocr import OnnxPlateOCR, preprocess

    fp = OnnxPlateOCR(src)
    train = load_crops(crops, "train")
    if not train.images:  # rng.integers(0) said "high <= 0"
        raise ValueError(f"{crops}: no crops in the train part of the split to calibrate on")
    rng = np.random.default_rng(seed)
    # Calibration: every train crop as is, plus augmented views (blur, low contrast) so the
    # activation ranges cover the harder crops too.
    imgs = list(train.images)
    while len(imgs) < n_calib:
        imgs.append(augment(train.images[int(rng.integers(len(train.images)))], rng, (fp.height, fp.width)))
    x = preprocess(imgs[:n_calib], fp.height, fp.width)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{fp.input_name: x[i : i + 32]} for i in range(0, len(x), 32)])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        exclude = float_nodes(onnx.load(str(pre)), keep_float)
        # quantized beside the pre-processed graph, saved to dst with its metadata in one rename
        # (save_onnx): written straight to dst (often models/ocr.onnx) and interrupted, it was left
        # without the metadata the recognizer needs to load
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre), str(quantized), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
            nodes_to_exclude=exclude,
        )
        m = onnx.load(str(quantized))
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    meta["quantization"] = (f"int8 static, QOperator u8 activations / s8 7-bit per-channel weights, calibrated on "
                            f"{n_calib} train-split crops; float convs: {keep_float}")
    if version:
        meta["version"] = version
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "alpr-edge"
    save_onnx(m, dst)

    q = OnnxPlateOCR(dst)
    report = {"sha256": hashlib.sha256(dst.read_bytes()).hexdigest(), "bytes": dst.stat().st_size,
              "cpu_int8_path": cpu_int8_path()}
    for part in ("train", "val"):
        s = load_crops(crops, part)
        a, b = fp.predict(s.images).texts, q.predict(s.images).texts
        report[f"{part}_reads_changed"] = int(sum(u != v for u, v in zip(a, b)))
        report[f"{part}_exact_float"] = float(np.mean([u == t for u, t in zip(a, s.texts)]))
        report[f"{part}_exact_int8"] = float(np.mean([v == t for v, t in zip(b, s.texts)]))
    return report


def main(argv=None) -> int:
    from edge.training.ocr import DEFAULT_CROPS

    p = argparse.ArgumentParser(prog="python -m edge.training.ocr_quant", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="float ONNX model from edge.training.ocr")
    p.add_argument("dst", type=Path, help="where the int8 model goes (e.g. models/ocr.onnx)")
    p.add_argument("--crops", type=Path, default=DEFAULT_CROPS, help="real crops with labels.csv (train split calibrates)")
    p.add_argument("--calib", type=int, default=256, help="calibration crops")
    p.add_argument("--keep-float", choices=tuple(KEEP_FLOAT), default="stem+dw",
                   help="convolutions left in float where int8 is slower (see float_nodes)")
    p.add_argument("--version", help="the int8 model's version metadata (default: the float model's)")
    args = p.parse_args(argv)
    if args.calib < 1:  # 0 gave the quantizer no data; -5 calibrated on all but the last 5 crops
        p.error(f"--calib must be at least 1, got {args.calib}")
    if args.dst.resolve() == args.src.resolve():  # the float model, to fine-tune and re-quantize, would be gone
        raise ValueError(f"{args.dst} is the float model itself: the int8 model would overwrite it; "
                         "write it elsewhere")
    print(json.dumps(quantize(args.src, args.dst, args.crops, args.calib, keep_float=args.keep_float,
                              version=args.version), indent=1))
    return 0


if __name__ == "__main__":
    from edge.training import require_train_extra

    # onnx and onnxruntime's quantizer only: torch is not needed to quantize an exported model
    require_train_extra("python -m edge.training.ocr_quant", ("onnx",))
    from edge.training import run_main

    sys.exit(run_main("python -m edge.training.ocr_quant", main))
