"""Post-training int8 quantization of the exported recognizer (onnxruntime's static quantizer).

    python -m edge.training.ocr_quant runs/ocr/ocr.onnx models/ocr.onnx

Weights and activations become uint8 (per-channel weight scales) calibrated on the real TRAIN
crops (never the validation part): about half the CPU time per plate of the float model. The
float model's metadata (input spec, alphabet, states) is carried over. The script prints how many
reads of the float and int8 models differ on the train and validation crops, so a quantization
that changes the model's behaviour is seen before it ships.

u8/u8 is chosen over u8/s8: the s8-weight kernels can saturate on x86 CPUs without VNNI, the
u8/u8 ones do not, so the shipped model reads the same on any x86 machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def quantize(src: Path, dst: Path, crops: Path, n_calib: int = 256, seed: int = 0) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge.training.ocr_data import augment, load_crops
    from edge.vision.ocr import OnnxPlateOCR, preprocess

    fp = OnnxPlateOCR(src)
    train = load_crops(crops, "train")
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
        quantize_static(
            str(pre), str(dst), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
        )
    m = onnx.load(str(dst))
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    meta["quantization"] = f"int8 static, QOperator u8/u8 per-channel, calibrated on {n_calib} train-split crops"
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "alpr-edge"
    onnx.save(m, str(dst))

    q = OnnxPlateOCR(dst)
    report = {"sha256": hashlib.sha256(dst.read_bytes()).hexdigest(), "bytes": dst.stat().st_size}
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
    args = p.parse_args(argv)
    print(json.dumps(quantize(args.src, args.dst, args.crops, args.calib), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
