"""Several recognizers as one OCR stage: readings of the same length combine character by character,
others replace the primary's when surer and a few edits away. The combining
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
    """A recognizer that reads crop k (filled with the value k) as texts[k], with conf[k]."""

    def __init__(self, texts, conf, region=None, region_conf=None, size=(48, 144), chars=None):
        self.texts, self.conf = texts, np.asarray(conf if conf is not None else [], np.float32)
        # per-character confidences (default: the plate's confidence spread evenly)
        self.chars = chars or [np.full(len(t), c ** (1 / max(len(t), 1)), np.float32) for t, c in zip(texts, conf)]
        if chars:  # a plate's confidence is the product of its characters'
            self.conf = np.asarray([np.prod(c) for c in chars], np.float32)
        self.region, self.region_conf = region, region_conf
        self.height, self.width = size
        self.version = "stub"
        self.config = type("C", (), {"max_batch": 64, "model_path": Path("stub.onnx")})()
        self.seen = []

    def predict(self, crops):
        ks = [int(c[0, 0, 0]) for c in crops]
        self.seen.append(ks)
        return PlateTexts([self.texts[k] for k in ks], self.conf[ks],
                          [np.asarray(self.chars[k], np.float32) for k in ks],
                          [self.region[k] for k in ks] if self.region else [],
                          None if self.region_conf is None else np.asarray(self.region_conf, np.float32)[ks])


def _crops(n, width=90):
    return [np.full((30, width, 3), k, np.uint8) for k in range(n)]


def test_a_surer_second_opinion_of_another_length_within_a_few_edits_replaces_the_primary_reading():
    a = _Member(["378XR", "XYZ", "7", "", "HVAYC"], [0.5, 0.2, 0.5, 0.0, 0.3], ["CA"] * 5, [0.9, 0.1, 0.5, 0.5, 0.5])
    b = _Member(["378DXR", "XYZ789", "71", "Q1", "VAC555"], [0.95, 0.8, 0.5, 0.3, 0.9], ["NV"] * 5, [0.2, 0.7, 0.6, 0.5, 0.1])
    res = EnsemblePlateOCR([a, b], max_edits=3).predict(_crops(5))
    # surer and close: replaced; tie: the primary; "" -> "Q1" is 2 edits; "VAC555" is 5 edits from "HVAYC"
    assert res.texts == ["378DXR", "XYZ789", "7", "Q1", "HVAYC"]
    assert res.confidence.tolist() == pytest.approx([0.95, 0.8, 0.5, 0.3, 0.3])
    assert [len(c) for c in res.char_confidence] == [6, 6, 1, 2, 5]
    assert res.region == ["CA", "NV", "NV", "CA", "CA"]  # the surest state head, ties to the primary
    assert res.region_confidence.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.5])
    strict = EnsemblePlateOCR([a, b], max_edits=2).predict(_crops(5))
    assert strict.texts[1] == "XYZ"  # three edits away: the primary's reading stands


def test_readings_of_the_same_length_take_each_character_from_the_surer_reader():
    # the primary misreads D as 0, the second opinion Z as 7: each is sure where it is right
    a = _Member(["3780XR", "JRZY", "AB12"], None,
                chars=[[0.99, 0.99, 0.99, 0.6, 0.99, 0.99], [0.9, 0.9, 0.95, 0.9], [0.9, 0.8, 0.7, 0.6]])
    b = _Member(["378DXR", "JR7Y", "AB12"], None,
                chars=[[0.9, 0.9, 0.9, 0.97, 0.9, 0.9], [0.8, 0.8, 0.7, 0.8], [0.9, 0.9, 0.6, 0.6]])
    res = EnsemblePlateOCR([a, b]).predict(_crops(3))
    assert res.texts == ["378DXR", "JRZY", "AB12"]
    assert res.char_confidence[0].tolist() == pytest.approx([0.99, 0.99, 0.99, 0.97, 0.99, 0.99])
    assert res.char_confidence[2].tolist() == pytest.approx([0.9, 0.9, 0.7, 0.6])  # ties: the primary's
    assert res.confidence.tolist() == pytest.approx([np.prod(c) for c in res.char_confidence], rel=1e-5)


def test_only_small_plates_get_the_second_opinion():
    a = _Member(["AB1", "CD2", "EF3"], [0.4, 0.4, 0.4])
    b = _Member(["AB7", "CD8", "EF9"], [0.9, 0.9, 0.9])
    ens = EnsemblePlateOCR([a, b], max_width=130)
    res = ens.predict(_crops(3), plate_widths=[60, 300, 130])
    assert res.texts == ["AB7", "CD2", "EF9"]
    assert a.seen[-1] == [0, 1, 2] and b.seen[-1] == [0, 2]  # the wide plate was never shown to b
    # without widths, the crops' own widths stand in (crops cut from a frame at their size)
    assert ens.predict(_crops(2, width=200)).texts == ["AB1", "CD2"]
    assert ens.predict(_crops(2, width=100)).texts == ["AB7", "CD8"]
    with pytest.raises(ValueError, match="plate_widths"):
        ens.predict(_crops(3), plate_widths=[60, 70])


def test_members_without_a_state_head_give_no_state_guess():
    a, b = _Member(["AB1"], [0.3]), _Member(["AB7"], [0.6])
    res = EnsemblePlateOCR([a, b]).predict(_crops(1))
    assert res.texts == ["AB7"] and res.region == [] and res.region_confidence is None
    empty = EnsemblePlateOCR([_Member([], []), _Member([], [])]).predict([])
    assert len(empty) == 0 and empty.confidence.shape == (0,)


def test_read_plates_passes_widths_only_to_an_ocr_that_routes_by_them():
    from edge.vision.ocr import read_plates

    a, b = _Member(["AB1"], [0.3]), _Member(["AB7"], [0.6])
    assert read_plates(EnsemblePlateOCR([a, b]), _crops(1), [500]).texts == ["AB1"]
    assert read_plates(a, _crops(1), [500]).texts == ["AB1"]  # a plain OCR takes no widths


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
    with pytest.raises(FileNotFoundError, match="OCR model not found: .*missing.onnx"):
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
def test_the_pair_corrects_small_plates_and_leaves_large_ones_to_the_primary():
    """Every change to the primary's reading comes from the camera recognizer: its character where
    the readings have the same length and it is surer, its whole reading otherwise."""
    from edge.vision.vote import edit_distance

    plates = render_plates(48, np.random.default_rng(21), size=(48, 110), degrade=True)
    imgs = list(plates.images)
    pair = load_ocr()
    primary, camera = (m.predict(imgs) for m in pair.members)
    res = pair.predict(imgs, plate_widths=[110] * len(imgs))
    for i, text in enumerate(res.texts):
        p, c = primary.texts[i], camera.texts[i]
        if text == p:
            continue
        if len(p) == len(c) and p:  # per character: from the camera reader only where it is surer
            for k, ch in enumerate(text):
                assert ch == (c[k] if camera.char_confidence[i][k] > primary.char_confidence[i][k] else p[k])
        else:  # replaced: by a surer camera reading a few edits away
            assert text == c and camera.confidence[i] > primary.confidence[i]
            assert edit_distance(text, p) <= pair.max_edits
    exact = np.mean([p == t for p, t in zip(res.texts, plates.texts)])
    assert exact >= 0.8, list(zip(plates.texts, res.texts))
    assert exact >= np.mean([p == t for p, t in zip(primary.texts, plates.texts)]) - 0.05
    large = pair.predict(imgs, plate_widths=[400] * len(imgs))
    assert large.texts == primary.texts
