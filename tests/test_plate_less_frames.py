"""Frames labelled as showing no plate (`name,,,,,` in labels.csv) and unreadable labelled images:
the folder reader, `synth scene --frames-every`, `bench frames` and `bench detect` (stand-in stages,
no models: the scripted scene's coloured rectangles)."""

import csv
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from edge import cli
from edge.sources.folder import FolderSource, read_labels
from edge_node_helpers import ROAD_GREY, ColourKeyedDetector, ColourKeyedOCR, ScriptedSource
from test_synth_scene import SMALL

HEADER = "file,x,y,w,h,plate"


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def write_folder(folder, labels: str, images=("a.jpg", "b.jpg")):
    for name in images:
        cv2.imwrite(str(folder / name), np.full((120, 200, 3), ROAD_GREY, np.uint8))
    (folder / "labels.csv").write_text(labels)


def write_scene_frames(folder, source) -> tuple[list[str], object]:
    """Some frames of the scripted scene with plates, as PNGs with their label rows (header first,
    not yet written); the first of them as `shows-plates.png` and a bare road as `bare-road.png`,
    both without rows. Returns the rows and the frame behind shows-plates.png."""
    frames = [f for f in source if f.labels][::7]
    rows = [HEADER]
    for f in frames[1:]:
        name = f"f{f.index:04d}.png"
        cv2.imwrite(str(folder / name), f.image)
        rows += [f"{name},{b[0]},{b[1]},{b[2] - b[0]},{b[3] - b[1]},{lab.plate}" for lab in f.labels for b in [lab.box]]
    cv2.imwrite(str(folder / "shows-plates.png"), frames[0].image)
    cv2.imwrite(str(folder / "bare-road.png"), np.full_like(frames[0].image, ROAD_GREY))
    return rows, frames[0]


# -- the folder reader ---------------------------------------------------------------------------

def test_a_row_with_the_file_and_empty_fields_labels_a_frame_without_plates(tmp_path):
    write_folder(tmp_path, f"{HEADER}\na.jpg,10,10,40,20,abc123\nb.jpg,,,,,\n", images=("a.jpg", "b.jpg", "c.jpg"))
    labels = read_labels(tmp_path)
    assert set(labels) == {"a.jpg", "b.jpg"} and labels["b.jpg"] == []
    assert [(lab.plate, lab.box) for lab in labels["a.jpg"]] == [("ABC123", (10.0, 10.0, 50.0, 30.0))]
    by_name = {f.name: f.labels for f in FolderSource(tmp_path)}
    assert by_name["b.jpg"] == [] and len(by_name["a.jpg"]) == 1


@pytest.mark.parametrize("row", [
    "b.jpg",  # a cut-off line is not a frame without plates
    "b.jpg,10,10",
    "b.jpg,,,,,ABC123",  # a plate without its box
    "b.jpg,10,,,,",  # a box half given
    ",,,,,",  # no file
])
def test_a_row_neither_a_plate_nor_plate_less_is_an_error_naming_its_line(tmp_path, row):
    write_folder(tmp_path, f"{HEADER}\na.jpg,10,10,40,20,ABC123\n{row}\n")
    with pytest.raises(ValueError, match="line 3"):
        read_labels(tmp_path)


def test_a_bad_row_error_shows_how_to_label_a_frame_without_plates(tmp_path):
    write_folder(tmp_path, f"{HEADER}\nb.jpg,10,10\n")
    with pytest.raises(ValueError, match=r"name\.jpg,,,,,"):
        read_labels(tmp_path)


# -- synth scene ---------------------------------------------------------------------------------

# seed 4: no plate in view for the first 11 of its 15 frames, then one
QUIET = {**SMALL, "name": "quiet", "duration_s": 3.0, "traffic": {**SMALL["traffic"], "vehicles_per_minute": 30}}


def test_synth_scene_frames_without_plates_get_a_plate_less_row(tmp_path, capsys):
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(QUIET))
    out = tmp_path / "out"
    assert cli.main(["synth", "scene", str(scen), "--out", str(out), "--format", "avi", "--frames-every", "2",
                     "--min-plate-px", "1", "--json"]) == 0
    summary = last_json(capsys)
    gt = [json.loads(x) for x in (out / "ground_truth.jsonl").read_text().splitlines()]
    saved = {f"quiet-4-{i:06d}.jpg": gt[i]["plates"] for i in range(0, len(gt), 2)}
    empty = {name for name, plates in saved.items() if not plates}
    assert 0 < len(empty) < len(saved)  # the scene has both kinds of frame
    rows = list(csv.DictReader(open(out / "frames" / "labels.csv")))
    assert {r["file"] for r in rows if not r["plate"]} == empty
    assert all(r["x"] == r["y"] == r["w"] == r["h"] == "" for r in rows if not r["plate"])
    assert summary["plate_less_frames"] == len(empty)
    assert summary["frame_labels"] == sum(bool(r["plate"]) for r in rows) == sum(map(len, saved.values()))
    labels = read_labels(out / "frames")  # the folder reader (both benches) takes the file as written
    assert set(labels) == set(saved)
    assert all(labels[n] == [] for n in empty) and all(labels[n] for n in set(saved) - empty)


# -- bench frames --------------------------------------------------------------------------------

@pytest.fixture
def scene(monkeypatch):
    src = ScriptedSource(n_vehicles=4, seed=5)
    monkeypatch.setattr("edge.bench.frames._stages", lambda cfg: (ColourKeyedDetector(), ColourKeyedOCR(src.vehicles)))
    return src


