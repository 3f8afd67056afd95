"""bench frames / bench video plumbing, with the scripted scene's stand-in stages."""

import json

import cv2
import pytest

from edge import cli
from edge.bench.report import wilson_interval
from edge.sources.video import VideoFileSource
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource


@pytest.fixture
def scene(monkeypatch):
    src = ScriptedSource(n_vehicles=4, seed=5)
    monkeypatch.setattr("edge.bench.frames._stages", lambda cfg: (ColourKeyedDetector(), ColourKeyedOCR(src.vehicles)))
    return src


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def write_labelled_frames(folder, frames) -> list[str]:
    """Each frame as a PNG in folder; the label rows (header first) for them, not yet written."""
    rows = ["file,x,y,w,h,plate"]
    for f in frames:
        name = f"f{f.index:04d}.png"
        cv2.imwrite(str(folder / name), f.image)
        rows += [f"{name},{b[0]},{b[1]},{b[2] - b[0]},{b[3] - b[1]},{lab.plate}" for lab in f.labels for b in [lab.box]]
    return rows


def test_bench_frames_counts_exact_reads(tmp_path, scene, capsys):
    rows = ["file,x,y,w,h,plate"]
    frames = [f for f in scene if f.labels][::7]
    for f in frames:
        name = f"f{f.index:04d}.png"
        cv2.imwrite(str(tmp_path / name), f.image)
        for k, lab in enumerate(f.labels):
            x1, y1, x2, y2 = lab.box
            # the last frame's first plate labelled with other text: its read is a misread
            plate = "WRONG1" if f is frames[-1] and k == 0 else lab.plate
            rows.append(f"{name},{x1},{y1},{x2 - x1},{y2 - y1},{plate}")
    # One label the OCR cannot read (wrong text): a miss, not a crash.
    x1, y1, x2, y2 = frames[0].labels[0].box
    rows.append(f"f{frames[0].index:04d}.png,{x1},{y1},{x2 - x1},{y2 - y1},NOTREAD")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    n_labels = len(rows) - 1
    assert cli.main(["bench", "frames", str(tmp_path), "--json"]) == 0
    out = last_json(capsys)
    assert out["n"] == len(frames) and out["plates"] == n_labels
    assert out["read_rate"] == pytest.approx((n_labels - 2) / n_labels, abs=1e-3)
    assert out["detect_recall"] == 1.0
    assert out["read_rate_ci95"] == pytest.approx(wilson_interval(n_labels - 2, n_labels), abs=1e-4)
    assert out["ms_per_frame"] > 0 and set(out["splits"]) == {"val", "train"}
    # WRONG1's box holds a read with other text: a misread. NOTREAD's box holds a read of the other
    # label there: no misread (a read that is some label of its frame is right)
    sweep = out["by_min_confidence"]
    assert [r["min_confidence"] for r in sweep] == [0.2, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    assert sweep[0]["read_rate"] == out["read_rate"] and sweep[0]["misreads"] == out["misreads"] == 1
    assert all(a["read_rate"] >= b["read_rate"] and a["misreads"] >= b["misreads"] for a, b in zip(sweep, sweep[1:]))


def test_bench_frames_takes_labels_from_a_file_elsewhere(tmp_path, scene, capsys):
    """--labels CSV: the folder holds only images; every label of the file is scored, no val/train
    split (the fixed split names the dev set's frames), and a label naming an image the folder lacks
    or --split with --labels is refused with the reason."""
    images = tmp_path / "images"
    images.mkdir()
    frames = [f for f in scene if f.labels][::8]
    rows = write_labelled_frames(images, frames)
    rows.append(rows[1].replace(rows[1].split(",")[-1], "NOTREAD"))  # a second label on a frame: a miss
    labels = tmp_path / "mine.csv"
    labels.write_text("\n".join(rows) + "\n")
    misses = tmp_path / "misses"
    assert cli.main(["bench", "frames", str(images), "--labels", str(labels), "--save-misses", str(misses), "--json"]) == 0
    out = last_json(capsys)
    n = len(rows) - 1
    assert out["n"] == len(frames) and out["plates"] == n and out["splits"] == {}
    assert out["read_rate"] == pytest.approx((n - 1) / n, abs=1e-3)
    # the one miss: named in the JSON, with a picture of it (label and detections drawn on it)
    first = rows[1].split(",")[0]
    assert [(m["file"], m["label"]) for m in out["missed"]] == [(first, "NOTREAD")]
    assert out["miss_pictures"] == [str(misses / f"{first}_NOTREAD.png")]  # the whole name: a.jpg and a.png apart
    pic = cv2.imread(out["miss_pictures"][0])
    assert pic is not None and pic.shape[1] >= 480 and (pic[:, :, 2] > 200).any()  # red detections drawn
    assert cli.main(["bench", "frames", str(images), "--labels", str(labels), "--split", "val"]) == 2
    assert "alpr-edge bench frames: error: --split" in capsys.readouterr().err
    labels.write_text("\n".join(rows + ["gone.png,1,1,10,5,ABC123"]) + "\n")
    assert cli.main(["bench", "frames", str(images), "--labels", str(labels)]) == 2
    assert "gone.png" in capsys.readouterr().err
    assert cli.main(["bench", "frames", str(images), "--labels", str(tmp_path / "nope.csv")]) == 2
    assert "labels file not found" in capsys.readouterr().err


def test_bench_frames_scale_shrinks_frames_and_labels_together(tmp_path, scene, capsys):
    """--scale S: the node sees each frame S times as large (area shrink, JPEG at that size) and the
    labels move with it, so the colour-keyed stages still read every plate and the boxes still match."""
    from edge.bench.frames import _Shrunk
    from edge.sources.folder import FolderSource

    rows = write_labelled_frames(tmp_path, [f for f in scene if f.labels][::9])
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    full = next(iter(FolderSource(tmp_path)))
    half = next(iter(_Shrunk(FolderSource(tmp_path), 0.5)))
    assert half.size == (round(full.size[0] / 2), round(full.size[1] / 2)) and half.name == full.name
    assert [lab.box for lab in half.labels] == [pytest.approx([v / 2 for v in lab.box]) for lab in full.labels]
    # 0.8: the stand-in detector wants rectangles at least 28 px wide (the scene's are 40)
    assert cli.main(["bench", "frames", str(tmp_path), "--scale", "0.8", "--json"]) == 0
    out = last_json(capsys)
    assert out["scale"] == 0.8 and out["plates"] == len(rows) - 1
    assert out["read_rate"] == 1.0 and out["detect_recall"] == 1.0 and out["misreads"] == 0
    assert cli.main(["bench", "frames", str(tmp_path), "--scale", "1.5"]) == 2
    assert "alpr-edge bench frames: error: --scale" in capsys.readouterr().err


def test_bench_video_reports_fps_reads_and_stages(tmp_path, scene, capsys):
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 180))
    for f in scene:
        w.write(f.image)
    w.release()
    assert cli.main(["bench", "video", str(path), "--json"]) == 0
    out = last_json(capsys)
    assert out["frames"] == VideoFileSource(path).length and out["fps"] > 0
    # JPEG compression shifts colours a little: reads still one per vehicle.
    assert out["reads"] == 4 and sorted(out["plates_in_reads"]) == sorted(v.plate for v in scene.vehicles)
    assert set(out["stage_ms_per_frame"]) >= {"decode", "motion", "detect", "ocr", "track"}
    assert cli.main(["bench", "video", str(path), "--no-motion-gating", "--max-frames", "30", "--json"]) == 0
    out = last_json(capsys)
    assert out["frames"] == 30 and out["gated"] == 0


