"""Synthetic US licence plates: clean full plates, degraded OCR crops, and perspective compositing.

Three entry points:

* `render_plates(n, rng, size=(64, 128), states=None, degrade=True) -> PlateBatch`: labelled plate
  crops at OCR input size, a tight-ish crop around the whole plate with jitter, like the real crops
  (whole plate visible, roughly 2:1), with where each plate's corners landed. The OCR training source.
* `render_plate_images(n, rng, height=120, states=None)`: clean, un-warped full plates
  (BGR, height x 2*height) with their text and state, for compositing into scenes.
* `composite_plate(background, plate, corners)`: warps a plate onto four corners of a frame
  (top-left, top-right, bottom-right, bottom-left), rounded corners masked; `plate_box(corners)`
  gives the axis-aligned 2:1 box (w = 2h) used by the real frame labels.

Speed comes from caching: glyphs are rasterised once per font and size into numpy masks (Pillow only
at cache build time), each state's background/header/slogan is a cached template, and a plate is the
template plus a few numpy blits. Degradations run per batch where they can (noise, lighting, dirt)
and per crop only where OpenCV needs it (warp, blur kernels, JPEG).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.synth.states import ALL_STATES, STATES, StateStyle

FONT_DIR = Path(__file__).parent / "fonts"
FONT_FILES = {
    "plate": "RobotoCondensed-Bold.ttf",
    "bold": "RobotoCondensed-Bold.ttf",
    "regular": "RobotoCondensed-Regular.ttf",
    "italic": "RobotoCondensed-BoldItalic.ttf",
    "slab": "RobotoSlab-Bold.otf",
    "script": "Lobster.otf",
    # other condensed gothic faces for the serial (training variety; see SERIAL_FONTS)
    "plate-bebas": "BebasNeue-Bold.otf",
    "plate-din": "OSP-DIN.ttf",
    "plate-routed": "routed-gothic-narrow.ttf",
}
# Faces a serial can be drawn in. Real plates are stamped or printed with many state-specific dies
# (most a condensed gothic, but D, 0, A, 4, I, T, J differ from die to die); a recognizer that has
# seen one face learns that face's details. Renders default to ("plate",) alone, so a seed gives
# the same plates as before; training passes a pool.
SERIAL_FONTS = ("plate", "plate-bebas", "plate-din", "plate-routed")
# Extra stroke weight (pixels at the 160 px master size) a face needs to look like an embossed
# serial: Routed Gothic is a monoline drafting face.
_FONT_BASE_WEIGHT = {"plate-routed": 5}
PLATE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SERIAL_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # most states skip I, O and Q in issued serials
DIGITS = "0123456789"


# --------------------------------------------------------------------------------------- glyphs


@lru_cache(maxsize=1024)
def _hex_bgr_cached(color: str) -> np.ndarray:
    c = color.lstrip("#")
    out = np.array([int(c[4:6], 16), int(c[2:4], 16), int(c[0:2], 16)], np.float32)
    out.flags.writeable = False
    return out


def _hex_bgr(color: str) -> np.ndarray:
    return _hex_bgr_cached(color)


@lru_cache(maxsize=64)
def _pil_font(name: str, size: int):
    from PIL import ImageFont  # only needed while caches fill

    return ImageFont.truetype(str(FONT_DIR / FONT_FILES[name]), size)


def _raster(text: str, font_name: str, size: int) -> np.ndarray:
    """Text as an 8-bit ink mask, cropped to the font's full line box."""
    from PIL import Image, ImageDraw

    font = _pil_font(font_name, size)
    x0, y0, x1, y1 = font.getbbox(text)
    img = Image.new("L", (max(1, x1 - min(0, x0) + 2), max(1, y1 + 2)), 0)
    ImageDraw.Draw(img).text((-min(0, x0) + 1, 0), text, font=font, fill=255)
    return np.asarray(img)


@lru_cache(maxsize=16)
def _master_glyphs(font_name: str) -> dict[str, np.ndarray]:
    """Every plate character at a large size, cropped to a common cap box (so heights agree)."""
    size = 160
    font = _pil_font(font_name, size)
    top = min(font.getbbox(c)[1] for c in PLATE_CHARS)
    bottom = max(font.getbbox(c)[3] for c in PLATE_CHARS)
    out = {}
    for ch in PLATE_CHARS:
        m = _raster(ch, font_name, size)[top:bottom]
        cols = np.nonzero(m.max(axis=0) > 0)[0]
        out[ch] = m[:, cols[0] : cols[-1] + 1] if len(cols) else m[:, :1]
    return out


@lru_cache(maxsize=16)
def _width_norm(font_name: str) -> float:
    """Width factor that gives a serial face the mean glyph aspect of the default "plate" face, so a
    layout's width_scale means the same plate width in any face (1.0 for "plate" itself)."""
    if font_name == "plate" or not font_name.startswith("plate"):
        return 1.0

    def aspect(name: str) -> float:
        g = _master_glyphs(name)
        return float(np.mean([m.shape[1] / m.shape[0] for m in g.values()]))

    return aspect("plate") / aspect(font_name)


@lru_cache(maxsize=32)
def _weighted_glyphs(font_name: str, weight: int) -> dict[str, np.ndarray]:
    """Master glyphs with strokes thinned (weight < 0) or thickened (> 0): plate dies differ in weight."""
    base = _master_glyphs(font_name)
    weight += _FONT_BASE_WEIGHT.get(font_name, 0)
    if weight == 0:
        return base
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(weight) + 1, 2 * abs(weight) + 1))
    op = cv2.dilate if weight > 0 else cv2.erode
    out = {}
    for ch, m in base.items():
        padded = cv2.copyMakeBorder(m, 0, 0, abs(weight), abs(weight), cv2.BORDER_CONSTANT, value=0)
        out[ch] = op(padded, k)
    return out


