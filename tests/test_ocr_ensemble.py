"""Several recognizers as one OCR stage: each crop takes the most confident reading. The combining
rule on stand-in members (no model), then the shipped pair (models/ocr.onnx + models/ocr-camera.onnx)
on rendered plates, and the flags and config that name them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.synth.plates import render_plates
from edge.vision.base import PlateTexts
from edge.vision.ocr import DEFAULT_MODELS, EnsemblePlateOCR, OnnxPlateOCR, load_ocr, model_paths


class _Member:
    """A recognizer that reads every crop as given, with given confidences."""

    def __init__(self, texts, conf, region=None, region_conf=None, size=(48, 144)):
        self.texts, self.conf = texts, np.asarray(conf, np.float32)
        self.region, self.region_conf = region, region_conf
        self.height, self.width = size
        self.version = "stub"
        self.config = type("C", (), {"max_batch": 64})()
        self.seen = []

    def read(self, batches):
        self.seen.append(sum(len(b) for b in batches))
        return PlateTexts(list(self.texts), self.conf.copy(),
                          [np.full(len(t), c, np.float32) for t, c in zip(self.texts, self.conf)],
                          list(self.region or []),
                          None if self.region_conf is None else np.asarray(self.region_conf, np.float32))


def _crops(n):
    return [np.full((30, 90, 3), 40 * (i + 1), np.uint8) for i in range(n)]


def test_each_crop_takes_the_most_confident_reading():
    a = _Member(["ABC123", "XYZ", "7", ""], [0.9, 0.2, 0.5, 0.0], ["CA"] * 4, [0.9, 0.1, 0.5, 0.5])
    b = _Member(["A8C123", "XYZ789", "7", "Q1"], [0.4, 0.8, 0.5, 0.3], ["NV"] * 4, [0.2, 0.7, 0.6, 0.5])
    res = EnsemblePlateOCR([a, b]).predict(_crops(4))
    assert res.texts == ["ABC123", "XYZ789", "7", "Q1"]  # ties go to the first member
    assert res.confidence.tolist() == pytest.approx([0.9, 0.8, 0.5, 0.3])
    assert [len(c) for c in res.char_confidence] == [6, 6, 1, 2]
    assert res.region == ["CA", "NV", "NV", "CA"]  # the surest state head, per crop, ties to the first
    assert res.region_confidence.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert a.seen == [4] and b.seen == [4]  # every member reads every crop


def test_members_without_a_state_head_give_no_state_guess():
    a, b = _Member(["AB1"], [0.3]), _Member(["AB7"], [0.6])
    res = EnsemblePlateOCR([a, b]).predict(_crops(1))
    assert res.texts == ["AB7"] and res.region == [] and res.region_confidence is None
    empty = EnsemblePlateOCR([_Member([], []), _Member([], [])]).predict([])
    assert len(empty) == 0 and empty.confidence.shape == (0,)


def test_model_lists_from_flags_and_config():
    assert model_paths(None) == DEFAULT_MODELS
    assert model_paths("a.onnx") == (Path("a.onnx"),)
    assert model_paths(" a.onnx, b.onnx ,") == (Path("a.onnx"), Path("b.onnx"))
    assert model_paths(Path("x/y.onnx")) == (Path("x/y.onnx"),)
    assert model_paths(["a.onnx", Path("b.onnx")]) == (Path("a.onnx"), Path("b.onnx"))
    with pytest.raises(ValueError, match="no OCR model"):
        model_paths(" , ")

    from edge.node.config import EdgeConfigError, build_config

    cfg = build_config(camera_id="cam1", agency_id="ag1", source="x.mp4", ocr_model="a.onnx,b.onnx")
    assert cfg.ocr_model == (Path("a.onnx"), Path("b.onnx"))
    assert build_config(camera_id="cam1", agency_id="ag1", source="x.mp4").ocr_model == DEFAULT_MODELS
    with pytest.raises(EdgeConfigError, match="ocr_model"):
        build_config(camera_id="cam1", agency_id="ag1", source="x.mp4", ocr_model=",")


def test_a_missing_member_is_named(tmp_path):
    with pytest.raises(ValueError, match="missing.onnx"):
        load_ocr(f"{DEFAULT_MODELS[0]},{tmp_path / 'missing.onnx'}")


shipped = pytest.mark.skipif(not all(p.is_file() for p in DEFAULT_MODELS), reason="shipped recognizers not present")


@shipped
def test_the_default_stage_is_the_shipped_pair():
    ocr = load_ocr()
    assert isinstance(ocr, EnsemblePlateOCR) and [m.config.model_path for m in ocr.members] == list(DEFAULT_MODELS)
    assert (ocr.height, ocr.width) == (48, 144)
    assert isinstance(load_ocr(DEFAULT_MODELS[0]), OnnxPlateOCR)  # one model: no ensemble around it


@shipped
def test_camera_recognizer_reads_rendered_plates_and_matches_its_float_master():
    """models/ocr-camera.onnx is int8 (7-bit weights, like models/ocr.onnx: the same reads on AVX2
    and VNNI CPUs) quantized from models/ocr-camera-float.onnx."""
    import onnxruntime as ort

    cam = DEFAULT_MODELS[1]
    meta = ort.InferenceSession(str(cam), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert "7-bit" in meta.get("quantization", ""), meta
    clean = render_plates(48, np.random.default_rng(11), size=(80, 160), degrade=False)
    degraded = render_plates(48, np.random.default_rng(8), size=(64, 128), degrade=True)
    a = OnnxPlateOCR(cam).predict(list(clean.images) + list(degraded.images))
    o0 = str.maketrans("O", "0")
    exact = np.mean([p.translate(o0) == t.translate(o0) for p, t in zip(a.texts[:48], clean.texts)])
    assert exact >= 0.95, list(zip(clean.texts, a.texts))
    master = cam.with_name("ocr-camera-float.onnx")
    b = OnnxPlateOCR(master).predict(list(clean.images) + list(degraded.images))
    assert sum(x != y for x, y in zip(a.texts, b.texts)) <= 2, list(zip(a.texts, b.texts))


@shipped
def test_the_pair_reads_each_crop_as_its_surer_member():
    plates = render_plates(48, np.random.default_rng(21), size=(48, 110), degrade=True)
    imgs = list(plates.images)
    pair = load_ocr()
    res = pair.predict(imgs)
    one = [m.predict(imgs) for m in pair.members]
    for i, text in enumerate(res.texts):
        k = int(np.argmax([r.confidence[i] for r in one]))
        assert text == one[k].texts[i]
        assert res.confidence[i] == pytest.approx(max(r.confidence[i] for r in one))
    exact = np.mean([p == t for p, t in zip(res.texts, plates.texts)])
    assert exact >= 0.8, list(zip(plates.texts, res.texts))
