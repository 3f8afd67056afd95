"""Training smoke test: a few CPU steps on rendered plates, ONNX export, onnxruntime agrees with
torch, and --resume continues from the checkpoint. Skipped without the `train` extra."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import cv2  # noqa: E402

from edge.synth.plates import render_plates  # noqa: E402
from edge.training import ocr as train_ocr  # noqa: E402
from edge.training.splits import split  # noqa: E402
from edge.vision.ocr import OnnxPlateOCR  # noqa: E402


@pytest.fixture()
def crops_dir(tmp_path):
    batch = render_plates(30, np.random.default_rng(3), size=(75, 160))
    d = tmp_path / "crops"
    d.mkdir()
    with open(d / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "state", "plate"])
        for i, (img, text, state) in enumerate(zip(batch.images, batch.texts, batch.states)):
            name = f"{state}{i}.png"
            cv2.imwrite(str(d / name), img)
            w.writerow([name, state, text])
    train, val = split([p.name for p in d.glob("*.png")])
    assert train and val  # the fixed split gives both parts on this set
    return d


def test_few_steps_export_and_resume(crops_dir, tmp_path):
    out, onnx_path = tmp_path / "run", tmp_path / "ocr.onnx"
    common = ["--crops", str(crops_dir), "--out", str(out), "--batch", "8", "--workers", "0",
              "--synth-pool", "16", "--synth-refresh", "2", "--synth-only-steps", "2", "--minutes", "5"]
    summary = train_ocr.train(train_ocr.parse_args(common + ["--steps", "4", "--export", str(onnx_path)]))
    assert summary["steps"] == 4
    assert (out / "last.pt").is_file()
    # the synthetic-only model was evaluated on the real (here: rendered) validation crops and exported
    assert json.loads((out / "synth_only.json").read_text())["tag"] == "synthetic-only"
    assert (out / "synth_only.onnx").is_file()
    assert summary["onnx"]["max_abs_logit_diff_vs_torch"] < 1e-3

    ocr = OnnxPlateOCR(onnx_path)
    assert (ocr.height, ocr.width) == (48, 144)
    assert len(ocr.states) == 51 and ocr.alphabet.startswith("0123")
    res = ocr.predict([cv2.imread(str(p)) for p in sorted(crops_dir.glob("*.png"))[:5]])
    assert len(res) == 5 and res.confidence.shape == (5,)
    assert all(len(c) == len(t) for c, t in zip(res.char_confidence, res.texts))
    assert len(res.region) == 5 and all(r.isupper() and len(r) == 2 for r in res.region)

    resumed = train_ocr.train(train_ocr.parse_args(common + ["--steps", "6", "--resume"]))
    assert resumed["steps"] == 6  # continued from step 4, not restarted
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == 6 and ck["synth_only_done"]


def test_onnx_weights_load_back_into_torch_and_fine_tune(crops_dir, tmp_path):
    """A shipped model (float, or int8 dequantized as its kernels use it) can be re-exported,
    re-quantized or fine-tuned (`--init model.onnx --freeze-bn`) when its run's checkpoint is gone."""
    from edge.training.ocr_model import STATES, PlateRecognizer, load_onnx_weights

    out, first = tmp_path / "run", tmp_path / "first.onnx"
    common = ["--crops", str(crops_dir), "--batch", "8", "--workers", "0", "--synth-pool", "16",
              "--synth-refresh", "2", "--minutes", "5"]
    train_ocr.train(train_ocr.parse_args(common + ["--out", str(out), "--steps", "3", "--export", str(first)]))

    model = PlateRecognizer(n_states=len(STATES))
    load_onnx_weights(model, first)
    model.eval()
    ort = OnnxPlateOCR(first)
    x = np.random.default_rng(0).standard_normal((3, 1, 48, 144)).astype(np.float32)
    logits, states = ort._run(x)
    with torch.no_grad():
        tl, ts = model(torch.from_numpy(x))
    assert np.abs(tl.numpy() - logits).max() < 1e-3 and np.abs(ts.numpy() - states).max() < 1e-3

    with pytest.raises(SystemExit, match="freeze-bn"):
        train_ocr.train(train_ocr.parse_args(common + ["--out", str(tmp_path / "x"), "--steps", "1",
                                                       "--init", str(first)]))
    tuned = tmp_path / "tuned.onnx"
    s = train_ocr.train(train_ocr.parse_args(common + ["--out", str(tmp_path / "ft"), "--steps", "2", "--init",
                                                       str(first), "--freeze-bn", "--export", str(tuned)]))
    assert s["steps"] == 2 and tuned.is_file()

    with pytest.raises(ValueError, match="not this architecture"):
        load_onnx_weights(PlateRecognizer(n_states=len(STATES), width=2), first)

    # a model of other widths (the camera recognizer's) fine-tunes at its own widths
    wide = ["--channels", "24,72,96,144,192"]
    wide_onnx, wide_tuned = tmp_path / "wide.onnx", tmp_path / "wide-tuned.onnx"
    train_ocr.train(train_ocr.parse_args(common + wide + ["--out", str(tmp_path / "w"), "--steps", "2",
                                                          "--export", str(wide_onnx)]))
    s = train_ocr.train(train_ocr.parse_args(common + wide + ["--out", str(tmp_path / "wft"), "--steps", "1",
                                                              "--init", str(wide_onnx), "--freeze-bn",
                                                              "--export", str(wide_tuned)]))
    assert s["steps"] == 1 and wide_tuned.is_file()


