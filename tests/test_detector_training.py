"""Training smoke test: a few steps on a generated data folder, export, onnxruntime == torch."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import cv2  # noqa: E402

from edge.synth.plates import composite_plate, plate_box, render_plate_images  # noqa: E402


def _make_data_root(root, n_frames=6, n_crops=6):
    """frames/ (1280x720 clutter with one composited plate each, labels.csv) and crops/."""
    rng = np.random.default_rng(3)
    (root / "frames").mkdir(parents=True)
    (root / "crops").mkdir()
    rows = []
    plates = render_plate_images(n_frames + n_crops, rng, height=60)
    for i in range(n_frames):
        bg = np.full((720, 1280, 3), rng.integers(40, 200), np.uint8)
        cv2.rectangle(bg, (300, 250), (900, 650), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        x, y, w = 500 + 20 * i, 400, 110
        corners = np.array([[x, y], [x + w, y], [x + w, y + w / 2], [x, y + w / 2]], np.float32)
        frame = composite_plate(bg, plates[i][0], corners)
        name = f"scene{i}.jpg"
        cv2.imwrite(str(root / "frames" / name), frame)
        b = plate_box(corners)
        rows.append([name, int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1]), plates[i][1]])
    with open(root / "frames" / "labels.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "x", "y", "w", "h", "plate"])
        wr.writerows(rows)
    with open(root / "crops" / "labels.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "state", "plate"])
        for j in range(n_crops):
            img, text, state = plates[n_frames + j]
            cv2.imwrite(str(root / "crops" / f"crop{j}.png"), img)
            wr.writerow([f"crop{j}.png", state, text])
    return root


def test_train_few_steps_export_and_onnxruntime_matches_torch(tmp_path):
    import onnxruntime as ort

    from edge.training import detector as trainer
    from edge.training.splits import split

    data = _make_data_root(tmp_path / "data")
    train_names, val_names = split(sorted(f"scene{i}.jpg" for i in range(6)))
    assert train_names, "the generated set needs training frames"
    out = tmp_path / "run"
    args = argparse.Namespace(
        out=str(out), data=str(data), minutes=5.0, max_steps=3, resume=False, batch=2, lr=1e-3, seed=0,
        threads=1, workers=0, synth=4, checkpoint_minutes=100.0, onnx="",
    )
    ckpt = trainer.train(args)
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["step"] == 3 and state["history"][-1]["train"]["n"] == len(train_names)

    # resume continues counting steps from the checkpoint
    args.resume, args.max_steps = True, 5
    trainer.train(args)
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["step"] == 5

    onnx_path = trainer.export_onnx(ckpt, tmp_path / "det.onnx", threshold=0.25)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert (meta["input_width"], meta["input_height"], meta["stride"]) == ("768", "448", "8")
    image = np.random.default_rng(0).integers(0, 255, (1, 448, 768, 3), dtype=np.uint8)
    heat_o, reg_o = sess.run(None, {"image": image})
    model = trainer.PlateNet()
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
    model.eval()
    with torch.no_grad():
        heat_t, reg_t = model(torch.from_numpy(image))
    assert heat_o.shape == (1, 1, 56, 96) and reg_o.shape == (1, 12, 56, 96)
    np.testing.assert_allclose(heat_o, heat_t.numpy(), atol=1e-4)
    np.testing.assert_allclose(reg_o, reg_t.numpy(), atol=1e-3)

    from edge.vision.detector import OnnxPlateDetector

    det = OnnxPlateDetector(onnx_path)
    assert det.threshold == pytest.approx(0.25)
    assert len(det.predict([cv2.imread(str(data / "frames" / "scene0.jpg"))])) == 1


def test_targets_put_a_peak_at_each_plate_centre_and_ignore_cut_plates():
    from edge.training.detector import make_targets

    boxes = np.array([[40, 40, 104, 72], [150, 150, 190, 170]], np.float32)
    corners = np.array([[[40, 42], [104, 40], [104, 72], [40, 70]], [[150, 150], [190, 150], [190, 170], [150, 170]]],
                       np.float32)
    has = np.array([True, False])
    ignore = np.array([[0, 200, 30, 215]], np.float32)
    heat, reg, reg_w, corner_w, ignore_w = make_targets(boxes, corners, has, ignore, 256, 8)
    assert heat.shape == (32, 32) and heat[7, 9] == 1.0 and heat[20, 21] == 1.0
    assert reg[0, 7, 9] == pytest.approx(72 / 8 - 9) and reg[1, 7, 9] == pytest.approx(56 / 8 - 7)
    assert reg[2, 7, 9] == pytest.approx(np.log(64 / 8))
    np.testing.assert_allclose(reg[4:6, 7, 9], [(40 - 72) / 64, (42 - 56) / 64], atol=1e-6)
    assert corner_w[7, 9] == 1.0 and corner_w[20, 21] == 0.0 and reg_w[20, 21] == 1.0
    assert ignore_w[25, 0] == 0.0 and ignore_w[7, 9] == 1.0


def test_tile_sampler_boxes_follow_the_2to1_convention():
    from edge.training.detector_data import LabelledFrame, TileSampler

    rng = np.random.default_rng(0)
    frames = [LabelledFrame(f"f{i}", rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8),
                            np.array([[600, 300, 700, 350]], np.float32)) for i in range(3)]
    plates = [img for img, _, _ in render_plate_images(5, rng, height=60)]
    sampler = TileSampler(frames, plates, (768, 448), tile=256, seed=1)
    n_boxes = 0
    for _ in range(40):
        t = sampler.sample()
        assert t.image.shape == (256, 256, 3) and t.image.dtype == np.uint8
        assert t.boxes.shape[0] == t.corners.shape[0] == t.has_corners.shape[0]
        w, h = t.boxes[:, 2] - t.boxes[:, 0], t.boxes[:, 3] - t.boxes[:, 1]
        np.testing.assert_allclose(w, 2 * h, rtol=1e-4)
        n_boxes += len(t.boxes)
    assert n_boxes > 20


def test_tile_sampler_centres_tiles_on_mined_hard_negatives():
    from edge.training.detector_data import LabelledFrame, TileSampler

    rng = np.random.default_rng(0)
    image = np.zeros((720, 1280, 3), np.uint8)
    image[100:140, 1000:1080] = 255  # the "confuser": the only bright thing in the frame
    frames = [LabelledFrame("f0", image, np.array([[100, 600, 200, 650]], np.float32))]
    plates = [img for img, _, _ in render_plate_images(2, rng, height=60)]
    sampler = TileSampler(frames, plates, (768, 448), tile=256, seed=2,
                          hard_negatives={"f0": np.array([[1000, 100, 1080, 140]], np.float32)}, hard_fraction=1.0)
    sampler._photometric = lambda img: img  # keep pixel values to find the confuser
    bright = 0
    for _ in range(10):
        tile, boxes, _ = sampler._frame_tile()
        bright += int((tile > 250).all(axis=2).sum() > 50)
        assert len(boxes) == 0  # the labelled plate is far away
    assert bright == 10


def test_shipped_onnx_weights_load_back_into_torch_exactly():
    """`train --init models/detector.onnx --freeze-bn` fine-tunes the shipped model when its run's
    checkpoint is gone: the folded weights must give the same outputs in torch as in onnxruntime."""
    from pathlib import Path

    import onnxruntime as ort

    from edge.training.detector import INPUT_SIZE, PlateNet, load_onnx_weights, train_mode

    path = Path(__file__).resolve().parents[1] / "models" / "detector.onnx"
    model = PlateNet()
    load_onnx_weights(model, path)
    model.eval()
    x = np.random.default_rng(0).integers(0, 255, (1, INPUT_SIZE[1], INPUT_SIZE[0], 3), dtype=np.uint8)
    heat, reg = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with torch.no_grad():
        th, tr = model(torch.from_numpy(x))
    assert np.abs(th.numpy() - heat).max() < 1e-4
    assert np.abs(tr.numpy() - reg).max() < 1e-3
    train_mode(model, freeze_bn=True)
    assert model.training and not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_loading_onnx_weights_of_another_architecture_is_refused(tmp_path):
    from edge.training.detector import PlateNet, load_onnx_weights

    small = PlateNet(widths=(8, 16, 32, 48, 64)).eval()
    torch.onnx.export(small, torch.zeros(1, 64, 64, 3, dtype=torch.uint8), str(tmp_path / "small.onnx"),
                      input_names=["image"], output_names=["heat", "reg"], opset_version=17, dynamo=False)
    with pytest.raises(ValueError, match="not this architecture"):
        load_onnx_weights(PlateNet(), tmp_path / "small.onnx")
