"""Synthetic plates: every state renders, labels are clean, crops are deterministic, compositing is exact."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from edge.synth.plates import (
    Degradation,
    PlateBatch,
    composite_plate,
    plate_box,
    plate_corners_3d,
    render_plate_images,
    render_plates,
)
from edge.synth import plates
from edge.synth.states import ALL_STATES, STATES

TEXT = re.compile(r"^[A-Z0-9]{2,9}$")


def test_all_50_states_and_dc_are_styled():
    assert len(ALL_STATES) == 51
    assert "dc" in ALL_STATES and "ca" in ALL_STATES
    for code, style in STATES.items():
        assert re.fullmatch(r"[a-z]{2}", code) and style.code == code
        assert style.formats and all(set(f) <= set("DL -*#") for f in style.formats)
        assert not style.picture or style.picture in plates._PICTURES


@pytest.mark.parametrize("state", ALL_STATES)
def test_every_state_renders_a_crop_and_a_clean_plate(state):
    rng = np.random.default_rng(ALL_STATES.index(state))
    batch = render_plates(3, rng, states=[state])
    assert isinstance(batch, PlateBatch) and len(batch) == 3
    assert batch.images.shape == (3, 64, 128, 3) and batch.images.dtype == np.uint8
    assert batch.states == [state] * 3
    assert all(TEXT.match(t) for t in batch.texts), batch.texts
    assert batch.images.std() > 10  # not blank

    (img, text, st), = render_plate_images(1, rng, height=60, states=[state])
    assert img.shape == (60, 120, 3) and img.dtype == np.uint8 and st == state and TEXT.match(text)
    # the serial is drawn: the middle band (characters) differs from the template's edge colour
    assert img[20:45].std() > 20


def test_crops_are_deterministic_for_a_seed_and_differ_across_seeds():
    a = render_plates(20, np.random.default_rng(5), size=(48, 96))
    b = render_plates(20, np.random.default_rng(5), size=(48, 96))
    c = render_plates(20, np.random.default_rng(6), size=(48, 96))
    assert a.images.shape == (20, 48, 96, 3)
    assert np.array_equal(a.images, b.images) and a.texts == b.texts and a.states == b.states
    assert a.texts != c.texts


def _magenta_plates(monkeypatch):
    """Replace the plate artwork by a solid known colour so the crop geometry can be measured."""
    import edge.synth.plates as plates

    def solid(style, layout, h, rng, extras=True, serial_fonts=("plate",)):
        img = np.zeros((h, 2 * h, 3), np.float32)
        img[:] = (255, 0, 255)
        return img

    monkeypatch.setattr(plates, "_draw_plate", solid)


def _extent(img):
    m = (img[:, :, 0] > 120) & (img[:, :, 1] < 50) & (img[:, :, 2] > 120)
    ys, xs = np.nonzero(m)
    return xs.min(), xs.max(), ys.min(), ys.max()


def test_clean_crop_is_the_whole_plate_with_a_small_even_margin(monkeypatch):
    _magenta_plates(monkeypatch)
    batch = render_plates(6, np.random.default_rng(1), size=(64, 128), degrade=False)
    for img in batch.images:
        x0, x1, y0, y1 = _extent(img)
        assert 1 <= x0 <= 4 and 123 <= x1 <= 126, (x0, x1)
        assert 0 <= y0 <= 3 and 60 <= y1 <= 63, (y0, y1)


def test_degraded_crops_keep_the_plate_tight_and_almost_whole(monkeypatch):
    _magenta_plates(monkeypatch)
    quiet = Degradation(motion_p=0, defocus_p=0, low_res_p=0, noise_sigma=0, jpeg_p=0, low_light_p=0, ir_p=0,
                        glare_p=0, dirt_p=0, occlusion_p=0)
    batch = render_plates(40, np.random.default_rng(2), size=(64, 128), degradation=quiet)
    for img in batch.images:
        x0, x1, y0, y1 = _extent(img)
        # margins are drawn from -2% (slightly cut) to 9% per side of the crop
        assert x0 <= 0.10 * 128 and x1 >= 0.90 * 128 - 1, (x0, x1)
        assert y0 <= 0.10 * 64 and y1 >= 0.90 * 64 - 1, (y0, y1)


def _only(**on) -> Degradation:
    off = dict(motion_p=0, defocus_p=0, low_res_p=0, noise_sigma=0, jpeg_p=0, low_light_p=0, ir_p=0, glare_p=0,
               dirt_p=0, occlusion_p=0, sharpen_p=0)
    return Degradation(**{**off, **on})


def test_each_degradation_does_what_it_says_and_ranges_are_validated():
    def sharp(b):
        return float(np.abs(np.diff(b.images.astype(np.float32), axis=2)).mean())

    rng = lambda: np.random.default_rng(2)  # noqa: E731
    base = render_plates(30, rng(), degradation=_only())
    assert sharp(render_plates(30, rng(), degradation=_only(defocus_p=1, defocus_sigma=1.5))) < 0.8 * sharp(base)
    assert sharp(render_plates(30, rng(), degradation=_only(motion_p=1, motion_px=6))) < 0.9 * sharp(base)
    assert sharp(render_plates(30, rng(), degradation=_only(sharpen_p=1))) > 1.1 * sharp(base)
    ir = render_plates(10, rng(), degradation=_only(ir_p=1)).images
    assert np.array_equal(ir[..., 0], ir[..., 1]) and np.array_equal(ir[..., 1], ir[..., 2])  # monochrome
    dark = render_plates(30, rng(), degradation=_only(low_light_p=1)).images
    assert dark.mean() < 0.7 * base.images.mean()
    noisy = render_plates(30, rng(), degradation=_only(noise_sigma=20))
    assert noisy.texts == base.texts  # same plates and poses: only the look changes
    assert np.abs(noisy.images.astype(np.float32) - base.images).mean() > 3
    with pytest.raises(ValidationError, match="yaw_deg"):
        Degradation(yaw_deg=-5)
    with pytest.raises(ValidationError, match="jpeg_p"):
        Degradation(jpeg_p=2)


def test_unknown_state_is_refused_by_name():
    with pytest.raises(ValueError, match="zz"):
        render_plates(2, np.random.default_rng(0), states=["zz"])


@pytest.mark.parametrize("pose", [(0, 0, 0), (30, 10, 5), (-40, -15, -8)])
def test_composite_puts_the_plate_exactly_at_its_corners(pose):
    """A plate of a known colour, warped onto corners, lands inside them and fills them."""
    bg = np.full((240, 320, 3), 90, np.uint8)
    plate = np.zeros((50, 100, 3), np.uint8)
    plate[:] = (255, 0, 255)
    corners = plate_corners_3d((160, 120), 140, *pose)
    out = composite_plate(bg, plate, corners)
    magenta = (out[:, :, 0] > 200) & (out[:, :, 1] < 60) & (out[:, :, 2] > 200)
    ys, xs = np.nonzero(magenta)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    tol = 3.5  # rounded plate corners (6% of the height) and the antialiased edge
    assert abs(xs.min() - lo[0]) <= tol and abs(xs.max() - hi[0]) <= tol
    assert abs(ys.min() - lo[1]) <= tol and abs(ys.max() - hi[1]) <= tol
    # and it fills the quadrilateral: area matches the corners' polygon area
    area = 0.5 * abs(np.dot(corners[:, 0], np.roll(corners[:, 1], 1)) - np.dot(corners[:, 1], np.roll(corners[:, 0], 1)))
    assert magenta.sum() == pytest.approx(area, rel=0.06)
    box = plate_box(corners)
    w, h = box[2] - box[0], box[3] - box[1]
    assert w == pytest.approx(2 * h)
    assert box[0] <= lo[0] + 1e-3 and box[2] >= hi[0] - 1e-3 and box[1] <= lo[1] + 1e-3 and box[3] >= hi[1] - 1e-3
    assert (out[0, 0] == 90).all()  # far from the plate nothing changed


def test_cli_writes_crops_and_labels_like_the_real_folder(tmp_path, capsys):
    from edge.cli import main

    out = tmp_path / "crops"
    assert main(["synth", "plates", "--count", "25", "--out", str(out), "--seed", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["count"] == 25 and result["crops_per_s"] > 0
    rows = list(csv.DictReader(open(out / "labels.csv")))
    assert len(rows) == 25 and list(rows[0]) == ["file", "state", "plate"]
    for r in rows:
        assert (out / r["file"]).is_file() and r["state"] in ALL_STATES and TEXT.match(r["plate"])


def test_motion_blur_from_speed_and_shutter():
    d = Degradation(speed_kmh=(60, 60), shutter_s=(1 / 500, 1 / 500))
    # 16.7 m/s x 2 ms = 3.3 cm over a 0.305 m plate drawn 128 px wide
    assert d.motion_length_px(0.5, 0.5, 128) == pytest.approx(60 / 3.6 * 0.002 * 128 / 0.305)
    rng = lambda: np.random.default_rng(4)  # noqa: E731
    sharp = lambda b: float(np.abs(np.diff(b.images.astype(np.float32), axis=2)).mean())  # noqa: E731
    slow = render_plates(20, rng(), degradation=_only(motion_p=1, speed_kmh=(10, 10), shutter_s=(1e-4, 1e-4)))
    fast = render_plates(20, rng(), degradation=_only(motion_p=1, speed_kmh=(90, 90), shutter_s=(1 / 250, 1 / 250)))
    assert sharp(fast) < 0.7 * sharp(slow)
    with pytest.raises(ValidationError, match="go together"):
        Degradation(speed_kmh=(10, 20))


def test_cli_degradation_file_is_validated_by_field(tmp_path, capsys):
    from edge.cli import main

    bad = tmp_path / "d.yaml"
    bad.write_text("ir_pp: 1\n")
    assert main(["synth", "plates", "--count", "2", "--out", str(tmp_path / "o"), "--degradation", str(bad)]) == 2
    assert "ir_pp" in capsys.readouterr().err


def test_batch_corners_are_where_the_plate_lands(monkeypatch):
    _magenta_plates(monkeypatch)
    batch = render_plates(10, np.random.default_rng(8), size=(64, 128), degradation=_only())
    assert batch.corners.shape == (10, 4, 2)
    for img, c in zip(batch.images, batch.corners):
        x0, x1, y0, y1 = _extent(img)
        lo, hi = np.clip(c.min(axis=0), 0, [127, 63]), np.clip(c.max(axis=0), 0, [127, 63])
        assert abs(x0 - lo[0]) <= 2 and abs(x1 - hi[0]) <= 2 and abs(y0 - lo[1]) <= 2 and abs(y1 - hi[1]) <= 2


def test_small_stacked_characters_are_drawn_but_left_out_of_the_label():
    import dataclasses

    from edge.synth.plates import random_serial

    style = dataclasses.replace(STATES["id"], stacked=1.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        layout, text = random_serial(style, rng)
        if layout.startswith("^"):
            assert text == "".join(ch for ch in layout[3:] if ch.isalnum())
            assert layout[1:3].isalnum() and len(text) == sum(ch.isalnum() for ch in layout) - 2


def test_pictures_between_groups_are_drawn_in_the_gap_and_left_out_of_the_label():
    # Oregon's tree and Alaska's flag sit where a reader expects a gap; the label has none of it
    rng = np.random.default_rng(4)
    for code in ("or", "ak"):
        layout, text = plates.random_serial(STATES[code], rng)
        assert "#" in layout and text.isalnum() and len(text) == 6
    gap = plates._draw_plate(STATES["oh"], "ABC 1234", 80, np.random.default_rng(1), extras=False)
    for kind in plates._PICTURES:
        style = dataclasses.replace(STATES["oh"], picture=kind)
        pic = plates._draw_plate(style, "ABC#1234", 80, np.random.default_rng(1), extras=False)
        diff = np.abs(pic - gap).max(axis=2) > 40
        cols = np.nonzero(diff.any(axis=0))[0]
        assert cols.size, kind  # something was drawn ...
        mid = (cols.min() + cols.max()) / 2
        assert 50 < mid < 110, (kind, cols.min(), cols.max())  # ... between the groups (plate is 160 wide)


def test_training_puts_pictures_in_gaps_or_where_letters_meet_digits():
    from edge.training.ocr import with_picture

    rng = np.random.default_rng(0)
    assert with_picture("ABC 123", rng) == "ABC#123"
    assert with_picture("12-AB", rng) == "12#AB"
    assert with_picture("1ABC234", rng) in ("1#ABC234", "1ABC#234")
    assert with_picture("AAAA", rng) == "AAAA"


def test_serial_faces_differ_keep_the_plate_width_and_leave_the_default_stream_alone():
    # Every face is a real, different drawing of the same serial at about the same width, so a
    # model trained on a pool of faces sees the glyph shapes vary and nothing else.
    ink = {}
    for face in plates.SERIAL_FONTS:
        img = plates._draw_plate(STATES["oh"], "D0A4 IT1J", 80, np.random.default_rng(1), extras=False,
                                 serial_fonts=(face,))
        ink[face] = (img.mean(axis=2) < 128)  # Ohio: dark serial on a light plate
        cols = np.nonzero(ink[face][20:60].any(axis=0))[0]
        assert cols.size and 0.6 * 160 < cols.max() - cols.min() < 0.95 * 160, (face, cols.min(), cols.max())
        glyphs = plates._master_glyphs(face)
        assert all(g.any() for g in glyphs.values()), face  # every plate character has ink
    faces = list(plates.SERIAL_FONTS)
    for i, a in enumerate(faces):
        for b in faces[i + 1 :]:
            assert (ink[a] != ink[b]).mean() > 0.02, (a, b)
    # with one face the random stream is not touched: the pool's default is the old renderer
    one = render_plates(8, np.random.default_rng(5), size=(48, 144))
    same = render_plates(8, np.random.default_rng(5), size=(48, 144), serial_fonts=("plate",))
    assert np.array_equal(one.images, same.images) and one.texts == same.texts
    mixed = render_plates(8, np.random.default_rng(5), size=(48, 144), serial_fonts=plates.SERIAL_FONTS)
    assert not np.array_equal(one.images, mixed.images)


def test_unknown_serial_face_is_refused_by_name():
    with pytest.raises(ValueError, match="comic-sans"):
        render_plates(1, np.random.default_rng(0), serial_fonts=("plate", "comic-sans"))
    with pytest.raises(ValueError, match="serial_fonts"):
        render_plate_images(1, np.random.default_rng(0), serial_fonts=())


def test_training_cli_checks_its_serial_faces():
    pytest.importorskip("torch")  # the training CLI needs the train extra
    from edge.training.ocr import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--serial-fonts", "plate,comic-sans"])
    assert parse_args(["--serial-fonts", "plate, plate-din"]).serial_fonts == ("plate", "plate-din")


def test_cli_draws_serials_in_the_faces_asked_for_and_refuses_unknown_ones(tmp_path, capsys):
    from edge.cli import main

    args = ["synth", "plates", "--count", "6", "--seed", "3", "--clean"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--serial-fonts", "plate-routed"]) == 0
    a = sorted((tmp_path / "a").glob("*.png"))
    b = sorted((tmp_path / "b").glob("*.png"))
    assert [p.name for p in a] == [p.name for p in b]
    assert (tmp_path / "a" / "labels.csv").read_text() == (tmp_path / "b" / "labels.csv").read_text()
    assert any(p.read_bytes() != q.read_bytes() for p, q in zip(a, b))  # same plates, another face
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "c"), "--serial-fonts", "comic-sans"]) == 2
    assert "comic-sans" in capsys.readouterr().err