def test_bench_video_counts_the_frames_a_truncated_file_lacks(tmp_path, capsys):
    from test_sources_files import write_video

    data = write_video(tmp_path / "v.avi", n=48).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    assert cli.main(["bench", "video", str(cut), "--json"]) == 0
    out = last_json(capsys)
    assert 5 < out["frames"] < 48 and out["skipped"] == 48 - out["frames"]


def test_bench_video_scores_passes_against_ground_truth(tmp_path, monkeypatch, capsys):
    """With ground_truth.jsonl beside the video (as `synth scene` writes it), the bench counts
    passes read, wrong reads and the readable passes left unread, and names them."""
    src = ScriptedSource(n_vehicles=4, seed=5)
    wrong_for = src.vehicles[0].plate  # the OCR reads this vehicle as another plate

    class MisreadOne(ColourKeyedOCR):
        def predict(self, crops):
            out = super().predict(crops)
            out.texts[:] = ["ZZZ999" if t == wrong_for else t for t in out.texts]
            return out

    monkeypatch.setattr("edge.bench.frames._stages", lambda cfg: (ColourKeyedDetector(), MisreadOne(src.vehicles)))
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 180))
    ids = {v.plate: i for i, v in enumerate(src.vehicles)}
    with open(tmp_path / "ground_truth.jsonl", "w") as gt:
        for f in src:
            w.write(f.image)
            plates = [{"plate": lab.plate, "box": list(lab.box), "vehicle_id": ids[lab.plate]} for lab in f.labels]
            gt.write(json.dumps({"frame": f.index, "t": f.timestamp, "plates": plates}) + "\n")
    w.release()
    assert cli.main(["bench", "video", str(path), "--json"]) == 0
    g = last_json(capsys)["ground_truth"]
    assert g["vehicle_passes"] == 4 and g["passes_read"] == 3
    assert g["wrong_reads"] == 1 and g["wrong"] == ["ZZZ999"]
    assert wrong_for in g["unread_readable"] and g["duplicate_reads"] == 0
    assert g["by_min_confidence"][0] == {"min_confidence": 0.2, "passes_read": 3, "wrong_reads": 1}