@lru_cache(maxsize=512)
def glyph_atlas(font_name: str, cap_h: int, width_scale: float = 1.0, weight: int = 0) -> dict[str, np.ndarray]:
    """float32 ink masks in [0, 1], each `cap_h` tall, for A-Z0-9 in one font and size.

    `weight` thins (-) or thickens (+) the strokes by that many pixels at the 160 px master size.
    """
    out = {}
    width_scale *= _width_norm(font_name)
    for ch, m in _weighted_glyphs(font_name, weight).items():
        w = max(1, int(round(m.shape[1] * cap_h / m.shape[0] * width_scale)))
        out[ch] = cv2.resize(m, (w, cap_h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return out


@lru_cache(maxsize=512)
def text_mask(text: str, font_name: str, cap_h: int, max_w: int | None = None) -> np.ndarray:
    """A line of text (headers, slogans, stickers) as a float32 ink mask about `cap_h` tall (caps)."""
    size = 96
    font = _pil_font(font_name, size)
    cap = font.getbbox("H")
    m = _raster(text, font_name, size)
    rows = np.nonzero(m.max(axis=1) > 0)[0]
    cols = np.nonzero(m.max(axis=0) > 0)[0]
    if not len(rows):
        return np.zeros((cap_h, 1), np.float32)
    m = m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = cap_h / max(1, cap[3] - cap[1])
    h = max(1, int(round(m.shape[0] * scale)))
    w = max(1, int(round(m.shape[1] * scale)))
    if max_w is not None and w > max_w:
        h = max(1, int(round(h * max_w / w)))
        w = max_w
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _lerp(region: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> None:
    """region += (color - region) * alpha, in place; region (h, w, 3) float32 whose rows are contiguous.

    cv2.blendLinear with per-pixel weights: numpy broadcasting over a trailing axis of 3 is several times slower.
    """
    h, w = alpha.shape
    alpha = np.ascontiguousarray(alpha, np.float32)
    cv2.blendLinear(region, _solid(np.asarray(color, np.float32).tobytes(), h, w), 1.0 - alpha, alpha, dst=region)


@lru_cache(maxsize=512)
def _solid(color: bytes, h: int, w: int) -> np.ndarray:  # bounded: up to ~64 KB each
    out = np.empty((h, w, 3), np.float32)
    out[:] = np.frombuffer(color, np.float32)
    out.flags.writeable = False
    return out


def _blend(img: np.ndarray, mask: np.ndarray, x: int, y: int, color: np.ndarray, opacity: float = 1.0) -> None:
    """Alpha-blend a colour through `mask` into float32 `img` at (x, y), clipped to the image."""
    h, w = mask.shape
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    a = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    _lerp(img[y0:y1, x0:x1], color, a * opacity if opacity != 1.0 else a)


@lru_cache(maxsize=4096)
def atlas_text(text: str, font_name: str, cap_h: int, max_w: int | None = None, width_scale: float = 0.9) -> np.ndarray:
    """A short A-Z0-9 word from the cached glyph atlas (no Pillow call): for per-plate random text."""
    atlas = glyph_atlas(font_name, max(3, cap_h), width_scale)
    gap = max(1, cap_h // 8)
    parts = []
    for ch in text:
        parts.append(atlas[ch] if ch in atlas else np.zeros((cap_h, max(1, cap_h // 3)), np.float32))
        parts.append(np.zeros((cap_h, gap), np.float32))
    m = np.hstack(parts[:-1]) if parts else np.zeros((cap_h, 1), np.float32)
    if max_w is not None and m.shape[1] > max_w:
        m = cv2.resize(m, (max_w, m.shape[0]), interpolation=cv2.INTER_AREA)
    return m


# ------------------------------------------------------------------------------------ templates


def _gradient(stops: Sequence[str], h: int, w: int) -> np.ndarray:
    cols = np.stack([_hex_bgr(c) for c in stops])
    pos = np.linspace(0, 1, len(cols))
    t = np.linspace(0, 1, h)
    rows = np.stack([np.interp(t, pos, cols[:, k]) for k in range(3)], axis=1).astype(np.float32)
    return np.repeat(rows[:, None, :], w, axis=1)


def _paint_art(img: np.ndarray, art: str, color: np.ndarray, rng: np.random.Generator) -> None:
    """Background art layers: rough shapes that give each state its colour layout."""
    H, W = img.shape[:2]
    c = tuple(float(v) for v in color)
    layer = img.copy()
    opacity = 0.55

    def ridge(base: float, amp: float, n: int = 9) -> np.ndarray:
        xs = np.linspace(0, W, n)
        ys = base * H - rng.uniform(0, amp * H, n)
        ys[0] = ys[-1] = base * H
        pts = np.concatenate([np.stack([xs, ys], 1), [[W, H], [0, H]]]).astype(np.int32)
        return pts

    if art in ("mountains", "mountains_faint"):
        cv2.fillPoly(layer, [ridge(0.78, 0.35)], c, cv2.LINE_AA)
        opacity = 0.35 if art == "mountains_faint" else 0.6
    elif art == "mountains_top":
        pts = ridge(0.3, 0.2, 11)
        pts[-2:] = [[W, 0], [0, 0]]
        band = img.copy()
        cv2.fillPoly(band, [pts], c, cv2.LINE_AA)
        layer = band
        opacity = 0.9
    elif art == "hills":
        for k, base in enumerate((0.86, 0.94)):
            cv2.ellipse(layer, (int(W * (0.3 + 0.4 * k)), int(H * (base + 0.25))), (int(W * 0.6), int(H * 0.3)),
                        0, 180, 360, c, -1, cv2.LINE_AA)
    elif art == "sun":
        cv2.circle(layer, (int(W * 0.75), int(H * 0.45)), int(H * 0.22), (60, 160, 240), -1, cv2.LINE_AA)
        opacity = 0.45
    elif art == "waves":
        for k in range(3):
            y = H * (0.7 + 0.09 * k)
            xs = np.arange(0, W + 1, max(1, W // 40))
            ys = y + np.sin(xs / W * 6 * np.pi + k) * H * 0.03
            cv2.polylines(layer, [np.stack([xs, ys], 1).astype(np.int32)], False, c, max(1, H // 30), cv2.LINE_AA)
    elif art == "rainbow":
        for k, col in enumerate([(60, 60, 230), (40, 160, 250), (60, 220, 250), (90, 200, 90), (220, 150, 60)]):
            cv2.ellipse(layer, (W // 2, int(H * 0.95)), (int(W * (0.48 - 0.035 * k)), int(H * (0.75 - 0.05 * k))),
                        0, 180, 360, col, max(2, H // 18), cv2.LINE_AA)
        opacity = 0.5
    elif art in ("top_band",):
        cv2.rectangle(layer, (0, 0), (W, int(H * 0.22)), c, -1)
        opacity = 1.0
    elif art in ("bottom_band", "bottom_band_yellow"):
        col = (40, 200, 245) if art == "bottom_band_yellow" else c
        cv2.rectangle(layer, (0, int(H * 0.8)), (W, H), col, -1)
        opacity = 1.0
    elif art == "flag":  # a small flag panel in the lower left corner
        cv2.rectangle(layer, (int(W * 0.02), int(H * 0.74)), (int(W * 0.1), int(H * 0.96)), c, -1)
        opacity = 0.9
    elif art == "dc_flag":
        for y in (0.24, 0.3):
            cv2.rectangle(layer, (int(W * 0.62), int(H * y)), (int(W * 0.74), int(H * (y + 0.035))), c, -1)
        opacity = 0.9
    elif art == "md_flag":
        cv2.rectangle(layer, (0, int(H * 0.25)), (int(W * 0.1), int(H * 0.8)), c, -1)
        cv2.rectangle(layer, (int(W * 0.9), int(H * 0.25)), (W, int(H * 0.8)), (40, 40, 170), -1)
        opacity = 0.8
    elif art in ("emblem", "diamond", "peach", "orange", "torch", "arch", "tree", "horse", "pine"):
        cx, cy, r = W // 2, int(H * 0.5), int(H * 0.25)
        if art == "diamond":
            pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
            cv2.fillPoly(layer, [pts], c, cv2.LINE_AA)
        elif art == "arch":
            cv2.ellipse(layer, (cx, int(H * 0.85)), (int(W * 0.3), int(H * 0.6)), 0, 180, 360, c, max(2, H // 15),
                        cv2.LINE_AA)
        elif art in ("tree", "pine"):
            x = int(W * (0.5 if art == "tree" else 0.08))
            pts = np.array([[x, int(H * 0.25)], [x + int(H * 0.15), int(H * 0.75)], [x - int(H * 0.15), int(H * 0.75)]],
                           np.int32)
            cv2.fillPoly(layer, [pts], c, cv2.LINE_AA)
        else:
            cv2.circle(layer, (cx, cy), r, c, -1, cv2.LINE_AA)
        opacity = 0.45
    elif art == "skyline":
        x = 0
        while x < W:
            bw = int(rng.uniform(0.04, 0.09) * W)
            bh = rng.uniform(0.08, 0.25) * H
            cv2.rectangle(layer, (x, int(H * 0.82 - bh)), (x + bw, int(H * 0.82)), c, -1)
            x += bw + int(W * 0.01)
        opacity = 0.5
    elif art == "fading_flag":
        cv2.rectangle(layer, (0, int(H * 0.2)), (int(W * 0.25), int(H * 0.35)), c, -1)
        opacity = 0.35
    elif art == "trees":
        for x in np.linspace(0.05, 0.95, 7):
            xc = int(W * (x + rng.uniform(-0.03, 0.03)))
            th = rng.uniform(0.2, 0.35) * H
            pts = np.array([[xc, int(H * 0.82 - th)], [xc + int(th * 0.3), int(H * 0.82)], [xc - int(th * 0.3), int(H * 0.82)]],
                           np.int32)
            cv2.fillPoly(layer, [pts], c, cv2.LINE_AA)
        opacity = 0.5
    img += (layer - img) * opacity


_SPECIALTY_SLOGANS = ("SUPPORT EDUCATION", "VETERAN", "SAVE THE BAY", "PROTECT WILDLIFE", "FIREFIGHTER",
                      "ALUMNI ASSOCIATION", "KIDS FIRST", "ANIMAL FRIEND", "STATE PARKS", "BREAST CANCER AWARENESS",
                      "AGRICULTURE", "LAKE TAHOE", "IN GOD WE TRUST", "PURPLE HEART", "ARTS COUNCIL")
_SPECIALTY_ART = ("mountains", "sun", "waves", "hills", "trees", "rainbow", "emblem", "skyline", "diamond")
_DARK_INKS = ("#111111", "#1b2a5a", "#13235b", "#6b1d28", "#0e5a2d", "#3a1b5a", "#1b4a6b")
N_STANDARD_VARIANTS, N_SPECIALTY_VARIANTS = 3, 6


@lru_cache(maxsize=2048)
def _template(code: str, h: int, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """A state's blank plate (background, art, header, slogan) as uint8 BGR h x 2h, and its serial ink.

    Variants below N_STANDARD_VARIANTS are the standard issue (slightly different art); the others are
    specialty plates of that state: other colours, art and slogan, same header.
    """
    style = STATES[code]
    w = 2 * h
    rng = np.random.default_rng([variant, h, ALL_STATES.index(code)])
    bg, arts, art_ink, ink = style.bg, style.art, _hex_bgr(style.art_ink), _hex_bgr(style.ink)
    header_ink, slogan, slogan_ink = style.header_ink, style.slogan, style.slogan_ink or style.header_ink
    if variant >= N_STANDARD_VARIANTS:
        vr = np.random.default_rng([variant, ALL_STATES.index(code)])  # same design at every size
        light = vr.uniform(200, 255, (3, 3))
        light[vr.integers(3), :] = vr.uniform(120, 255, 3)
        bg = tuple("#%02x%02x%02x" % tuple(int(v) for v in c) for c in light)
        arts = tuple(vr.choice(_SPECIALTY_ART, int(vr.integers(1, 3)), replace=False))
        art_ink = vr.uniform(40, 220, 3).astype(np.float32)
        ink_hex = _DARK_INKS[int(vr.integers(len(_DARK_INKS)))]
        ink = _hex_bgr(ink_hex)
        header_ink = slogan_ink = ink_hex
        slogan = _SPECIALTY_SLOGANS[int(vr.integers(len(_SPECIALTY_SLOGANS)))]
    img = _gradient(bg, h, w)
    for art in arts:
        _paint_art(img, art, art_ink, rng)
    # a little low-frequency unevenness: printed sheeting is never perfectly flat
    blot = cv2.resize(rng.normal(0, 1, (4, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += blot[:, :, None] * 4.0
    header_font = {"bold": "bold", "slab": "slab", "script": "script", "italic": "italic"}[style.header_font]
    cap = 0.15 if header_font == "script" else 0.12
    hm = text_mask(style.name, header_font, max(3, int(round(h * cap))), max_w=int(w * 0.78))
    y = int(round(h * 0.045)) if header_font != "script" else int(round(h * 0.02))
    _blend(img, hm, (w - hm.shape[1]) // 2, y, _hex_bgr(header_ink))
    if slogan:
        sm = text_mask(slogan, "bold" if slogan.isupper() else "italic", max(3, int(round(h * 0.075))),
                       max_w=int(w * 0.8))
        _blend(img, sm, (w - sm.shape[1]) // 2, int(round(h * 0.92)) - sm.shape[0], _hex_bgr(slogan_ink))
    out = np.clip(img, 0, 255).astype(np.uint8)
    out.flags.writeable = False
    ink = np.array(ink, np.float32)
    ink.flags.writeable = False
    return out, ink


# ---------------------------------------------------------------------------------- plate texts


def random_serial(style: StateStyle, rng: np.random.Generator) -> tuple[str, str]:
    """(layout, text): layout keeps gaps '-' ' ' '*' for drawing, text is the label (A-Z0-9 only).

    A leading '^xy' in the layout marks two small stacked characters x over y, drawn before the serial
    but left out of the text: the real crop labels leave such side characters out (Idaho's small "6C"
    beside "8862" is labelled "8862").
    """
    u = rng.random(16)  # one draw per plate: the serial is built from these
    if u[0] < 0.07:  # vanity plate
        n = 2 + int(u[1] * 6)
        chars = "".join(PLATE_CHARS[int(v * len(PLATE_CHARS))] for v in u[4 : 4 + n])
        if n >= 5 and u[2] < 0.3:
            k = 2 + int(u[3] * (n - 3))
            return chars[:k] + " " + chars[k:], chars
        return chars, chars
    fmt = style.formats[int(u[1] * len(style.formats))]
    out = []
    for f, v in zip(fmt, u[4:]):
        if f == "D":
            out.append(DIGITS[int(v * 10)])
        elif f == "L":
            out.append(SERIAL_LETTERS[int(v * len(SERIAL_LETTERS))])
        else:
            out.append(f)
    layout = "".join(out)
    if style.stacked and u[2] < style.stacked:
        # a county or class code printed small, one character over the other, in place of the first group
        stack = DIGITS[1 + int(u[3] * 9)] + SERIAL_LETTERS[int(u[15] * len(SERIAL_LETTERS))]
        rest = layout.split(" ", 1)[1] if " " in layout else layout[2:]
        layout = "^" + stack + rest
    text = "".join(ch for ch in (layout[3:] if layout.startswith("^") else layout) if ch.isalnum())
    return layout, text


# ---------------------------------------------------------------------------------- plate drawing

_STICKER_COLORS = np.array([[40, 40, 220], [30, 200, 250], [60, 170, 60], [200, 110, 30], [200, 200, 200],
                            [40, 120, 250], [170, 60, 170], [250, 250, 250]], np.float32)
_STICKER_LIGHT = [bool(c.mean() > 110) for c in _STICKER_COLORS]


def _draw_plate(style: StateStyle, layout: str, h: int, rng: np.random.Generator, extras: bool = True,
                serial_fonts: Sequence[str] = ("plate",)) -> np.ndarray:
    """One plate as float32 BGR (h x 2h): template, serial, stickers, bolts and maybe a frame.

    The serial's face is drawn from `serial_fonts` (the random stream is only used for it when
    there is a choice, so the default keeps every seed's plates as they were)."""
    face = serial_fonts[0] if len(serial_fonts) == 1 else serial_fonts[int(rng.integers(len(serial_fonts)))]
    w = 2 * h
    u = rng.random(8)  # one draw for this plate's layout choices
    if u[0] < 0.8:
        variant = int(u[0] / 0.8 * N_STANDARD_VARIANTS)
    else:
        variant = N_STANDARD_VARIANTS + int((u[0] - 0.8) / 0.2 * N_SPECIALTY_VARIANTS)
    tmpl, ink = _template(style.code, h, min(variant, N_STANDARD_VARIANTS + N_SPECIALTY_VARIANTS - 1))
    img = tmpl.astype(np.float32)
    stacked = ""
    if layout.startswith("^"):
        stacked, layout = layout[1:3], layout[3:]
    cap_h = max(6, int(round(h * (0.42 + 0.08 * u[1]))))
    width_scale = round(round((0.68 + 0.2 * u[2]) / 0.04) * 0.04, 2)
    weight = int(u[6] * 5) - 2  # -2..2: thin to heavy strokes
    atlas = glyph_atlas(face, cap_h, width_scale, weight)
    gap_unit = cap_h * (0.05 + 0.06 * u[3])
    small_h = max(4, int(round(cap_h * 0.46)))
    small = glyph_atlas(face, small_h, 0.9) if stacked else None
    pic = (style.picture or _PICTURES[int(u[7] * 997) % len(_PICTURES)]) if "#" in layout else ""
    pic_w = _PICTURE_WIDTH.get(pic, 0.6)

    # measure the serial, shrink characters if it does not fit ~88% of the width
    def widths(units: dict) -> list[float]:
        ws = []
        for ch in layout:
            if ch.isalnum():
                ws.append(units[ch].shape[1] + gap_unit)
            elif ch == " ":
                ws.append(cap_h * 0.28)
            elif ch in "-*":
                ws.append(cap_h * 0.42)
            elif ch == "#":
                ws.append(cap_h * pic_w)
        return ws

    ws = widths(atlas)
    stack_w = (max(small[stacked[0]].shape[1], small[stacked[1]].shape[1]) + cap_h * 0.15) if stacked else 0.0
    # a vertical class word at the left edge (Vermont's "TRK"), never part of the label
    side = _SIDE_WORDS[int(u[7] / 0.06 * len(_SIDE_WORDS))] if u[7] < 0.06 and not stacked else ""
    fit = 0.8 if side else 0.88
    total = sum(ws) + stack_w
    if total > fit * w:
        width_scale = max(0.4, round(int(width_scale * fit * w / total / 0.04) * 0.04, 2))
        atlas = glyph_atlas(face, cap_h, width_scale, weight)
        gap_unit *= 0.6
        ws = widths(atlas)
        total = sum(ws) + stack_w
    x = (w - total) / 2 + (u[4] - 0.5) * 0.04 * w
    y = int(round(h * 0.5 - cap_h * 0.5 + (u[5] * 0.07 - 0.03) * h))

    alpha = np.zeros((h, w), np.float32)

    def put(mask: np.ndarray, px: int, py: int) -> None:
        mh, mw = mask.shape
        x0, y0, x1, y1 = max(0, px), max(0, py), min(w, px + mw), min(h, py + mh)
        if x1 > x0 and y1 > y0:
            np.maximum(alpha[y0:y1, x0:x1], mask[y0 - py : y1 - py, x0 - px : x1 - px], out=alpha[y0:y1, x0:x1])

    if stacked:
        put(small[stacked[0]], int(x), y)
        put(small[stacked[1]], int(x), y + cap_h - small_h)
        x += stack_w
    if side:
        letter_h = max(3, cap_h // len(side) - 1)
        letters = glyph_atlas("bold", letter_h, 0.9)
        for k, ch in enumerate(side):
            put(letters[ch], int(w * 0.03), y + k * (letter_h + 1))
    emblems, pictures = [], []
    for ch, cw in zip(layout, ws):
        if ch.isalnum():
            put(atlas[ch], int(round(x + gap_unit / 2)), y)
        elif ch == "-":
            bar = np.ones((max(1, cap_h // 9), max(2, int(cw * 0.6))), np.float32)
            put(bar, int(round(x + cw * 0.2)), y + cap_h // 2 - bar.shape[0] // 2)
        elif ch == "*":
            emblems.append((int(round(x + cw / 2)), y + cap_h // 2, max(2, int(cw * 0.4))))
        elif ch == "#":
            pictures.append((x + cw / 2, y + cap_h / 2))
        x += cw

    # embossed characters throw a soft shadow below-right
    s = max(1, h // 50)
    r0, r1 = max(0, y - s), min(h, y + cap_h + 2 * s)  # only the serial's rows carry ink
    a = alpha[r0:r1]
    shadow = np.zeros_like(a)
    shadow[s:, s:] = a[:-s, :-s] * 0.35
    band = img[r0:r1]
    _lerp(band, ink * 0.3, shadow)
    _lerp(band, ink, a)
    for ex, ey, er in emblems:
        art = tuple(float(v) for v in _hex_bgr(style.art_ink))
        if style.code == "tx":
            pts = [(ex + er * np.cos(t), ey - er * np.sin(t)) for t in np.linspace(np.pi / 2, np.pi / 2 + 4 * np.pi, 6)]
            cv2.fillPoly(img, [np.array(pts, np.int32)], tuple(float(v) for v in ink), cv2.LINE_AA)
        else:
            cv2.circle(img, (ex, ey), er, art, -1, cv2.LINE_AA)
    for cx, cy in pictures:
        _draw_picture(img, pic, cx, cy, cap_h, rng)

    if extras:
        _draw_extras(img, style, rng)
    return img


# Pictures printed between the character groups ('#' in a layout): Oregon's Douglas fir, Alaska's
# flag, the keystones, hearts, state outlines and small coloured logos of specialty plates. Real
# plates put them where a reader expects a gap, and a reader that never saw one reads the picture as
# a character (a tree as 0, a flag as a dropped letter) or loses the characters beside it.
_PICTURES = ("tree", "flag", "logo", "outline", "heart", "keystone", "sticker")
_PICTURE_WIDTH = {"tree": 0.8, "flag": 0.8, "logo": 0.55, "outline": 0.7, "heart": 0.85, "keystone": 0.6,
                  "sticker": 0.5}
_PICTURE_COLORS = np.array([[40, 110, 40], [150, 60, 20], [30, 120, 230], [40, 40, 200], [30, 190, 240],
                            [120, 40, 120], [30, 30, 30], [200, 150, 60]], np.float32)  # BGR


def _draw_picture(img: np.ndarray, kind: str, cx: float, cy: float, cap_h: int, rng: np.random.Generator) -> None:
    """One picture centred at (cx, cy) between character groups, sized from the character height."""
    v = rng.random(6)
    col = tuple(float(c) for c in _PICTURE_COLORS[int(v[0] * len(_PICTURE_COLORS))])
    s = cap_h * (0.8 + 0.4 * v[1])  # picture height
    aa = cv2.LINE_AA
    if kind == "tree":  # tall conifer, taller than the characters, with a trunk
        top, bottom = cy - s * 0.7, cy + s * 0.62
        for k in range(4):  # stacked tiers, widest at the bottom
            t0 = top + (bottom - top) * k / 4.5
            t1 = top + (bottom - top) * (k + 1.6) / 4.5
            half = s * (0.12 + 0.07 * k)
            pts = np.array([[cx, t0], [cx + half, t1], [cx - half, t1]], np.int32)
            cv2.fillPoly(img, [pts], col if v[0] > 0.3 else (40, 100, 30), aa)
        cv2.rectangle(img, (int(cx - s * 0.03), int(bottom - s * 0.2)), (int(cx + s * 0.03), int(bottom)),
                      (30, 60, 90), -1)
    elif kind == "flag":  # dark blue field with light stars (Alaska's dipper), on a pole sometimes
        fw, fh = s * 0.75, s * 0.5
        x0, y0 = int(cx - fw / 2), int(cy - fh / 2)
        cv2.rectangle(img, (x0, y0), (int(x0 + fw), int(y0 + fh)), (110, 50, 20), -1)
        for _ in range(int(3 + v[2] * 5)):
            sx, sy = x0 + rng.uniform(0.1, 0.9) * fw, y0 + rng.uniform(0.15, 0.85) * fh
            cv2.circle(img, (int(sx), int(sy)), max(1, int(s * 0.035)), (60, 200, 245), -1, aa)
        if v[3] < 0.5:
            cv2.line(img, (x0, y0), (x0, int(cy + s * 0.5)), (90, 90, 90), max(1, int(s * 0.03)), aa)
    elif kind == "heart":
        r = s * 0.2
        for dx in (-1, 1):
            cv2.circle(img, (int(cx + dx * r), int(cy - r * 0.5)), int(r * 1.05), col, -1, aa)
        pts = np.array([[cx - 2.1 * r, cy - r * 0.2], [cx + 2.1 * r, cy - r * 0.2], [cx, cy + 2.2 * r]], np.int32)
        cv2.fillPoly(img, [pts], col, aa)
    elif kind == "keystone":
        pts = np.array([[cx - s * 0.3, cy - s * 0.35], [cx + s * 0.3, cy - s * 0.35], [cx + s * 0.2, cy + s * 0.35],
                        [cx - s * 0.2, cy + s * 0.35]], np.int32)
        if v[2] < 0.5:
            cv2.fillPoly(img, [pts], col, aa)
        else:  # outline only
            cv2.polylines(img, [pts], True, col, max(1, int(s * 0.06)), aa)
    elif kind == "outline":  # a rough state outline: a jagged polygon
        n = 9
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = s * rng.uniform(0.22, 0.4, n)
        pts = np.stack([cx + rad * np.cos(ang) * 0.9, cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], col, aa)
    elif kind == "sticker":  # a small square decal, often gold or red, off-centre vertically
        a = s * (0.3 + 0.2 * v[2])
        oy = (v[3] - 0.5) * s * 0.5
        cv2.rectangle(img, (int(cx - a / 2), int(cy + oy - a / 2)), (int(cx + a / 2), int(cy + oy + a / 2)), col, -1)
    else:  # "logo": a coloured disc with a light mark on it
        r = s * (0.25 + 0.1 * v[2])
        cv2.circle(img, (int(cx), int(cy)), int(r), col, -1, aa)
        cv2.circle(img, (int(cx), int(cy)), max(1, int(r * 0.45)), (235, 235, 235), max(1, int(r * 0.2)), aa)


_SIDE_WORDS = ("TRK", "COM", "VET", "APP", "PSG", "FRM")
_DEALERS = ("AUTO MALL", "MOTORS", "TOYOTA", "HONDA CITY", "FORD", "AUTO SALES", "CHEVROLET", "NISSAN", "KIA",
            "SUBARU", "CARMAX", "AUTO PLAZA", "DODGE RAM", "HYUNDAI", "BMW", "JEEP", "VOLKSWAGEN", "MAZDA")
_WHITE = np.array([235, 235, 235], np.float32)
_BLACK = np.array([20, 20, 20], np.float32)


@lru_cache(maxsize=2048)
def _sticker(sw: int, sh: int, ci: int, label: str) -> np.ndarray:
    """A registration sticker (float32 BGR sh x sw) with its month/year digits."""
    img = np.empty((sh, sw, 3), np.float32)
    img[:] = _STICKER_COLORS[ci]
    tm = atlas_text(label, "bold", max(3, int(sh * 0.6)), max_w=max(2, sw - 2))
    _blend(img, tm, (sw - tm.shape[1]) // 2, (sh - tm.shape[0]) // 2, _BLACK if _STICKER_LIGHT[ci] else _WHITE)
    img.flags.writeable = False
    return img


@lru_cache(maxsize=1024)
def _dealer_band(w: int, bh: int, grey: int, ci: int, word: str) -> np.ndarray:
    """A frame's band (float32 BGR bh x w): grey level or sticker colour `ci` (when grey < 0), maybe a name."""
    img = np.empty((bh, w, 3), np.float32)
    img[:] = np.float32(grey) if grey >= 0 else _STICKER_COLORS[ci]
    if word:
        tm = atlas_text(word, "bold", max(3, int(bh * 0.55)), max_w=int(w * 0.7))
        light = (grey if grey >= 0 else float(_STICKER_COLORS[ci].mean())) < 110
        _blend(img, tm, (w - tm.shape[1]) // 2, (bh - tm.shape[0]) // 2, _WHITE if light else _BLACK)
    img.flags.writeable = False
    return img


def _draw_extras(img: np.ndarray, style: StateStyle, rng: np.random.Generator) -> None:
    """Registration stickers, bolts and a dealer frame over the lower line (cached patches, pasted)."""
    h, w = img.shape[:2]
    u = rng.random(20)  # one draw for all choices below
    for k, corner in enumerate(("left", "right")):
        v = u[5 * k : 5 * k + 5]
        if v[0] < 0.55:
            sw = int(w * (0.08 + 0.04 * round(v[1] * 3) / 3))
            sh = int(h * (0.13 + 0.07 * round(v[2] * 3) / 3))
            sx = int(w * 0.02) if corner == "left" else int(w * 0.98) - sw
            sy = int(h * (0.02 + 0.06 * v[3])) if v[3] < 0.7 else int(h * 0.76)
            ci = int(v[4] * len(_STICKER_COLORS))
            img[sy : sy + sh, sx : sx + sw] = _sticker(sw, sh, ci, f"{int(v[4] * 997) % 30:02d}")
    if u[10] < 0.7:
        r = max(1, int(h * 0.035))
        metal = 90 + 110 * float(u[11])
        for bx in (0.21, 0.79):
            c = (int(w * bx), int(h * 0.11))
            cv2.circle(img, c, r, (metal * 0.6,) * 3, -1, cv2.LINE_AA)
            cv2.circle(img, (c[0] - r // 3, c[1] - r // 3), max(1, r // 2), (metal,) * 3, -1, cv2.LINE_AA)
    if u[12] < 0.25:  # dealer frame: a rim that covers the slogan line
        grey = int(5 + 55 * round(u[14] * 4) / 4) if u[13] < 0.7 else -1
        ci = int(u[14] * len(_STICKER_COLORS))
        col = np.full(3, grey, np.float32) if grey >= 0 else _STICKER_COLORS[ci]
        top = int(h * (0.8 + 0.08 * u[15]))
        word = _DEALERS[int(u[17] * len(_DEALERS))] if u[16] < 0.6 else ""
        img[top:] = _dealer_band(w, h - top, grey, ci, word)
        t = max(1, int(h * 0.04))
        img[:, :t] = col
        img[:, w - t :] = col
        img[:t] = col
        if u[19] < 0.35:  # dealer name on the top rim too, over the header
            tb = int(h * 0.13)
            img[:tb] = _dealer_band(w, tb, grey, ci, _DEALERS[int(u[19] * 1000) % len(_DEALERS)])
    elif u[18] < 0.3:  # stamped rim
        cv2.rectangle(img, (1, 1), (w - 2, h - 2), tuple(float(v) for v in _hex_bgr(style.ink)), max(1, h // 60))


def plate_height_for(size: tuple[int, int]) -> int:
    """Height at which `render_plates` draws plates for crops of `size` = (height, width)."""
    oh, ow = int(size[0]), int(size[1])
    return max(24, int(round(max(oh, ow / 2) * 1.05)))  # drawn about the size it lands


def warm_up(size: tuple[int, int] = (64, 128), states: Sequence[str] | None = None, plates: int = 512) -> None:
    """Fill the template, glyph and patch caches for crops of `size` (one-time cost, ~1 s for all
    states); `plates` crops are rendered and dropped for the caches filled on first use."""
    h = plate_height_for(size)
    _pick_states(1, np.random.default_rng(0), states)  # unknown codes fail here, by name
    for code in [s.lower() for s in states] if states else ALL_STATES:
        for variant in range(N_STANDARD_VARIANTS + N_SPECIALTY_VARIANTS):
            _template(code.lower(), h, variant)
    for cap_h in range(max(6, int(round(h * 0.42))), max(6, int(round(h * 0.50))) + 1):
        for ws in np.arange(0.68, 0.90, 0.04):
            for weight in range(-2, 3):
                glyph_atlas("plate", cap_h, round(float(ws), 2), weight)
    # and the small caches filled on first use (stickers, frame bands, blend colours)
    render_plates(max(0, int(plates)), np.random.default_rng(12345), size=size, states=states)


def check_serial_fonts(serial_fonts: Sequence[str] | str) -> tuple[str, ...]:
    """The faces as a tuple (a string is read as a comma-separated list); unknown names are refused."""
    if isinstance(serial_fonts, str):
        serial_fonts = [f.strip() for f in serial_fonts.split(",") if f.strip()]
    fonts = tuple(serial_fonts)
    unknown = [f for f in fonts if f not in SERIAL_FONTS]
    if not fonts or unknown:
        raise ValueError(f"serial_fonts: unknown or no face(s) {unknown}; known: {', '.join(SERIAL_FONTS)}")
    return fonts


def _pick_states(n: int, rng: np.random.Generator, states: Sequence[str] | None) -> list[str]:
    pool = ALL_STATES if not states else tuple(s.lower() for s in states)
    unknown = [s for s in pool if s not in STATES]
    if unknown:
        raise ValueError(f"unknown state code(s): {unknown}; known: {', '.join(ALL_STATES)}")
    return [pool[i] for i in rng.integers(len(pool), size=n)]


def render_plate_images(
    n: int, rng: np.random.Generator, height: int = 120, states: Sequence[str] | None = None, extras: bool = True,
    serial_fonts: Sequence[str] = ("plate",),
) -> list[tuple[np.ndarray, str, str]]:
    """`n` clean, un-warped plates: (BGR uint8 image height x 2*height, text, state code).

    Use `plate_mask(height, 2*height)` for the rounded-corner alpha, `composite_plate` to warp one into
    a frame. `serial_fonts`: faces the serials are drawn in (names from SERIAL_FONTS), one per plate.
    """
    serial_fonts = check_serial_fonts(serial_fonts)
    out = []
    for code in _pick_states(n, rng, states):
        style = STATES[code]
        layout, text = random_serial(style, rng)
        img = _draw_plate(style, layout, height, rng, extras, serial_fonts)
        out.append((np.clip(img, 0, 255).astype(np.uint8), text, code))
    return out


# -------------------------------------------------------------------------------- compositing


@lru_cache(maxsize=64)
def plate_mask(h: int, w: int) -> np.ndarray:
    """float32 alpha (h, w) of a plate with rounded corners."""
    m = np.zeros((h, w), np.uint8)
    r = max(1, int(round(h * 0.06)))
    cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return m.astype(np.float32) / 255.0


def composite_plate(background: np.ndarray, plate: np.ndarray, corners: np.ndarray, shade: float = 1.0) -> np.ndarray:
    """Warp `plate` onto `corners` (4x2: TL, TR, BR, BL, frame pixels) of `background`; returns a new image.

    Only the bounding rectangle of the corners is touched, so this is cheap on 1080p frames.
    `shade` scales the plate's brightness (scene lighting).
    """
    corners = np.asarray(corners, np.float32).reshape(4, 2)
    out = background.copy()
    H, W = out.shape[:2]
    x0 = int(max(0, np.floor(corners[:, 0].min()) - 1))
    y0 = int(max(0, np.floor(corners[:, 1].min()) - 1))
    x1 = int(min(W, np.ceil(corners[:, 0].max()) + 2))
    y1 = int(min(H, np.ceil(corners[:, 1].max()) + 2))
    if x1 <= x0 or y1 <= y0:
        return out
    ph, pw = plate.shape[:2]
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    M = cv2.getPerspectiveTransform(src, corners - np.array([x0, y0], np.float32))
    size = (x1 - x0, y1 - y0)
    # pre-blur big downscales so the warp does not alias
    scale = max(1e-3, min(size[0] / pw, size[1] / ph))
    if scale < 0.5:
        k = int(1 / scale) | 1
        plate = cv2.GaussianBlur(plate, (k, k), 0)
    warped = cv2.warpPerspective(plate, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpPerspective(plate_mask(ph, pw), M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    region = out[y0:y1, x0:x1].astype(np.float32)
    a = alpha[:, :, None]
    region = region * (1 - a) + warped.astype(np.float32) * shade * a
    out[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)
    return out


def plate_box(corners: np.ndarray) -> np.ndarray:
    """Axis-aligned box (x1, y1, x2, y2) around the plate with w = 2h, as the real frame labels use.

    Centred on the corners' bounding box; the longer side decides (w = max(bw, 2*bh)).
    """
    c = np.asarray(corners, np.float32).reshape(-1, 4, 2)
    lo, hi = c.min(axis=1), c.max(axis=1)
    ctr = (lo + hi) / 2
    w = np.maximum(hi[:, 0] - lo[:, 0], 2 * (hi[:, 1] - lo[:, 1]))
    h = w / 2
    box = np.stack([ctr[:, 0] - w / 2, ctr[:, 1] - h / 2, ctr[:, 0] + w / 2, ctr[:, 1] + h / 2], axis=1)
    return box[0] if np.asarray(corners).ndim == 2 else box


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised line kernel for motion blur of `length` pixels along `angle` radians."""
    ks = int(np.ceil(length)) | 1
    ker = np.zeros((ks, ks), np.float32)
    c = ks // 2
    dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
    cv2.line(ker, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return ker / max(float(ker.sum()), 1e-6)


def plate_quads(yaw_deg: np.ndarray, pitch_deg: np.ndarray, roll_deg: np.ndarray, focal: np.ndarray) -> np.ndarray:
    """(N, 4, 2) projected corners of a unit plate (width 2, centred at 0) for N poses; focal in plate half-widths."""
    y, p, r = (np.radians(np.asarray(a, np.float64)) for a in (yaw_deg, pitch_deg, roll_deg))
    X = np.array([[-1, -0.5, 0], [1, -0.5, 0], [1, 0.5, 0], [-1, 0.5, 0]], np.float64)
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    # R = Rz @ Rx @ Ry applied to points with z = 0
    x0, y0 = X[None, :, 0], X[None, :, 1]
    ax, ay = x0 * cy[:, None], y0 * np.ones_like(cy)[:, None]
    az = -x0 * sy[:, None]
    bx, by, bz = ax, ay * cp[:, None] - az * sp[:, None], ay * sp[:, None] + az * cp[:, None]
    px, py = bx * cr[:, None] - by * sr[:, None], bx * sr[:, None] + by * cr[:, None]
    f = np.asarray(focal, np.float64)[:, None]
    zz = bz + f
    return np.stack([px * f / zz, py * f / zz], axis=2)


def plate_corners_3d(
    center: tuple[float, float], width: float, yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0,
    focal: float | None = None,
) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of a `width`-pixel plate centred at `center`, seen rotated.

    Rotations are of the plate in front of a pinhole camera with focal length `focal` pixels
    (default 3 plate widths: mild perspective).
    """
    f = float(focal or 3.0 * width)
    X = np.array([[-1, -0.5, 0], [1, -0.5, 0], [1, 0.5, 0], [-1, 0.5, 0]], np.float64) * (width / 2)
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    P = X @ (Rz @ Rx @ Ry).T
    z = P[:, 2] + f
    xy = P[:, :2] * (f / z)[:, None]
    return (xy + np.asarray(center, np.float64)).astype(np.float32)


# --------------------------------------------------------------------------------- degradations


class Degradation(BaseModel):
    """Ranges for the degradations applied to OCR crops (each drawn uniformly per crop)."""

    # NaN and infinity refused as such ("a finite number"), not by a bound they happen to fail
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    yaw_deg: float = Field(35.0, ge=0, le=80, description="max |yaw| of the plate")
    pitch_deg: float = Field(20.0, ge=0, le=80)
    roll_deg: float = Field(8.0, ge=0, le=45)
    margin: tuple[float, float] = Field((-0.02, 0.07), description="crop margin per side, fraction of size")
    low_res_p: float = Field(0.15, ge=0, le=1, description="chance of a distant, few-pixel plate")
    low_res_min_width: int = Field(48, ge=8, description="narrowest plate in pixels before upscaling")
    motion_p: float = Field(0.12, ge=0, le=1)
    motion_px: float = Field(4.0, ge=0, description="max motion-blur length in output pixels")
    speed_kmh: tuple[float, float] | None = Field(
        None, description="vehicle speed range; with shutter_s the blur length comes from speed x shutter instead"
    )
    shutter_s: tuple[float, float] | None = Field(None, description="exposure time range in seconds")
    defocus_p: float = Field(0.15, ge=0, le=1)
    defocus_sigma: float = Field(1.0, ge=0, le=20, description="max defocus (Gaussian sigma; 1e5 took minutes per crop)")
    sharpen_p: float = Field(0.45, ge=0, le=1, description="chance of camera (ISP) sharpening halos")
    sharpen_amount: float = Field(1.2, ge=0, le=4)
    noise_sigma: float = Field(9.0, ge=0, description="max sensor noise (8-bit levels)")
    jpeg_p: float = Field(0.5, ge=0, le=1)
    jpeg_quality: tuple[int, int] = Field((25, 95))
    low_light_p: float = Field(0.06, ge=0, le=1)
    ir_p: float = Field(0.08, ge=0, le=1, description="chance of an infrared night (monochrome) look")
    glare_p: float = Field(0.1, ge=0, le=1)
    dirt_p: float = Field(0.3, ge=0, le=1)
    occlusion_p: float = Field(0.05, ge=0, le=1, description="chance of an object covering a plate edge")

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("margin", "jpeg_quality", "speed_kmh", "shutter_s"):
            v = getattr(self, name)
            if v is not None and v[0] > v[1]:
                raise ValueError(f"{name}: min {v[0]} is above max {v[1]}")
        if not 0 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality: {list(self.jpeg_quality)} must lie within [0, 100]")
        if (self.speed_kmh is None) != (self.shutter_s is None):
            raise ValueError("speed_kmh and shutter_s go together")
        if self.shutter_s is not None and (self.shutter_s[0] <= 0 or self.shutter_s[0] > 1):
            raise ValueError("shutter_s must be within (0, 1] seconds")
        if self.speed_kmh is not None and self.speed_kmh[0] < 0:
            raise ValueError("speed_kmh must be >= 0")
        return self

    def motion_length_px(self, u_speed: float, u_shutter: float, plate_px: float) -> float:
        """Blur length for one crop: from speed x shutter over a 0.305 m plate `plate_px` wide, or motion_px."""
        if self.speed_kmh is None or self.shutter_s is None:
            return 2 + max(0.0, self.motion_px - 2) * u_speed
        v = (self.speed_kmh[0] + (self.speed_kmh[1] - self.speed_kmh[0]) * u_speed) / 3.6
        s = self.shutter_s[0] + (self.shutter_s[1] - self.shutter_s[0]) * u_shutter
        return v * s * plate_px / 0.305


NO_DEGRADATION = Degradation(
    yaw_deg=0, pitch_deg=0, roll_deg=0, margin=(0.02, 0.02), low_res_p=0, motion_p=0, defocus_p=0, noise_sigma=0,
    sharpen_p=0,
    jpeg_p=0, low_light_p=0, ir_p=0, glare_p=0, dirt_p=0, occlusion_p=0,
)


@dataclass(frozen=True)
class PlateBatch:
    """N labelled plate crops.

    images: (N, H, W, 3) uint8 BGR, the whole plate visible, roughly filling the crop.
    texts: N plate strings, uppercase A-Z0-9.
    states: N lowercase two-letter codes.
    corners: (N, 4, 2) float32 plate corners in crop pixels (TL, TR, BR, BL), for rectification.
    """

    images: np.ndarray
    texts: list[str]
    states: list[str]
    corners: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _surroundings(k: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Textures around a plate in a crop: car paint, bumper, shadows (float32, k x h x w x 3)."""
    base = rng.uniform(10, 230, (k, 1, 1, 3)).astype(np.float32)
    sat = rng.uniform(0.0, 0.6, (k, 1, 1, 1)).astype(np.float32) * (rng.random((k, 1, 1, 1)) < 0.5)
    base = base.mean(axis=3, keepdims=True) * (1 - sat) + base * sat  # car paint: mostly greys
    low = np.stack([cv2.resize(rng.normal(0, 1, (3, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
                    for _ in range(k)])
    out = base + low[:, :, :, None] * rng.uniform(5, 40, (k, 1, 1, 1)).astype(np.float32)
    return np.clip(out, 0, 255)


def _noise_bank(k: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((k, h, w, 3), dtype=np.float32)


def _dirt_bank(k: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    maps = []
    for _ in range(k):
        m = cv2.resize(rng.random((6, 12)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        speck = (rng.random((h, w)) < 0.01).astype(np.float32)
        maps.append(np.clip((m - 0.55) * 2.0, 0, 1) + speck * 0.5)
    return np.clip(np.stack(maps), 0, 1)


def render_plates(
    n: int,
    rng: np.random.Generator,
    size: tuple[int, int] = (64, 128),
    states: list[str] | None = None,
    degrade: bool = True,
    degradation: Degradation | None = None,
    serial_fonts: Sequence[str] = ("plate",),
) -> PlateBatch:
    """`n` labelled plate crops at OCR input size `size` = (height, width).

    With `degrade`, each crop gets a random pose, crop jitter, blur, noise, lighting, dirt and JPEG
    artefacts drawn from `degradation` (default `Degradation()`); without it the plate is frontal and
    clean with a small even margin. `serial_fonts`: faces the serials are drawn in (SERIAL_FONTS).
    """
    serial_fonts = check_serial_fonts(serial_fonts)
    if n < 0:
        raise ValueError("n must be >= 0")
    oh, ow = int(size[0]), int(size[1])
    if oh < 8 or ow < 16:
        raise ValueError(f"size must be at least (8, 16), got {size}")
    d = (degradation or Degradation()) if degrade else NO_DEGRADATION
    codes = _pick_states(n, rng, states)
    ph = plate_height_for(size)
    pw = 2 * ph
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    k = min(max(n, 1), 24)
    # photometric randomness from its own stream: the same seed gives the same plates and poses
    # whatever the degradation settings, only their look changes
    look = np.random.default_rng(rng.integers(2**63))
    surround = _surroundings(k, oh, ow, look)
    noise = _noise_bank(min(max(n, 1), 16), oh, ow, look) if d.noise_sigma > 0 else None
    dirt = _dirt_bank(min(max(n, 1), 16), oh, ow, look) if d.dirt_p > 0 else None
    glare = _glare_bank(8, oh, ow, look) if d.glare_p > 0 else None
    out = np.empty((n, oh, ow, 3), np.uint8)
    texts: list[str] = []
    chunk = 128  # work in cache-sized float32 chunks, then store uint8
    images = np.empty((min(n, chunk), oh, ow, 3), np.float32)

    # pose and crop jitter for the whole batch at once
    R = rng.random((n, 16))
    quads = plate_quads(
        (R[:, 0] * 2 - 1) * d.yaw_deg, (R[:, 1] * 2 - 1) * d.pitch_deg, (R[:, 2] * 2 - 1) * d.roll_deg, 3.0 + 5.0 * R[:, 3]
    )
    lo, hi = quads.min(axis=1, keepdims=True), quads.max(axis=1, keepdims=True)
    m = d.margin[0] + (d.margin[1] - d.margin[0]) * rng.random((n, 4))
    t0 = np.stack([m[:, 0] * ow, m[:, 1] * oh], 1)[:, None, :]
    t1 = np.stack([ow * (1 - m[:, 2]), oh * (1 - m[:, 3])], 1)[:, None, :]
    dsts = ((quads - lo) / np.maximum(hi - lo, 1e-6) * (t1 - t0) + t0).astype(np.float32)

    for i, code in enumerate(codes):
        style = STATES[code]
        layout, text = random_serial(style, rng)
        texts.append(text)
        plate = _draw_plate(style, layout, ph, rng, serial_fonts=serial_fonts)
        u = R[i]
        M = cv2.getPerspectiveTransform(src, dsts[i])
        canvas = images[i % chunk]  # drawn in place in the chunk buffer
        canvas[:] = surround[int(u[4] * k)]
        cv2.warpPerspective(plate, M, (ow, oh), dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        if u[5] < d.occlusion_p:
            side = int(u[6] * 3)
            col = np.float32(200 * u[7])
            if side == 0:  # tow hitch / bar across the bottom edge
                canvas[int(oh * (0.82 + 0.1 * u[8])) :] = col
            elif side == 1:
                canvas[:, : int(ow * (0.04 + 0.06 * u[8]))] = col
            else:
                canvas[:, ow - int(ow * (0.04 + 0.06 * u[8])) :] = col
        if u[9] < d.low_res_p:
            f = d.low_res_min_width / ow + (0.8 - d.low_res_min_width / ow) * u[10]
            if f < 1:
                small = cv2.resize(canvas, (max(4, int(ow * f)), max(2, int(oh * f))), interpolation=cv2.INTER_AREA)
                cv2.resize(small, (ow, oh), dst=canvas, interpolation=cv2.INTER_LINEAR)
        if u[11] < d.motion_p:
            length = d.motion_length_px(u[12], u[10], ow)
            if length >= 1.0:
                cv2.filter2D(canvas, -1, dst=canvas, kernel=motion_kernel(
                    min(length, float(ow)), (u[13] - 0.5) * 0.6 if u[14] < 0.7 else u[13] * np.pi))
        if u[15] < d.defocus_p:
            cv2.GaussianBlur(canvas, (0, 0), 0.4 + max(0.01, d.defocus_sigma - 0.4) * u[12], dst=canvas)
        elif u[15] > 1.0 - d.sharpen_p:  # unsharp mask, as camera pipelines do
            amount = float(d.sharpen_amount * (0.3 + 0.7 * u[14]))
            cv2.addWeighted(canvas, 1.0 + amount, cv2.GaussianBlur(canvas, (0, 0), 1.0), -amount, 0.0, dst=canvas)
        if i % chunk == chunk - 1 or i == n - 1:
            part = images[: i % chunk + 1]
            if degrade:
                _photometric(part, look, d, noise, dirt, glare)
            np.clip(part, 0, 255, out=part)
            out[i - len(part) + 1 : i + 1] = part

    if n and d.jpeg_p:
        q_lo, q_hi = d.jpeg_quality
        for i in np.nonzero(look.random(n) < d.jpeg_p)[0]:
            ok, buf = cv2.imencode(".jpg", out[i], [cv2.IMWRITE_JPEG_QUALITY, int(look.integers(q_lo, q_hi + 1))])
            if ok:
                out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return PlateBatch(out, texts, codes, dsts if n else np.zeros((0, 4, 2), np.float32))


def _glare_bank(k: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    maps = []
    for _ in range(k):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.2, 0.6) * w
        maps.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
    return np.stack(maps).astype(np.float32)


def _photometric(images: np.ndarray, rng: np.random.Generator, d: Degradation, noise, dirt, glare) -> None:
    """Lighting, infrared night look, glare, dirt and sensor noise for the whole batch, in place."""
    n, h, w, _ = images.shape
    # colour cast, contrast and brightness for everybody
    gain = rng.uniform(0.78, 1.12, (n, 1, 1, 1)).astype(np.float32) * rng.uniform(0.92, 1.08, (n, 1, 1, 3)).astype(np.float32)
    bias = rng.uniform(-10, 15, (n, 1, 1, 1)).astype(np.float32)
    flat = images.reshape(n, h, w * 3)
    flat *= np.tile(gain.reshape(n, 1, 3), (1, 1, w))
    flat += bias.reshape(n, 1, 1)
    # camera colour processing: more saturated than the flat artwork (real crops are)
    sat = rng.uniform(1.0, 1.5, n)
    for i in range(n):  # OpenCV per image: numpy broadcasting over the colour axis is the slow path
        grey = cv2.cvtColor(cv2.cvtColor(images[i], cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        cv2.addWeighted(images[i], float(sat[i]), grey, float(1.0 - sat[i]), 0.0, dst=images[i])
    if d.dirt_p and dirt is not None:
        brown = np.array([40, 60, 80], np.float32)
        for i in np.nonzero(rng.random(n) < d.dirt_p)[0]:
            _lerp(images[i], brown, dirt[int(rng.integers(len(dirt)))] * np.float32(rng.uniform(0.2, 0.6)))
    if d.low_light_p:
        for i in np.nonzero(rng.random(n) < d.low_light_p)[0]:
            images[i] *= np.float32(rng.uniform(0.25, 0.55))
    if d.ir_p:
        ir = rng.random(n) < d.ir_p
        if ir.any():
            # retro-reflective sheeting glows under IR, ink stays dark: stretch the grey levels
            g = images[ir] @ np.array([0.35, 0.35, 0.30], np.float32)
            g = np.clip((g - 70) * rng.uniform(1.1, 1.6, (int(ir.sum()), 1, 1)).astype(np.float32) + 50, 0, 255)
            images[ir] = g[:, :, :, None]
    if d.glare_p:
        for i in np.nonzero(rng.random(n) < d.glare_p)[0]:
            flat[i] += np.repeat(glare[int(rng.integers(len(glare)))] * np.float32(rng.uniform(60, 160)), 3, axis=1)
    if d.noise_sigma and noise is not None:
        sig = rng.uniform(1, d.noise_sigma, n).astype(np.float32)
        idx = rng.integers(len(noise), size=n)
        for i in range(n):
            images[i] += noise[idx[i]] * sig[i]


def render_plate_text_image(text: str, state: str, height: int = 120, rng: np.random.Generator | None = None) -> np.ndarray:
    """A clean plate of `state` showing exactly `text` (uppercase A-Z0-9, spaces/dashes allowed)."""
    style = STATES[state.lower()]
    rng = rng or np.random.default_rng(0)
    img = _draw_plate(style, text.upper(), height, rng, extras=False)
    return np.clip(img, 0, 255).astype(np.uint8)