def test_int8_model_dequantizes_to_the_weights_its_kernels_use(crops_dir, tmp_path):
    from edge.training.ocr_model import STATES, PlateRecognizer, load_onnx_weights
    from edge.training.ocr_quant import quantize

    fp, q8 = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    train_ocr.train(train_ocr.parse_args(["--crops", str(crops_dir), "--batch", "8", "--workers", "0", "--synth-pool",
                                          "16", "--synth-refresh", "2", "--minutes", "5", "--out", str(tmp_path / "r"),
                                          "--steps", "20", "--export", str(fp)]))
    report = quantize(fp, q8, crops_dir, n_calib=16)
    assert report["cpu_int8_path"] in ("vnni", "avx512", "avx2", "other", "unknown")
    import onnx

    g = onnx.load(str(q8)).graph
    attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
    convs = [n for n in g.node if n.op_type in ("Conv", "QLinearConv")]
    # default: the stem and the depthwise conv after it stay float (ocr_quant.float_nodes), every
    # other conv is int8 with the quantizer's 7-bit per-channel weights (none left for onnxruntime
    # to quantize its own way)
    assert [n.op_type for n in convs[:2]] == ["Conv", "Conv"]
    assert attrs(convs[1]).get("group", 1) > 1
    assert all(n.op_type == "QLinearConv" for n in convs[2:])
    assert any(attrs(n).get("group", 1) > 1 for n in convs[2:])  # later depthwise ones included
    model = PlateRecognizer(n_states=len(STATES))
    load_onnx_weights(model, q8)
    model.eval()
    imgs = [cv2.imread(str(p)) for p in sorted(crops_dir.glob("*.png"))]
    from edge.vision.ocr import preprocess

    x = preprocess(imgs, 48, 144)
    logits, _ = OnnxPlateOCR(q8)._run(x)
    with torch.no_grad():
        tl, _ = model(torch.from_numpy(x))
    # int8 activations round, the weights are the same: the two agree closely
    assert np.corrcoef(tl.numpy().ravel(), logits.ravel())[0, 1] > 0.98


def test_pruning_keeps_the_model_at_full_width_and_narrows_every_layer_consistently():
    from edge.training.ocr_model import STATES, PlateRecognizer, prune_recognizer

    torch.manual_seed(0)
    big = PlateRecognizer(n_states=len(STATES)).eval()
    for m in big.modules():  # non-trivial BatchNorm statistics, as a trained model has
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 48, 144)
    same = prune_recognizer(big, (16, 48, 64, 96, 128)).eval()
    for a, b in zip(big(x), same(x)):
        assert torch.equal(a, b)
    small = prune_recognizer(big, (8, 24, 32, 48, 64)).eval()
    logits, states = small(x)
    assert logits.shape == (3, 36, 37) and states.shape == (3, len(STATES))
    assert small.channels == (8, 24, 32, 48, 64)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters()) / 2
    with pytest.raises(ValueError, match="channels"):
        PlateRecognizer(channels=(8, 24, 32))


def test_camera_chain_shrinks_compresses_and_returns_the_size():
    from edge.training.ocr_data import camera_chain

    img = render_plates(1, np.random.default_rng(4), size=(96, 288), degrade=False).images[0]
    out = camera_chain(img, np.random.default_rng(0), width_px=(40, 40))
    assert out.shape == img.shape and out.dtype == np.uint8
    # at 40 px wide the fine detail is gone: much less high-frequency energy than the original
    lap = lambda a: cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()  # noqa: E731
    assert lap(out) < 0.5 * lap(img)