def _event(plate, conf, box=(0, 0, 100, 50)):
    from types import SimpleNamespace

    x1, y1, x2, y2 = box
    return SimpleNamespace(plate=plate, confidence=conf, box=SimpleNamespace(x=x1, y=y1, w=x2 - x1, h=y2 - y1))


@pytest.mark.parametrize("hits, n", [(15, 17), (0, 10), (10, 10), (1, 2), (104, 108)])
def test_wilson_interval_bounds_solve_the_score_equation(hits, n):
    # Wilson's bounds are the rates p at which the observed rate lies exactly z standard errors
    # from p: (p - hits/n)^2 = z^2 p (1 - p) / n. Checked from that definition, not the formula.
    z = 1.96
    lo, hi = wilson_interval(hits, n, z)
    assert 0.0 <= lo <= hits / n <= hi <= 1.0 and lo < hi
    for p in (lo, hi):
        assert (p - hits / n) ** 2 == pytest.approx(z * z * p * (1 - p) / n, abs=1e-12)
    assert wilson_interval(15, 17) == pytest.approx((0.6566, 0.9671), abs=1e-4)  # the dev set's validation split
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="hits"):
        wilson_interval(3, 2)


def test_frames_confidence_sweep_counts_reads_misreads_and_other_reads_per_threshold():
    from edge.bench.frames import frames_confidence_sweep
    from edge.sources.base import PlateLabel

    box = (0.0, 0.0, 100.0, 50.0)
    labels = [[PlateLabel("ABC123", box)], [PlateLabel("XYZ789", box)], [PlateLabel("QQQ111", box)]]
    events = [
        [_event("ABC123", 0.95)],
        [_event("XYZ780", 0.92), _event("BG1234", 0.6, box=(300, 300, 400, 350))],  # misread; background plate
        [_event("QQQ111", 0.4)],
    ]
    rows = {r["min_confidence"]: r for r in frames_confidence_sweep(labels, events, 0.2)}
    assert list(rows) == [0.2, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    assert rows[0.2] == {"min_confidence": 0.2, "read_rate": pytest.approx(2 / 3, abs=1e-3), "misreads": 1, "other_reads": 2}
    assert (rows[0.5]["read_rate"], rows[0.5]["misreads"], rows[0.5]["other_reads"]) == (pytest.approx(1 / 3, abs=1e-3), 1, 2)
    assert (rows[0.7]["misreads"], rows[0.7]["other_reads"]) == (1, 1)
    assert (rows[0.95]["read_rate"], rows[0.95]["misreads"], rows[0.95]["other_reads"]) == (pytest.approx(1 / 3, abs=1e-3), 0, 0)
    assert rows[0.99]["read_rate"] == 0.0
    # the run's own threshold comes first; nothing below it was published, so nothing below is shown
    assert [r["min_confidence"] for r in frames_confidence_sweep(labels, events, 0.6)] == [0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


def test_video_confidence_sweep_counts_passes_and_wrong_reads_per_threshold():
    from edge.bench.frames import video_confidence_sweep
    from edge.sources.base import PlateLabel

    gt = {i: [PlateLabel("AAA111", (0, 0, 40, 20), track=1), PlateLabel("BBB222", (50, 0, 90, 20), track=2)] for i in range(5)}
    events = [_event("AAA111", 0.99), _event("BBB222", 0.6), _event("CCC33X", 0.85)]
    rows = {r["min_confidence"]: r for r in video_confidence_sweep(gt, events, 0.2)}
    assert rows[0.2] == {"min_confidence": 0.2, "passes_read": 2, "wrong_reads": 1}
    assert rows[0.7] == {"min_confidence": 0.7, "passes_read": 1, "wrong_reads": 1}
    assert rows[0.9] == {"min_confidence": 0.9, "passes_read": 1, "wrong_reads": 0}
    assert rows[0.99]["passes_read"] == 1