def test_bench_frames_scores_reads_on_a_plate_less_frame_as_other_reads(tmp_path, scene, capsys):
    """A frame labelled plate-less is scored: no plate to miss there, and every read on it is an
    "other read". Here one such frame does show plates (read: false alarms to the bench), another
    is bare road (no read)."""
    rows, shows_plates = write_scene_frames(tmp_path, scene)
    (tmp_path / "labels.csv").write_text("\n".join(rows + ["shows-plates.png,,,,,", "bare-road.png,,,,,"]) + "\n")
    assert cli.main(["bench", "frames", str(tmp_path), "--json"]) == 0
    out = last_json(capsys)
    assert out["n"] == len({r.split(",")[0] for r in rows[1:]}) + 2 and out["plates"] == len(rows) - 1
    assert out["read_rate"] == 1.0 and out["missed"] == [] and out["misreads"] == 0
    assert out["other_reads"] == len(shows_plates.labels) > 0


# -- bench detect --------------------------------------------------------------------------------

class StandInDetector(ColourKeyedDetector):
    """In place of bench detect's OnnxPlateDetector: the scripted scene's rectangles, no model."""

    def __init__(self, model=None, threshold=None, threads=1):
        super().__init__()
        self.threshold = 0.5 if threshold is None else threshold
        self.input_size = (320, 320)
        self.model_path = "colour-keyed"


@pytest.fixture
def detect_folder(tmp_path, monkeypatch):
    """Labelled frames of the scripted scene (`plate_rows`: header and their rows), and beside them
    a frame that shows plates, one of bare road and two files that are not images, all unlabelled."""
    monkeypatch.setattr("edge.vision.detector.OnnxPlateDetector", StandInDetector)
    rows, shows_plates = write_scene_frames(tmp_path, ScriptedSource(n_vehicles=4, seed=5))
    (tmp_path / "broken-a.png").write_bytes(b"not an image at all")
    (tmp_path / "broken-b.jpg").write_bytes(b"")
    return SimpleNamespace(folder=tmp_path, plate_rows=rows, frames=len({r.split(",")[0] for r in rows[1:]}),
                           on_shows_plates=len(StandInDetector().predict([shows_plates.image])[0]))


def bench_detect(folder, capsys, rows: list[str]) -> tuple[dict, str]:
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    assert cli.main(["bench", "detect", str(folder), "--plate-check-chars", "0", "--json"]) == 0
    table = capsys.readouterr().out
    return json.loads(table.strip().splitlines()[-1]), table


def test_bench_detect_counts_false_alarms_on_plate_less_frames(detect_folder, capsys):
    d = detect_folder
    assert d.on_shows_plates > 0
    res, table = bench_detect(d.folder, capsys, d.plate_rows + ["shows-plates.png,,,,,", "bare-road.png,,,,,"])
    assert res["frames"] == d.frames + 2 and res["plate_less_frames"] == 2 and res["n"] == len(d.plate_rows) - 1
    assert res["plate_less_false_alarms"] == d.on_shows_plates and res["plate_less_frames_alarmed"] == 1
    assert res["false_alarms"] >= d.on_shows_plates and res["recall"] == 1.0
    assert "plate-less fp" in table and f"{d.on_shows_plates} (1/2)" in table


def test_bench_detect_skips_and_reports_unreadable_images(detect_folder, capsys):
    """As bench frames: a labelled file that does not decode is skipped and named, its plate counts
    as not found, and the run goes on; only a folder where nothing decodes is an error."""
    d = detect_folder
    broken = ["broken-a.png,10,10,40,16,ABC123", "broken-b.jpg,20,20,40,16,XYZ789"]
    res, table = bench_detect(d.folder, capsys, d.plate_rows + broken)
    plates = len(d.plate_rows) - 1
    assert res["skipped"] == 2 and res["unreadable"] == ["broken-a.png", "broken-b.jpg"]
    assert res["frames"] == d.frames and res["n"] == plates + 2
    assert res["recall"] == pytest.approx(plates / (plates + 2))
    assert res["missed"] == ["broken-a.png", "broken-b.jpg"]
    assert "did not decode" in table and "broken-b.jpg" in table
    (d.folder / "labels.csv").write_text("\n".join([HEADER] + broken) + "\n")
    assert cli.main(["bench", "detect", str(d.folder), "--plate-check-chars", "0"]) == 2
    assert "none of the 2 labelled images" in capsys.readouterr().err


def test_bench_detect_refuses_labels_naming_missing_images(detect_folder, capsys):
    d = detect_folder
    (d.folder / "labels.csv").write_text("\n".join(d.plate_rows + ["gone.png,1,1,40,16,ABC123"]) + "\n")
    assert cli.main(["bench", "detect", str(d.folder), "--plate-check-chars", "0"]) == 2
    assert "gone.png" in capsys.readouterr().err


def test_training_readers_take_plate_less_rows(tmp_path):
    """A `synth scene --frames-every` folder is training data too: the detector gets its plate-less
    frames as negatives (no boxes), the OCR's frame-plate reader skips them; neither stops on them."""
    from edge.training.detector_data import read_labels as detector_labels
    from edge.training.ocr_data import load_frame_plates

    write_folder(tmp_path, f"{HEADER}\na.jpg,10,20,60,30,ABC123\nb.jpg,,,,,\n")
    cv2.imwrite(str(tmp_path / "a.jpg"), np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8))
    assert detector_labels(tmp_path) == {"a.jpg": [(10.0, 20.0, 70.0, 50.0)], "b.jpg": []}
    plates = load_frame_plates(tmp_path, "all")
    assert plates.texts == ["ABC123"] and plates.files == ["a.jpg"]
    assert plates.images[0].shape[:2] == (30, 60)