def test_export_keeps_the_sequence_head_2d_for_onnxruntime(crops_dir, tmp_path):
    """Exported recognizers carry no 1-D convolution (onnxruntime's blocked layout skips those),
    and the rewrite is idempotent and exact."""
    import onnx

    from edge.training.ocr_model import STATES, PlateRecognizer
    from edge.training.onnx_layout import sequence_head_to_4d

    torch.manual_seed(1)
    model = PlateRecognizer(n_states=len(STATES)).eval()
    path = tmp_path / "m.onnx"
    train_ocr.export_onnx(model, path)
    m = onnx.load(str(path))
    weights = {i.name: len(i.dims) for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert convs and all(weights[n.input[1]] == 4 for n in convs)
    assert sequence_head_to_4d(m) == 0  # nothing left to rewrite
    x = np.random.default_rng(0).standard_normal((2, 1, 48, 144)).astype(np.float32)
    logits, states = OnnxPlateOCR(path)._run(x)
    with torch.no_grad():
        tl, ts = model(torch.from_numpy(x))
    assert np.abs(tl.numpy() - logits).max() < 1e-4 and np.abs(ts.numpy() - states).max() < 1e-4


def _class_changes(texts: list[str]) -> float:
    """Share of neighbouring character pairs where a letter meets a digit."""
    pairs = [(a.isalpha(), b.isalpha()) for t in texts for a, b in zip(t, t[1:])]
    return float(np.mean([a != b for a, b in pairs]))


def test_mixed_synthetic_serials_ignore_the_state_format(monkeypatch):
    from edge.synth import plates

    # SynthSource patches the renderer's serial function for its process: restore it afterwards
    monkeypatch.setattr(plates, "random_serial", plates.random_serial)
    formats = train_ocr.SynthSource((96, 288), mixed=0.0).render(120, np.random.default_rng(1))[1]
    monkeypatch.setattr(plates, "random_serial", plates.random_serial.original)
    mixed = train_ocr.SynthSource((96, 288), mixed=1.0).render(120, np.random.default_rng(1))[1]
    assert all(t and t.isalnum() for t in mixed)
    assert not set("OQ") & set("".join(mixed))  # labels write 0 for round glyphs; Q is rare
    assert "I" in "".join(mixed)  # issued serials skip I, real vanity and older plates do not
    # letters among digits: formats keep their groups, mixed serials do not
    assert _class_changes(mixed) > _class_changes(formats) + 0.1, (_class_changes(mixed), _class_changes(formats))
    # the layout's length is kept: the same length distribution, roughly
    assert abs(np.mean([len(t) for t in mixed]) - np.mean([len(t) for t in formats])) < 1.0


def test_a_narrower_input_carries_into_the_export_and_the_stage(crops_dir, tmp_path):
    """--input-width: the width is the model's, so evaluation, export metadata and the runtime
    stage all use it (a mismatch would squeeze crops to the wrong aspect without an error)."""
    from edge.training.ocr_model import STATES, PlateRecognizer

    with pytest.raises(ValueError, match="input_width"):
        PlateRecognizer(input_width=130)
    torch.manual_seed(2)
    model = PlateRecognizer(n_states=len(STATES), input_width=128).eval()
    path = tmp_path / "w128.onnx"
    train_ocr.export_onnx(model, path)
    ocr = OnnxPlateOCR(path)
    assert (ocr.height, ocr.width) == (48, 128)
    imgs = [cv2.imread(str(p)) for p in sorted(crops_dir.glob("*.png"))][:3]
    assert train_ocr.check_onnx_matches(model, path, imgs) < 1e-3
    from edge.vision.ocr import preprocess

    logits, _ = ocr._run(preprocess(imgs, 48, 128))
    assert logits.shape[:2] == (3, 32)  # one CTC column per 4 input pixels


def test_several_data_workers_feed_the_steps_in_order(crops_dir, tmp_path):
    # two data processes: the loop asserts each batch is the step it expects
    args = ["--crops", str(crops_dir), "--out", str(tmp_path / "run"), "--batch", "8", "--workers", "2",
            "--synth-pool", "16", "--synth-refresh", "2", "--steps", "6", "--minutes", "5", "--device", "auto"]
    summary = train_ocr.train(train_ocr.parse_args(args))
    assert summary["steps"] == 6


def test_a_cuda_device_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda"):
        train_ocr.pick_device("cuda")
    assert train_ocr.pick_device("auto").type == "cpu"


def test_data_workers_make_interleaved_steps_in_order(crops_dir):
    """With N data processes, worker k makes steps k, k+N, ...: the loader's round robin then
    delivers every step once, in order (the training loop asserts it)."""
    args = train_ocr.parse_args(["--crops", str(crops_dir), "--batch", "4", "--synth-pool", "6", "--synth-refresh", "1"])
    workers = [train_ocr.batch_stream(args, 10 + k, k + 1, stride=3) for k in range(3)]
    got = [next(workers[i % 3]) for i in range(9)]
    assert [int(g[4]) for g in got] == list(range(10, 19))
    x = got[0][0]
    assert x.shape == (4, 1, 48, 144) and x.dtype == np.float32
    assert not np.array_equal(got[0][0], got[1][0])  # each worker draws its own batches
