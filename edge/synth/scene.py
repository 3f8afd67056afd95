"""Synthetic camera scenes: vehicles passing a roadside ALPR camera, with per-frame ground truth.

A scenario (YAML, validated by the pydantic `Scenario` model) places a pinhole camera above a road
(mount height, lateral distance to the lane, pan and tilt, field of view or focal length,
resolution, fps, shutter), sets the traffic (vehicles per minute, speeds, lanes, direction, states),
the lighting (day, dusk, night with or without infrared) and weather noise.

    for frame_bgr, truths in iter_scene_frames(scenario, seed=1):
        ...  # truths: list[PlateTruth], one per plate visible in this frame

World frame: metres, z up, the road plane is z = 0, lanes run along +y, the camera stands at
x = 0, y = 0. Vehicles are shaded boxes (body and cabin); the plate is a rendered plate warped onto
the vehicle's face toward the camera, so its four corners are known exactly.

Speed: the background (road texture, markings, buildings, signs, clutter) is rendered once per
scenario by casting every pixel's ray onto the road; a frame is a copy of it plus the vehicles drawn
in their screen rectangles (motion blur per vehicle from speed and shutter time), then global effects
from precomputed banks (noise, rain).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.synth.plates import composite_plate, motion_kernel, plate_box, render_plate_images, text_mask
from edge.synth.states import ALL_STATES

PLATE_W_M, PLATE_H_M = 0.305, 0.152  # 12 x 6 inch US plate


# ----------------------------------------------------------------------------------- scenario


class _Strict(BaseModel):
    # NaN and infinity refused as such ("a finite number"), not by a bound they happen to fail
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CameraConfig(_Strict):
    width: int = Field(1920, ge=160, le=7680, description="image width in pixels")
    height: int = Field(1080, ge=120, le=4320, description="image height in pixels")
    fps: float = Field(15.0, gt=0, le=240)
    mount_height_m: float = Field(4.0, gt=0.3, le=40, description="camera height above the road")
    distance_to_lane_m: float = Field(
        4.0, ge=-60, le=60, description="lateral distance from the camera to the centre of the first lane (+: right)"
    )
    horizontal_angle_deg: float = Field(10.0, ge=-80, le=80, description="pan from the direction of travel (+: right)")
    vertical_angle_deg: float = Field(10.0, ge=-10, le=89, description="tilt below the horizon")
    hfov_deg: float | None = Field(None, gt=1, lt=160, description="horizontal field of view (or focal_length_mm)")
    focal_length_mm: float | None = Field(None, gt=0.5, le=1000)
    sensor_width_mm: float = Field(6.17, gt=0.5, le=60, description="sensor width, with focal_length_mm")
    shutter_s: float = Field(1 / 1000, gt=0, le=1, description="exposure time: motion blur = speed x shutter")
    focus_blur_px: float = Field(0.0, ge=0, le=20, description="defocus (Gaussian sigma in pixels)")
    timestamp_overlay: bool = True
    label: str = Field("CAM-01", max_length=40)

    @model_validator(mode="after")
    def _one_fov(self):
        if self.hfov_deg is not None and self.focal_length_mm is not None:
            raise ValueError("give either hfov_deg or focal_length_mm, not both")
        return self

    @property
    def focal_px(self) -> float:
        if self.focal_length_mm is not None:
            return self.focal_length_mm / self.sensor_width_mm * self.width
        hfov = self.hfov_deg if self.hfov_deg is not None else 30.0
        return (self.width / 2) / math.tan(math.radians(hfov) / 2)


class TrafficConfig(_Strict):
    vehicles_per_minute: float = Field(20.0, ge=0, le=600, description="mean arrivals over all lanes (Poisson)")
    speed_kmh: tuple[float, float] = Field((30.0, 60.0), description="min and max vehicle speed")
    lanes: int = Field(1, ge=1, le=8)
    lane_width_m: float = Field(3.6, ge=2, le=6)
    direction: Literal["toward", "away", "both"] = Field(
        "toward", description="toward: front plates approach the camera; away: rear plates; both: lanes alternate"
    )
    states: list[str] | None = Field(None, description="state codes to draw plates from (default: all)")
    home_state: str | None = Field("ca", description="state most plates come from")
    home_share: float = Field(0.6, ge=0, le=1)
    truck_share: float = Field(0.15, ge=0, le=1)
    front_plate_share: float = Field(0.9, ge=0, le=1, description="vehicles showing a front plate (toward traffic)")
    bumper_sticker_share: float = Field(0.3, ge=0, le=1)
    stop_at_m: float | None = Field(None, ge=0, le=200, description="vehicles stop at this distance (gate, stop line)")
    stop_s: float = Field(2.0, ge=0, le=120, description="how long they wait there")

    @field_validator("speed_kmh")
    @classmethod
    def _speeds(cls, v):
        lo, hi = v
        if not (0 < lo <= hi <= 250):
            raise ValueError("need 0 < min <= max <= 250 km/h")
        return v

    @field_validator("states")
    @classmethod
    def _known_states(cls, v):
        if v is None:
            return v
        v = [s.lower() for s in v]
        bad = [s for s in v if s not in ALL_STATES]
        if bad or not v:
            raise ValueError(f"unknown state code(s) {bad}; known: {', '.join(ALL_STATES)}")
        return v

    @field_validator("home_state")
    @classmethod
    def _home(cls, v):
        if v is not None and v.lower() not in ALL_STATES:
            raise ValueError(f"unknown state code {v!r}")
        return None if v is None else v.lower()


class LightingConfig(_Strict):
    mode: Literal["day", "dusk", "night"] = "day"
    ir: bool = Field(True, description="at night: infrared illuminator (monochrome image, bright plates)")
    brightness: float = Field(1.0, gt=0, le=3)


class WeatherConfig(_Strict):
    noise_sigma: float = Field(2.0, ge=0, le=60, description="sensor noise (8-bit levels)")
    rain: float = Field(0.0, ge=0, le=1)
    fog: float = Field(0.0, ge=0, le=1)


class SceneConfig(_Strict):
    kind: Literal["city", "highway", "parking"] = "city"
    clutter: float = Field(0.6, ge=0, le=1, description="density of buildings, signs, poles and trees")
    crosswalk_at_m: float | None = Field(None, ge=0, le=200, description="stop line and crosswalk at this distance")


class Scenario(_Strict):
    name: str = "scenario"
    seed: int = Field(0, ge=0, description="random seed (numpy takes no negative one)")
    duration_s: float = Field(10.0, gt=0, le=3600)
    camera: CameraConfig = CameraConfig()
    traffic: TrafficConfig = TrafficConfig()
    lighting: LightingConfig = LightingConfig()
    weather: WeatherConfig = WeatherConfig()
    scene: SceneConfig = SceneConfig()


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path}: not valid YAML ({err})") from None
    return parse_scenario(data or {}, source=str(path))


def parse_scenario(data: dict, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: top level must be a mapping of fields")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()]
        raise ScenarioError(f"{source}: " + "; ".join(parts)) from None


# --------------------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class PinholeCamera:
    """World-to-image projection: R rows are the camera's right, down and forward axes in world frame."""

    R: np.ndarray
    C: np.ndarray
    f: float
    cx: float
    cy: float

    @classmethod
    def from_config(cls, cam: CameraConfig) -> "PinholeCamera":
        a, b = math.radians(cam.horizontal_angle_deg), math.radians(cam.vertical_angle_deg)
        fwd = np.array([math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), -math.sin(b)])
        right = np.array([math.cos(a), -math.sin(a), 0.0])
        down = np.cross(fwd, right)
        R = np.stack([right, down, fwd])
        return cls(R, np.array([0.0, 0.0, cam.mount_height_m]), cam.focal_px, cam.width / 2, cam.height / 2)

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        return (np.asarray(pts, np.float64) - self.C) @ self.R.T

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points -> (..., 2) pixels and (...,) depth along the optical axis."""
        pc = self.to_camera(pts)
        z = pc[..., 2]
        zs = np.where(z > 1e-3, z, 1e-3)
        uv = np.stack([self.f * pc[..., 0] / zs + self.cx, self.f * pc[..., 1] / zs + self.cy], axis=-1)
        return uv, z

    def rays(self, w: int, h: int) -> np.ndarray:
        """World direction of every pixel's ray, (h, w, 3) float32."""
        u, v = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)
        d = np.stack([(u - self.cx) / self.f, (v - self.cy) / self.f, np.ones_like(u)], axis=-1)
        return d @ self.R.astype(np.float32)


# ----------------------------------------------------------------------------------- background

_SIGN_TEXTS = ["SPEED LIMIT 35", "STOP", "ONE WAY", "NO PARKING", "MAIN ST", "EXIT 24", "ELM ST 1200", "BUS ONLY",
               "PARKING 2HR", "YIELD", "DETOUR", "OAK AVE 400", "I-80 WEST", "SCHOOL ZONE", "PAY HERE", "TOW AWAY",
               "ROUTE 66", "HWY 101 N", "NO U TURN", "LOADING ZONE", "LOT B 12", "AUTO PARTS", "DINER 24H"]
_SHOP_TEXTS = ["PHARMACY", "COFFEE", "BANK 365", "PIZZA", "HOTEL", "DENTAL", "LAUNDRY", "TACOS 4U", "GYM", "BOOKS",
               "CAFE 21", "MARKET", "SALON", "DELI", "BAKERY"]
_STICKERS = ["HONK IF", "COEXIST", "MY KID IS", "26.2", "OBX", "BABY ON BOARD", "NPS", "I LOVE NY", "4X4", "RIDE 55",
             "GO TEAM", "CA 1850", "SURF", "V8", "TRD", "WWJD", "UCLA", "RPM 7500"]
_FLEET = ["METRO PLUMBING", "ACE MOVERS", "FRESH FOODS", "CITY ELECTRIC", "ROOF PRO", "EXPRESS 2400", "HVAC 555 0142",
          "BOB'S TOWING", "COOL AIR INC"]


def _noise_texture(rng: np.random.Generator, size: int, octaves: tuple[int, ...], amp: tuple[float, ...]) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    for o, a in zip(octaves, amp):
        small = rng.normal(0, 1, (o, o)).astype(np.float32)
        small = np.concatenate([small, small[:1]], 0)
        small = np.concatenate([small, small[:, :1]], 1)  # tileable
        big = cv2.resize(small, (size + size // o, size + size // o), interpolation=cv2.INTER_CUBIC)[:size, :size]
        out += big * a
    return out


def _ground_textures(rng: np.random.Generator, kind: str) -> dict[str, np.ndarray]:
    """Tileable BGR float32 textures, 1 texel = 2 cm, 512 texels = 10.24 m."""
    n = 512
    asphalt_base = np.array([78, 80, 82], np.float32) if kind != "highway" else np.array([92, 94, 95], np.float32)
    t = _noise_texture(rng, n, (4, 16, 64, 256), (10, 6, 5, 7))
    asphalt = asphalt_base + t[:, :, None]
    for _ in range(5):  # cracks and sealed patches
        pts = np.cumsum(rng.normal(0, 10, (10, 2)), axis=0) + rng.uniform(0, n, 2)
        cv2.polylines(asphalt, [pts.astype(np.int32)], False, (58, 60, 62), 1, cv2.LINE_AA)
    for _ in range(2):
        c = tuple(int(v) for v in rng.uniform(0, n, 2))
        cv2.ellipse(asphalt, c, (int(rng.uniform(15, 50)), int(rng.uniform(10, 30))), float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(v) - 10 for v in asphalt_base), -1, cv2.LINE_AA)
    asphalt = cv2.GaussianBlur(asphalt, (0, 0), 0.8)
    concrete = np.array([165, 168, 170], np.float32) + _noise_texture(rng, n, (8, 64, 256), (8, 4, 5))[:, :, None]
    for k in range(0, n, 75):  # slab joints every 1.5 m
        concrete[k : k + 2] *= 0.7
        concrete[:, k : k + 2] *= 0.7
    g = _noise_texture(rng, n, (8, 32, 128, 256), (12, 10, 10, 14))
    grass = np.stack([45 + g * 0.5, 105 + g, 70 + g * 0.6], axis=-1).astype(np.float32)
    return {"asphalt": asphalt, "concrete": concrete, "grass": grass}


@dataclass
class _Layout:
    road_left: float
    road_right: float
    lane_centers: list[float]
    lane_dirs: list[int]  # -1 toward the camera (decreasing y), +1 away


def _layout(s: Scenario) -> _Layout:
    t = s.traffic
    d = s.camera.distance_to_lane_m
    centers = [d + k * t.lane_width_m * (1 if d >= 0 else -1) for k in range(t.lanes)]
    lo = min(centers) - t.lane_width_m / 2 - 0.5
    hi = max(centers) + t.lane_width_m / 2 + 0.5
    if t.direction == "toward":
        dirs = [-1] * t.lanes
    elif t.direction == "away":
        dirs = [1] * t.lanes
    else:  # right-hand traffic seen from the right shoulder: near lanes leave, far lanes approach
        n_away = (t.lanes + 1) // 2
        dirs = [1 if k < n_away else -1 for k in range(t.lanes)]
    return _Layout(lo, hi, centers, dirs)


def _warp_image(frame: np.ndarray, img: np.ndarray, corners: np.ndarray) -> None:
    """Warp a BGR image onto projected corners (TL, TR, BR, BL) of `frame`, in place."""
    h, w = frame.shape[:2]
    c = np.asarray(corners, np.float32)
    if not (np.isfinite(c).all()) or c[:, 0].max() < 0 or c[:, 1].max() < 0 or c[:, 0].min() > w or c[:, 1].min() > h:
        return
    if (c.max(axis=0) - c.min(axis=0)).max() < 2 or (c.max(axis=0) - c.min(axis=0)).max() > 4 * max(w, h):
        return
    frame[:] = composite_plate(frame, img, c)


def _sign_image(text: str, rng: np.random.Generator, h: int = 64) -> np.ndarray:
    palette = [((255, 255, 255), (0, 0, 0)), ((30, 120, 30), (255, 255, 255)), ((40, 40, 200), (255, 255, 255)),
               ((0, 200, 255), (0, 0, 0)), ((140, 70, 20), (255, 255, 255)), ((20, 20, 20), (255, 255, 255))]
    bg, fg = palette[int(rng.integers(len(palette)))]
    lines = text.split(" ") if len(text) > 10 and rng.random() < 0.6 else [text]
    lines = [" ".join(lines[: (len(lines) + 1) // 2]), " ".join(lines[(len(lines) + 1) // 2 :])] if len(lines) > 1 else lines
    masks = [text_mask(t, "bold", max(8, int(h * 0.7 / len(lines) * 0.8))) for t in lines]
    w = max(int(h * 1.2), max(m.shape[1] for m in masks) + h // 4)
    img = np.zeros((h, w, 3), np.float32) + np.array(bg, np.float32)
    cv2.rectangle(img, (2, 2), (w - 3, h - 3), fg, max(1, h // 30))
    y = (h - sum(m.shape[0] for m in masks) - 4 * (len(masks) - 1)) // 2
    for m in masks:
        x = (w - m.shape[1]) // 2
        reg = img[y : y + m.shape[0], x : x + m.shape[1]]
        reg += (np.array(fg, np.float32) - reg) * m[:, :, None]
        y += m.shape[0] + 4
    return np.clip(img, 0, 255).astype(np.uint8)


def _facade_image(rng: np.random.Generator, shop: str | None) -> np.ndarray:
    h, w = 256, 384
    base = rng.uniform(60, 200, 3)
    img = np.zeros((h, w, 3), np.float32) + base.astype(np.float32)
    win = np.array([90, 70, 50], np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    for y in range(24, h - 90, 56):
        for x in range(16, w - 40, 52):
            img[y : y + 36, x : x + 30] = win
            img[y : y + 4, x : x + 30] = win * 1.6
    # ground floor shop window and sign
    img[h - 80 : h - 8, 20 : w - 20] = win * 0.9
    if shop:
        m = text_mask(shop, "bold", 22, max_w=w - 60)
        sx = (w - m.shape[1]) // 2
        band = img[h - 118 : h - 118 + m.shape[0] + 12, 30 : w - 30]
        band[:] = (20, 20, 140) if rng.random() < 0.5 else (30, 30, 30)
        reg = img[h - 112 : h - 112 + m.shape[0], sx : sx + m.shape[1]]
        reg += (np.array([240, 240, 240], np.float32) - reg) * m[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def render_background(s: Scenario, cam: PinholeCamera, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Static background (BGR uint8) and the ground distance of every pixel (float32, inf for sky)."""
    W, H = s.camera.width, s.camera.height
    lay = _layout(s)
    tex = _ground_textures(rng, s.scene.kind)
    d = cam.rays(W, H)
    dz = d[..., 2]
    ground = dz < -1e-4
    tt = np.where(ground, -cam.C[2] / np.where(ground, dz, -1.0), np.inf).astype(np.float32)
    X = (cam.C[0] + tt * d[..., 0]).astype(np.float32)
    Y = (cam.C[1] + tt * d[..., 1]).astype(np.float32)
    far = ~np.isfinite(tt) | (tt > 400)
    X, Y = np.where(far, 0, X).astype(np.float32), np.where(far, 0, Y).astype(np.float32)
    Xs, Ys = X, Y
    mx, my = (Xs / 0.02).astype(np.float32), (Ys / 0.02).astype(np.float32)

    def sample(t: np.ndarray) -> np.ndarray:
        return cv2.remap(t, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    road = (X >= lay.road_left) & (X <= lay.road_right)
    if s.scene.kind == "parking":
        img = sample(tex["asphalt"])
    else:
        side = tex["concrete"] if s.scene.kind == "city" else tex["grass"]
        img = np.where(road[..., None], sample(tex["asphalt"]), sample(side))
        if s.scene.kind == "city":  # curbs
            curb = (np.abs(X - lay.road_left) < 0.15) | (np.abs(X - lay.road_right) < 0.15)
            img[curb] = (185, 188, 190)
            lawn = (X < lay.road_left - 3.0) | (X > lay.road_right + 3.5)
            img = np.where(lawn[..., None], sample(tex["grass"]), img)
    # markings
    white = np.array([225, 228, 230], np.float32)
    yellow = np.array([40, 190, 230], np.float32)
    lw = s.traffic.lane_width_m
    lo_c = min(lay.lane_centers)
    marks = np.zeros((H, W), bool)
    ymark = np.zeros((H, W), bool)
    for k in range(1, len(lay.lane_centers)):
        xb = lo_c + (k - 0.5) * lw
        line = np.abs(X - xb) < 0.06
        if lay.lane_dirs[k] != lay.lane_dirs[k - 1]:
            ymark |= line | (np.abs(X - xb - 0.2) < 0.06)
        else:
            marks |= line & (np.mod(Y, 12.0) < 3.0)
    if s.scene.kind != "parking":
        marks |= (np.abs(X - (lay.road_left + 0.3)) < 0.07) | (np.abs(X - (lay.road_right - 0.3)) < 0.07)
    else:  # parking stalls beside the lane
        stall = ((X > lay.road_right + 0.5) & (X < lay.road_right + 5.5)) | ((X < lay.road_left - 0.5) & (X > lay.road_left - 5.5))
        marks |= stall & (np.mod(Y, 2.7) < 0.1)
        marks |= (np.abs(X - lay.road_right - 5.5) < 0.06) | (np.abs(X - lay.road_left + 5.5) < 0.06)
    if s.scene.crosswalk_at_m is not None:
        c0 = s.scene.crosswalk_at_m
        marks |= road & (Y > c0 - 0.4) & (Y < c0)
        marks |= road & (Y > c0 + 1.0) & (Y < c0 + 4.0) & (np.mod(X, 1.0) < 0.5)
    worn = sample(_noise_texture(rng, 512, (32, 128), (0.5, 0.5))) > -0.6  # worn paint
    img[marks & worn & ~far] = white
    img[ymark & worn & ~far] = yellow
    if s.lighting.mode == "day" and s.scene.clutter > 0:
        # cast shadows of trees and poles across the road: a 40 m tile of soft blobs
        blobs = np.zeros((512, 512), np.float32)
        for _ in range(int(6 + 10 * s.scene.clutter)):
            c = tuple(int(v) for v in rng.uniform(0, 512, 2))
            cv2.ellipse(blobs, c, (int(rng.uniform(20, 70)), int(rng.uniform(10, 35))), float(rng.uniform(0, 180)), 0, 360,
                        1.0, -1, cv2.LINE_AA)
        blobs = cv2.GaussianBlur(blobs, (0, 0), 4)
        smx, smy = (Xs / 0.08).astype(np.float32), (Ys / 0.08).astype(np.float32)
        shade = cv2.remap(blobs, smx, smy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        img = img * (1 - 0.45 * np.clip(shade, 0, 1) * ~far)[..., None]
    # distance haze and sky
    dist = np.where(far, np.inf, tt).astype(np.float32)
    sky_top, sky_bot = np.array([210, 170, 120], np.float32), np.array([235, 225, 215], np.float32)
    vv = np.clip(np.linspace(0, 1, H, dtype=np.float32), 0, 1)[:, None, None]
    sky = sky_top * (1 - vv) + sky_bot * vv
    haze = np.clip((np.where(far, 400, tt) - 60) / 340, 0, 1)[..., None].astype(np.float32)
    img = img * (1 - haze) + sky_bot * haze
    img = np.where(far[..., None], np.broadcast_to(sky, img.shape), img)
    img = np.clip(img, 0, 255).astype(np.uint8)

    _add_clutter(img, s, cam, lay, rng)
    return img, dist


def _quad(x: float, y: float, z0: float, z1: float, w: float, facing: str = "y") -> np.ndarray:
    """Upright rectangle corners (TL, TR, BR, BL): facing 'y' lies in the x-z plane, 'x' in the y-z plane."""
    if facing == "y":
        return np.array([[x - w / 2, y, z1], [x + w / 2, y, z1], [x + w / 2, y, z0], [x - w / 2, y, z0]])
    return np.array([[x, y - w / 2, z1], [x, y + w / 2, z1], [x, y + w / 2, z0], [x, y - w / 2, z0]])


def _add_clutter(img: np.ndarray, s: Scenario, cam: PinholeCamera, lay: _Layout, rng: np.random.Generator) -> None:
    """Buildings, poles, signs with text, trees, gantry or gate: drawn far to near."""
    items: list[tuple[float, callable]] = []
    dens = s.scene.clutter
    kind = s.scene.kind

    def add(depth_pt, fn):
        _, z = cam.project(np.asarray(depth_pt, np.float64))
        if z > 0.5:
            items.append((float(z), fn))

    # buildings along both sides (city, parking)
    if kind in ("city", "parking") and dens > 0:
        for side, x in (("far", lay.road_right + (8.0 if kind == "city" else 9.0)), ("near", lay.road_left - 8.0)):
            y = float(rng.uniform(-5, 5))
            while y < 160:
                length = float(rng.uniform(10, 25))
                height = float(rng.uniform(6, 18))
                if rng.random() < 0.4 + 0.6 * dens:
                    face = _facade_image(rng, _SHOP_TEXTS[int(rng.integers(len(_SHOP_TEXTS)))] if rng.random() < 0.7 else None)
                    q = _quad(x, y + length / 2, 0, height, length, facing="x")
                    if side == "far":  # seen from the road, the far side's facade reads toward -y
                        q = q[[1, 0, 3, 2]]
                    add(q.mean(axis=0), lambda q=q, face=face: _warp_image(img, face, cam.project(q)[0]) if (cam.project(q)[1] > 0.5).all() else None)
                y += length + float(rng.uniform(0, 6))
    # trees
    for _ in range(int(30 * dens)):
        side = rng.random() < 0.5
        x = (lay.road_right + rng.uniform(2.5, 7)) if side else (lay.road_left - rng.uniform(2.5, 7))
        y = float(rng.uniform(14, 120))  # none right in front of the lens
        r = float(rng.uniform(1.5, 3.0))
        col = tuple(float(c) for c in rng.uniform([30, 70, 30], [60, 120, 70]))

        def tree(x=x, y=y, r=r, col=col):
            (u, v), z = cam.project(np.array([x, y, r * 1.8]))
            (u0, v0), _ = cam.project(np.array([x, y, 0.0]))
            if z < 0.5:
                return
            rp = int(cam.f * r / z)
            cv2.line(img, (int(u0), int(v0)), (int(u), int(v)), (40, 50, 60), max(1, int(cam.f * 0.25 / z)), cv2.LINE_AA)
            cv2.circle(img, (int(u), int(v)), max(1, rp), col, -1, cv2.LINE_AA)
            cv2.circle(img, (int(u - rp * 0.3), int(v - rp * 0.3)), max(1, rp // 2), tuple(c * 1.2 for c in col), -1, cv2.LINE_AA)

        add((x, y, 0), tree)
    # poles with signs facing the camera: text that is not a plate
    nsigns = int(4 + 14 * dens)
    for _ in range(nsigns):
        side = rng.random() < 0.5
        x = (lay.road_right + rng.uniform(0.6, 2.5)) if side else (lay.road_left - rng.uniform(0.6, 2.5))
        y = float(rng.uniform(12, 90))
        text = _SIGN_TEXTS[int(rng.integers(len(_SIGN_TEXTS)))]
        sign = _sign_image(text, rng)
        sw = 0.6 * sign.shape[1] / sign.shape[0] * float(rng.uniform(0.8, 1.2))
        zt = float(rng.uniform(2.0, 3.2))

        def pole(x=x, y=y, sign=sign, sw=sw, zt=zt):
            (u0, v0), z0 = cam.project(np.array([x, y, 0.0]))
            (u1, v1), z1 = cam.project(np.array([x, y, zt]))
            if min(z0, z1) < 0.5:
                return
            cv2.line(img, (int(u0), int(v0)), (int(u1), int(v1)), (120, 120, 125), max(1, int(cam.f * 0.08 / z0)), cv2.LINE_AA)
            q = _quad(x, y - 0.05, zt - 0.6 * sw / (sign.shape[1] / sign.shape[0]), zt, sw)
            c, zz = cam.project(q)
            if (zz > 0.5).all():
                _warp_image(img, sign, c)

        add((x, y, 0), pole)
    if kind == "highway":  # gantry with overhead guide signs across the road
        yg = float(rng.uniform(40, 70))

        def gantry(yg=yg):
            z = 6.5
            for xx in (lay.road_left - 0.5, lay.road_right + 0.5):
                (u0, v0), z0 = cam.project(np.array([xx, yg, 0]))
                (u1, v1), _ = cam.project(np.array([xx, yg, z]))
                if z0 > 0.5:
                    cv2.line(img, (int(u0), int(v0)), (int(u1), int(v1)), (150, 150, 155), max(1, int(cam.f * 0.3 / z0)), cv2.LINE_AA)
            a, za = cam.project(np.array([lay.road_left - 0.5, yg, z]))
            b, zb = cam.project(np.array([lay.road_right + 0.5, yg, z]))
            if min(za, zb) > 0.5:
                cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (150, 150, 155), max(1, int(cam.f * 0.4 / za)), cv2.LINE_AA)
            for k, xc in enumerate(lay.lane_centers):
                t = ["EXIT 24 MAIN ST", "I-80 WEST", "SAN JOSE 12", "HWY 101 N", "AIRPORT 2"][k % 5]
                sg = _sign_image(t, np.random.default_rng(k + 7), h=96)
                sw = min(s.traffic.lane_width_m * 0.95, 2.2 * sg.shape[1] / sg.shape[0])
                q = _quad(xc, yg - 0.1, z - 2.2 * 0.5, z + 1.0, sw)
                c, zz = cam.project(q)
                if (zz > 0.5).all():
                    _warp_image(img, sg, c)

        add((lay.lane_centers[0], yg, 0), gantry)
    if kind == "parking" and s.traffic.stop_at_m is not None:  # booth and gate arm at the stop point
        ys = s.traffic.stop_at_m + 0.5

        def gate(ys=ys):
            xl = lay.road_left - 0.3
            q = _quad(xl - 0.8, ys + 1.5, 0, 1.8, 1.2)
            c, zz = cam.project(q)
            if (zz > 0.5).all():
                booth = np.full((64, 64, 3), 200, np.uint8)
                booth[8:30, 8:56] = (90, 70, 50)
                m = (text_mask("PAY 2HR", "bold", 10, max_w=56) * 255).astype(np.uint8)
                booth[40 : 40 + m.shape[0], 4 : 4 + m.shape[1]][m > 128] = (20, 20, 160)
                _warp_image(img, booth, c)

        add((lay.road_left - 1.0, ys, 0), gate)
    for _, fn in sorted(items, key=lambda it: -it[0]):
        fn()


# --------------------------------------------------------------------------------------- traffic


@dataclass
class Vehicle:
    vid: int
    lane: int
    x: float  # lateral centre
    direction: int  # -1 toward the camera, +1 away
    t0: float  # time the face toward the camera is at y_start
    y_start: float
    speed: float  # m/s
    length: float
    width: float
    height: float
    kind: str  # car, suv, van, truck
    color: tuple[float, float, float]
    plate_img: np.ndarray | None
    plate_text: str
    plate_state: str
    plate_z: float
    sticker: np.ndarray | None
    fleet: np.ndarray | None

    def front_y(self, t: float, stop_at: float | None, stop_s: float) -> float:
        """y of the face toward the camera at time t (stops once at stop_at for stop_s seconds)."""
        dt = t - self.t0
        if stop_at is None:
            return self.y_start + self.direction * self.speed * dt
        travel = (stop_at - self.y_start) * self.direction
        t_arrive = travel / self.speed if travel > 0 else -1.0
        if t_arrive < 0 or dt < t_arrive:
            return self.y_start + self.direction * self.speed * dt
        if dt < t_arrive + stop_s:
            return stop_at
        return stop_at + self.direction * self.speed * (dt - t_arrive - stop_s)


_KINDS = ("car", "suv", "hatch", "pickup", "van")
_KIND_CUM = np.cumsum([0.42, 0.28, 0.12, 0.11, 0.07])[:-1]
_DIMS = {"car": (4.6, 1.8, 1.45), "suv": (4.8, 1.9, 1.75), "hatch": (4.2, 1.78, 1.5), "pickup": (5.6, 2.0, 1.9),
         "van": (5.2, 2.0, 2.1), "truck": (7.5, 2.4, 3.2)}
_PAINTS = [(30, 30, 30), (230, 230, 230), (180, 180, 185), (120, 120, 125), (40, 40, 160), (140, 60, 20), (30, 60, 30),
           (200, 200, 200), (20, 20, 90), (60, 90, 140), (20, 20, 20), (170, 150, 130)]


def plan_traffic(s: Scenario, rng: np.random.Generator, plate_height: int) -> list[Vehicle]:
    """Every vehicle of the scenario, decided up front from the seed (arrivals are Poisson per lane)."""
    t = s.traffic
    lay = _layout(s)
    vehicles: list[Vehicle] = []
    if t.vehicles_per_minute <= 0:
        return vehicles
    rate = t.vehicles_per_minute / 60.0 / t.lanes
    # plates and decals come from a stream per vehicle: arrivals stay the same when the plate renderer
    # changes how many random numbers it draws
    look_seed = int(rng.integers(2**63))
    vid = 0
    for lane, (xc, direction) in enumerate(zip(lay.lane_centers, lay.lane_dirs)):
        lane_speed = rng.uniform(*t.speed_kmh) / 3.6
        # enter about 12 s away (40-120 m): slow traffic does not crawl in from far beyond the view
        y_far = float(np.clip(lane_speed * 12.0, 40.0, 120.0))
        y_start = y_far if direction < 0 else -10.0
        travel_s = (y_far + 10.0) / lane_speed + (t.stop_s if t.stop_at_m is not None else 0.0)
        tcur = -travel_s * rng.uniform(0.2, 0.9)  # start mid-stream: some vehicles are already in view
        last = -1e9
        while True:
            tcur += rng.exponential(1.0 / rate)
            if tcur > s.duration_s:
                break
            if rng.random() < t.truck_share:
                kind = "truck"
            else:  # US light-vehicle mix, roughly
                kind = _KINDS[int(np.searchsorted(_KIND_CUM, rng.random(), side="right"))]
            length, width, height = _DIMS[kind]
            length *= rng.uniform(0.92, 1.08)
            speed = lane_speed * rng.uniform(0.97, 1.03)
            gap = (length + 8.0) / speed + (t.stop_s if t.stop_at_m is not None else 0.0)
            if tcur - last < gap:  # keep a safe headway: no vehicles inside each other
                tcur = last + gap
                if tcur > s.duration_s:
                    break
            last = tcur
            if t.states:
                pool = t.states
            else:
                pool = list(ALL_STATES)
            if t.home_state and rng.random() < t.home_share:
                state = t.home_state
            else:
                state = pool[int(rng.integers(len(pool)))]
            show_plate = direction > 0 or rng.random() < t.front_plate_share
            has_sticker = direction > 0 and rng.random() < t.bumper_sticker_share
            has_fleet = kind in ("truck", "van") and rng.random() < 0.6
            look = np.random.default_rng([look_seed, vid])
            img, text, st = render_plate_images(1, look, height=plate_height, states=[state])[0]
            sticker = _sign_image(_STICKERS[int(look.integers(len(_STICKERS)))], look, h=40) if has_sticker else None
            fleet = _sign_image(_FLEET[int(look.integers(len(_FLEET)))], look, h=48) if has_fleet else None
            paint = _PAINTS[int(rng.integers(len(_PAINTS)))]
            color = tuple(float(np.clip(c * rng.uniform(0.85, 1.15), 0, 255)) for c in paint)
            plate_z = (0.45 if direction < 0 else 0.62) * (1.35 if kind == "truck" else 1.0) + rng.uniform(-0.05, 0.05)
            vehicles.append(Vehicle(vid, lane, xc + rng.uniform(-0.25, 0.25), direction, tcur, y_start, speed, length,
                                    width, height, kind, color, img if show_plate else None, text if show_plate else "",
                                    st, plate_z, sticker, fleet))
            vid += 1
    return vehicles


# ----------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class PlateTruth:
    """One plate visible in one frame.

    corners: 4 x [x, y] pixels, top-left, top-right, bottom-right, bottom-left of the plate.
    box: [x1, y1, x2, y2] axis-aligned with w = 2h around the plate (the real frame labels' convention).
    tight_box: [x1, y1, x2, y2] bounding box of the corners.
    visibility: fraction of the plate inside the frame and not hidden by a nearer vehicle (sampled on a
        4 x 3 grid); only plates with visibility >= 0.5 and their centre in the frame are reported.
    """

    frame: int
    t: float
    vehicle_id: int
    plate: str
    state: str
    corners: list[list[float]]
    box: list[float]
    tight_box: list[float]
    width_px: float
    visibility: float
    speed_kmh: float

    def to_dict(self) -> dict:
        return asdict(self)


def _box_faces(x0, x1, y0, y1, z0, z1, C) -> list[tuple[np.ndarray, str]]:
    """Faces of an axis-aligned box that face the camera at C, as (4x3 corners, which)."""
    faces = []
    if C[1] < y0:
        faces.append((np.array([[x0, y0, z1], [x1, y0, z1], [x1, y0, z0], [x0, y0, z0]]), "front"))
    if C[1] > y1:
        faces.append((np.array([[x1, y1, z1], [x0, y1, z1], [x0, y1, z0], [x1, y1, z0]]), "back"))
    if C[2] > z1:
        faces.append((np.array([[x0, y1, z1], [x1, y1, z1], [x1, y0, z1], [x0, y0, z1]]), "top"))
    if C[0] < x0:
        faces.append((np.array([[x0, y1, z1], [x0, y0, z1], [x0, y0, z0], [x0, y1, z0]]), "side"))
    if C[0] > x1:
        faces.append((np.array([[x1, y0, z1], [x1, y1, z1], [x1, y1, z0], [x1, y0, z0]]), "side"))
    return faces


class SceneRenderer:
    """Renders a scenario frame by frame; deterministic for (scenario, seed)."""

    def __init__(self, scenario: Scenario, seed: int | None = None):
        self.s = scenario
        self.seed = scenario.seed if seed is None else int(seed)
        self.cam = PinholeCamera.from_config(scenario.camera)
        rng = np.random.default_rng([self.seed, 1])
        bg, self.dist = render_background(scenario, self.cam, rng)
        self.light, self.plate_gain, self.mono = self._lighting()
        self.bg = self._light_background(bg)
        # plate texture resolution: about its largest on-screen size at the aim point
        aim = max(5.0, scenario.camera.mount_height_m / max(math.tan(math.radians(max(scenario.camera.vertical_angle_deg, 1))), 0.05))
        px = self.cam.f * PLATE_W_M / aim
        plate_h = int(np.clip(px * 0.75, 40, 160))
        self.vehicles = plan_traffic(scenario, np.random.default_rng([self.seed, 2]), plate_h)
        W, H = scenario.camera.width, scenario.camera.height
        nrng = np.random.default_rng([self.seed, 3])
        self.noise = None
        if scenario.weather.noise_sigma > 0:
            self.noise = []
            for _ in range(3):
                n = nrng.normal(0, scenario.weather.noise_sigma, (H, W, 1)).astype(np.float32)
                n = np.repeat(n, 3, axis=2) if self.mono else n + nrng.normal(0, scenario.weather.noise_sigma * 0.5, (H, W, 3)).astype(np.float32)
                n = np.concatenate([n, n[:, : W // 2]], axis=1)  # extra width: per-frame offsets by slicing
                self.noise.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        self.rain = None
        if scenario.weather.rain > 0:
            self.rain = []
            for _ in range(3):
                layer = np.zeros((H, W), np.uint8)
                k = int(scenario.weather.rain * W * H / 800)
                xs, ys = nrng.uniform(0, W, k), nrng.uniform(0, H, k)
                ln = nrng.uniform(0.01, 0.03, k) * H
                for x, y, l in zip(xs, ys, ln):
                    cv2.line(layer, (int(x), int(y)), (int(x + l * 0.15), int(y + l)), 70, 1, cv2.LINE_AA)
                self.rain.append(cv2.cvtColor(layer, cv2.COLOR_GRAY2BGR))
        # at least one frame: a duration under half a frame rounded to none, an empty, unreadable video
        self.frames = max(1, int(round(scenario.duration_s * scenario.camera.fps)))

    # lighting --------------------------------------------------------------------------------
    def _lighting(self) -> tuple[np.ndarray, float, bool]:
        lt = self.s.lighting
        b = lt.brightness
        if lt.mode == "day":
            return np.array([1.0, 1.0, 1.0]) * b, 1.0 * b, False
        if lt.mode == "dusk":
            return np.array([0.45, 0.5, 0.62]) * b, 0.6 * b, False
        if lt.ir:
            return np.array([0.35, 0.35, 0.35]) * b, 1.25 * b, True
        return np.array([0.16, 0.17, 0.2]) * b, 0.45 * b, False

    def _light_background(self, bg: np.ndarray) -> np.ndarray:
        lt = self.s.lighting
        img = bg.astype(np.float32) * self.light.astype(np.float32)
        if lt.mode == "night":
            # illumination falls off with distance (IR illuminator or street lights)
            d = np.where(np.isfinite(self.dist), self.dist, 1e3)
            fall = np.clip(1.8 * (12.0 / np.maximum(d, 3.0)) ** 1.2, 0.08, 1.6)[..., None].astype(np.float32)
            img = img * fall if lt.ir else img * (0.5 + 0.5 * fall)
        if self.s.weather.fog > 0:
            d = np.where(np.isfinite(self.dist), self.dist, 1e3)
            f = (1 - np.exp(-d / (120 * (1.05 - self.s.weather.fog))))[..., None].astype(np.float32) * self.s.weather.fog
            img = img * (1 - f) + np.float32(190) * self.light.astype(np.float32).mean() * f
        img = np.clip(img, 0, 255).astype(np.uint8)
        if self.mono:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        return img

    # frames ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[np.ndarray, list[PlateTruth]]]:
        for i in range(self.frames):
            yield self.render_frame(i)

    def render_frame(self, i: int) -> tuple[np.ndarray, list[PlateTruth]]:
        s = self.s
        t = i / s.camera.fps
        frame = self.bg.copy()
        H, W = frame.shape[:2]
        ids = np.zeros((H, W), np.int32)  # which vehicle (id + 1) owns each pixel: occlusion for the truth
        placed = []
        for v in self.vehicles:
            yf = v.front_y(t, s.traffic.stop_at_m, s.traffic.stop_s)
            y0, y1 = (yf, yf + v.length)
            if y0 > 200 or y1 < -2:
                continue
            _, z = self.cam.project(np.array([v.x, y0, 0.5]))
            if z < 1.0:
                continue
            placed.append((float(z), v, y0))
        truths_raw = []
        for _, v, y0 in sorted(placed, key=lambda p: -p[0]):
            tr = self._draw_vehicle(frame, ids, v, y0, t)
            if tr is not None:
                truths_raw.append(tr)
        truths = []
        for v, corners, speed in truths_raw:
            vis = self._visibility(ids, corners, v.vid + 1)
            cx, cy = corners.mean(axis=0)
            if vis < 0.5 or not (0 <= cx < W and 0 <= cy < H):  # mostly hidden or mostly out of the frame
                continue
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            truths.append(PlateTruth(
                frame=i, t=round(t, 4), vehicle_id=v.vid, plate=v.plate_text, state=v.plate_state,
                corners=[[round(float(x), 2), round(float(y), 2)] for x, y in corners],
                box=[round(float(c), 2) for c in plate_box(corners)],
                tight_box=[round(float(lo[0]), 2), round(float(lo[1]), 2), round(float(hi[0]), 2), round(float(hi[1]), 2)],
                width_px=round(float(np.linalg.norm(corners[1] - corners[0])), 2), visibility=round(vis, 3),
                speed_kmh=round(speed * 3.6, 1),
            ))
        frame = self._post(frame, i, t)
        return frame, truths

    def _visibility(self, ids: np.ndarray, corners: np.ndarray, own: int) -> float:
        H, W = ids.shape
        a, b = np.linspace(0.1, 0.9, 4), np.linspace(0.15, 0.85, 3)
        tl, tr, br, bl = corners
        pts = [(tl + (tr - tl) * u) * (1 - w) + (bl + (br - bl) * u) * w for u in a for w in b]
        hits = 0
        for x, y in pts:
            xi, yi = int(math.floor(x)), int(math.floor(y))
            if 0 <= xi < W and 0 <= yi < H and ids[yi, xi] == own:
                hits += 1
        return hits / len(pts)

    def _draw_vehicle(self, frame, ids, v: Vehicle, y0: float, t: float):
        cam = self.cam
        C = cam.C
        H, W = frame.shape[:2]
        x0, x1 = v.x - v.width / 2, v.x + v.width / 2
        y1 = y0 + v.length
        toward = v.direction < 0
        boxes = []  # (x0, x1, y0, y1, z0, z1, role)
        if v.kind == "truck":
            cab_len = 2.2
            if toward:
                boxes.append((x0, x1, y0, y0 + cab_len, 0.35, v.height * 0.8, "cab"))
                boxes.append((x0, x1, y0 + cab_len + 0.2, y1, 0.6, v.height, "cargo"))
            else:
                boxes.append((x0, x1, y0, y1 - cab_len - 0.2, 0.6, v.height, "cargo"))
                boxes.append((x0, x1, y1 - cab_len, y1, 0.35, v.height * 0.8, "cab"))
        elif v.kind == "van":
            boxes.append((x0, x1, y0, y1, 0.3, v.height, "van"))
        else:
            body_h = {"car": 0.95, "hatch": 0.95, "suv": 1.1, "pickup": 1.15}.get(v.kind, 1.0)
            boxes.append((x0, x1, y0, y1, 0.28 if v.kind in ("car", "hatch") else 0.4, body_h, "body"))
            inset = 0.12
            # cabin span along the vehicle, as fractions of its length from the front (hood first)
            front_frac = {"car": (0.30, 0.78), "hatch": (0.30, 0.97), "suv": (0.28, 0.97), "pickup": (0.28, 0.58)}[v.kind]
            a, b = front_frac
            if toward:  # the face toward the camera is the front
                cy0, cy1 = y0 + a * v.length, y0 + b * v.length
            else:  # the rear faces the camera: mirror the spans
                cy0, cy1 = y0 + (1 - b) * v.length, y0 + (1 - a) * v.length
            boxes.append((x0 + inset, x1 - inset, cy0, cy1, body_h, v.height, "cabin"))
        # screen rectangle of everything (plus the shadow on the road)
        allpts = []
        for b in boxes:
            bx0, bx1, by0, by1, bz0, bz1, _ = b
            allpts += [[bx, by, bz] for bx in (bx0, bx1) for by in (by0, by1) for bz in (0.0, bz1)]
        allpts += [[x0 - 0.3, y0 - 0.3, 0], [x1 + 0.3, y1 + 0.3, 0]]
        uv, z = cam.project(np.array(allpts))
        if (z < 0.5).any():
            return None
        rx0, ry0 = int(max(0, np.floor(uv[:, 0].min()) - 8)), int(max(0, np.floor(uv[:, 1].min()) - 8))
        rx1, ry1 = int(min(W, np.ceil(uv[:, 0].max()) + 8)), int(min(H, np.ceil(uv[:, 1].max()) + 8))
        if rx1 - rx0 < 2 or ry1 - ry0 < 2:
            return None
        off = np.array([rx0, ry0], np.float64)
        rw, rh = rx1 - rx0, ry1 - ry0
        layer = np.zeros((rh, rw, 3), np.uint8)
        mask = np.zeros((rh, rw, 3), np.uint8)
        light = self.light
        base = np.array(v.color) * light

        def poly(pts3, color, m=True):
            p, zz = cam.project(pts3)
            if (zz < 0.3).any():
                return None
            q = np.round((p - off) * 4).astype(np.int32)  # sub-pixel (shift=2)
            cv2.fillConvexPoly(layer, q, tuple(float(c) for c in np.clip(color, 0, 255)), cv2.LINE_AA, 2)
            if m:
                cv2.fillConvexPoly(mask, q, (255, 255, 255), cv2.LINE_AA, 2)
            return p

        # shadow under the vehicle, darkening the road
        sh = np.array([[x0 - 0.15, y1 + 0.3, 0], [x1 + 0.15, y1 + 0.3, 0], [x1 + 0.15, y0 - 0.2, 0], [x0 - 0.15, y0 - 0.2, 0]])
        p, _ = cam.project(sh)
        # soft edge: drawn and blurred at quarter resolution, then scaled up (a full-size blur is the cost)
        qw, qh = max(1, rw // 4), max(1, rh // 4)
        shadow = np.zeros((qh, qw), np.uint8)
        cv2.fillConvexPoly(shadow, np.round((p - off) * 4 * np.array([qw / rw, qh / rh])).astype(np.int32), 255,
                           cv2.LINE_AA, 2)
        shadow = cv2.resize(cv2.GaussianBlur(shadow, (0, 0), max(0.5, qw / 60)), (rw, rh), interpolation=cv2.INTER_LINEAR)
        roi = frame[ry0:ry1, rx0:rx1]
        keep = cv2.cvtColor(255 - (shadow.astype(np.uint16) * 140 // 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        cv2.multiply(roi, keep, dst=roi, scale=1 / 255)  # uint8 OpenCV arithmetic: big ROIs stay cheap

        # wheels (drawn first, the body covers their top)
        side_x = x0 if C[0] < x0 else (x1 if C[0] > x1 else None)
        if side_x is not None:
            for wy in (y0 + 0.18 * v.length, y1 - 0.2 * v.length):
                r = 0.36 if v.kind != "truck" else 0.5
                ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
                circ = np.stack([np.full_like(ang, side_x), wy + r * np.cos(ang), r + r * np.sin(ang)], 1)
                poly(circ, np.array([25, 25, 25]) * light / max(light.max(), 1e-6) * min(1.0, light.max()))
        # boxes: far parts first (faces of a convex box do not overlap each other)
        boxes.sort(key=lambda b: -abs((b[2] + b[3]) / 2 - C[1]))
        front_face = None
        for bx0, bx1, by0, by1, bz0, bz1, role in boxes:
            for pts3, which in _box_faces(bx0, bx1, by0, by1, bz0, bz1, C):
                shade = {"top": 1.05, "side": 0.72, "front": 0.88, "back": 0.88}[which]
                col = base * shade
                glass = np.array([70, 55, 45]) * light
                if role == "cabin" and which in ("front", "back", "side"):
                    poly(pts3, col)
                    inner = pts3.mean(axis=0) + (pts3 - pts3.mean(axis=0)) * np.array([[0.9, 0.9, 0.8]])
                    poly(inner, glass * (1.2 if which == "side" else 1.0))
                    continue
                if role in ("van", "cab") and which == "front":
                    poly(pts3, col)
                    top = pts3.copy()
                    top[2:, 2] = bz0 + (bz1 - bz0) * 0.55
                    top = top.mean(axis=0) + (top - top.mean(axis=0)) * np.array([[0.9, 1, 0.85]])
                    poly(top, glass)
                    if role == "cab" or v.kind == "van":
                        if by0 == y0:
                            front_face = (bx0, bx1, by0, bz0, bz1)
                    continue
                poly(pts3, col)
                if which in ("side", "front", "back") and role in ("body", "van", "cab"):
                    # darker sill along the bottom and a light crease line: reads as a car body, not a box
                    sill = pts3.copy()
                    sill[:2, 2] = bz0 + 0.22 * (bz1 - bz0)
                    poly(sill, col * 0.62, m=False)
                    crease = pts3.copy()
                    crease[:2, 2] = bz0 + 0.62 * (bz1 - bz0)
                    crease[2:, 2] = bz0 + 0.58 * (bz1 - bz0)
                    poly(crease, np.minimum(col * 1.25 + 10, 255), m=False)
                if which == "front" and abs(by0 - y0) < 1e-6 and role in ("body", "cargo", "van"):
                    front_face = (bx0, bx1, by0, bz0, bz1)
                if which == "side" and role in ("cargo", "van") and v.fleet is not None:
                    xs = pts3[0, 0]
                    q = np.array([[xs, by1 - 0.5, bz1 - 0.4], [xs, by0 + 0.5, bz1 - 0.4], [xs, by0 + 0.5, bz0 + 0.6],
                                  [xs, by1 - 0.5, bz0 + 0.6]]) if C[0] < xs else None
                    if q is not None:
                        c, zz = cam.project(q)
                        if (zz > 0.5).all():
                            layer[:] = composite_plate(layer, (v.fleet * min(1.0, light.max())).astype(np.uint8), c - off)
        if front_face is None:
            return None
        fx0, fx1, fy, fz0, fz1 = front_face
        ypl = fy - 0.02
        # bumper, lights
        poly(np.array([[fx0, ypl, fz0 + 0.22], [fx1, ypl, fz0 + 0.22], [fx1, ypl, fz0], [fx0, ypl, fz0]]),
             np.array([35, 35, 38]) * light)
        lamp_z = min(fz1 - 0.05, 0.75 if v.kind != "truck" else 1.0)
        lamp_col = np.array([200, 230, 240]) if toward else np.array([30, 30, 200])
        night = self.s.lighting.mode != "day"
        for lx in (fx0 + 0.08, fx1 - 0.33):
            poly(np.array([[lx, ypl - 0.01, lamp_z], [lx + 0.25, ypl - 0.01, lamp_z], [lx + 0.25, ypl - 0.01, lamp_z - 0.12],
                           [lx, ypl - 0.01, lamp_z - 0.12]]), lamp_col * (1.0 if night else light.max()))
        # sticker (rear) and plate
        if v.sticker is not None:
            q = np.array([[fx1 - 0.7, ypl - 0.01, lamp_z - 0.05], [fx1 - 0.35, ypl - 0.01, lamp_z - 0.05],
                          [fx1 - 0.35, ypl - 0.01, lamp_z - 0.14], [fx1 - 0.7, ypl - 0.01, lamp_z - 0.14]])
            c, zz = cam.project(q)
            if (zz > 0.5).all():
                layer[:] = composite_plate(layer, v.sticker, c - off, shade=float(light.max()))
        truth = None
        if v.plate_img is not None:
            pz = v.plate_z
            q = np.array([[v.x - PLATE_W_M / 2, ypl - 0.015, pz + PLATE_H_M], [v.x + PLATE_W_M / 2, ypl - 0.015, pz + PLATE_H_M],
                          [v.x + PLATE_W_M / 2, ypl - 0.015, pz], [v.x - PLATE_W_M / 2, ypl - 0.015, pz]])
            corners, zz = cam.project(q)
            if (zz > 0.5).all():
                layer[:] = composite_plate(layer, v.plate_img, corners - off, shade=self.plate_gain)
                speed = v.speed if abs(v.front_y(t + 1e-3, self.s.traffic.stop_at_m, self.s.traffic.stop_s) - y0) > 1e-6 else 0.0
                truth = (v, corners.astype(np.float32), speed)
        if night and toward:  # headlight glow
            for lx in (fx0 + 0.2, fx1 - 0.2):
                (gu, gv), gz = cam.project(np.array([lx, ypl, lamp_z - 0.06]))
                r = max(2, int(cam.f * 0.25 / gz))
                glow = np.zeros((rh, rw), np.uint8)
                cv2.circle(glow, (int(gu - off[0]), int(gv - off[1])), r, 255, -1, cv2.LINE_AA)
                glow = cv2.GaussianBlur(glow, (0, 0), r * 0.8)
                layer[:] = cv2.add(layer, cv2.merge([glow, glow, glow]))
                mask[:] = cv2.max(mask, cv2.merge([glow, glow, glow]))
        # motion blur from speed x shutter, along the projected motion
        speed_now = v.speed if abs(v.front_y(t + 1e-3, self.s.traffic.stop_at_m, self.s.traffic.stop_s) - y0) > 1e-6 else 0.0
        if speed_now > 0:
            cpt = np.array([v.x, y0, 0.6])
            a, _ = cam.project(cpt)
            b, _ = cam.project(cpt + np.array([0, v.direction * speed_now * self.s.camera.shutter_s, 0]))
            dv = b - a
            length = float(np.hypot(*dv))
            if length >= 1.0:
                k = motion_kernel(length, float(math.atan2(dv[1], dv[0])))
                layer = cv2.filter2D(layer, -1, k)
                mask = cv2.filter2D(mask, -1, k)
        # premultiplied blend: roi = roi * (1 - mask) + layer
        cv2.add(cv2.multiply(roi, cv2.bitwise_not(mask), scale=1 / 255), layer, dst=roi)
        ids_roi = ids[ry0:ry1, rx0:rx1]
        ids_roi[mask[..., 0] > 127] = v.vid + 1
        return truth

    def _post(self, frame: np.ndarray, i: int, t: float) -> np.ndarray:
        s = self.s
        if s.camera.focus_blur_px > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), s.camera.focus_blur_px)
        if self.rain is not None:
            frame = cv2.add(frame, self.rain[i % len(self.rain)])
        if self.mono:
            frame = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        if self.noise is not None:
            pos, neg = self.noise[i % len(self.noise)]
            W = frame.shape[1]
            a, b = (i * 7919) % (W // 2), (i * 104729) % (W // 2)
            frame = cv2.subtract(cv2.add(frame, pos[:, a : a + W]), neg[:, b : b + W])
        if s.camera.timestamp_overlay:
            secs = 14 * 3600 + 3 * 60 + t
            stamp = f"2026-11-26 {int(secs // 3600):02d}:{int(secs % 3600 // 60):02d}:{secs % 60:06.3f}  {s.camera.label}"
            scale = s.camera.height / 1080 * 0.9
            org = (int(12 * scale + 4), int(34 * scale + 4))
            thick = max(1, int(round(2 * scale)))
            o = max(1, thick // 2 + 1)
            for dx, dy in ((-o, -o), (o, o), (-o, o), (o, -o)):  # outline: same thickness, or the advance differs
                cv2.putText(frame, stamp, (org[0] + dx, org[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                            cv2.LINE_AA)
            cv2.putText(frame, stamp, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return frame


def iter_scene_frames(scenario: Scenario | str | Path, seed: int | None = None) -> Iterator[tuple[np.ndarray, list[PlateTruth]]]:
    """Yield (frame_bgr uint8 HxWx3, [PlateTruth, ...]) for every frame of the scenario, deterministically."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    yield from SceneRenderer(scenario, seed)


def _frame_label_rows(name: str, truths: list[PlateTruth], min_plate_px: float) -> list[tuple]:
    """labels.csv rows of one saved frame: a 2:1 box per plate at least min_plate_px wide; for a
    frame with no plate in view, one row with empty fields, so the benches count what is detected
    there as a false alarm. A frame whose plates are all narrower gets no row: unlabelled, since a
    detection of such a plate is neither a hit nor a false alarm."""
    if not truths:
        return [(name, "", "", "", "", "")]
    rows = []
    for tr in truths:
        if tr.width_px >= min_plate_px:
            x0, y0, x1, y1 = tr.box
            rows.append((name, int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)), tr.plate))
    return rows


def file_stem(name: str) -> str:
    """`name` as part of a file name: runs of characters other than letters, digits, '.', '_' and
    '-' become '_' (a scenario named "lot b/entry" had its frames written into a folder that does
    not exist: OpenCV wrote nothing, said nothing, and labels.csv named the missing files)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scenario"


def _imwrite(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    """cv2.imwrite, which returns False instead of raising (a full disk, a bad name): raised here."""
    if not cv2.imwrite(str(path), image, params or []):
        raise OSError(f"cannot write {path} (disk full, or the folder not writable?)")


def check_video_size(scenario: Scenario, source: str = "scenario") -> None:
    """Refuse a camera resolution a video file cannot hold as is (a ScenarioError naming the field).

    MPEG-4 and Motion-JPEG store colour at half resolution, so OpenCV's writers need an even width
    and height: an odd one was written one column or row short while the ground truth (and the
    frames folder) kept the scenario's size, so boxes near the edge pointed past the video's frames.
    Refused rather than padded or scaled: the video, the frames and the ground truth then all have
    exactly the size the scenario asks for.
    """
    for field in ("width", "height"):
        value = getattr(scenario.camera, field)
        if value % 2:
            raise ScenarioError(
                f"{source}: camera.{field}: {value} is odd; a video needs an even width and height "
                f"(the encoder would drop the last {'column' if field == 'width' else 'row'} and the "
                f"ground truth would not match): use {value - 1} or {value + 1}")


class SceneInterrupted(KeyboardInterrupt):
    """render_scene_to_dir stopped by Ctrl-C or SIGTERM after `frames` of `total` frames; what it
    wrote (the video, closed, and the ground truth, frames and crops of those frames) is kept."""

    def __init__(self, frames: int, total: int, video: Path):
        super().__init__(f"interrupted after {frames} of {total} frames")
        self.frames, self.total, self.video = frames, total, video


def render_scene_to_dir(
    scenario: Scenario,
    out: str | Path,
    seed: int | None = None,
    container: str = "mp4",
    frames_every: int = 0,
    min_plate_px: float = 12.0,
) -> dict:
    """Write `video.mp4` (or .avi), `ground_truth.jsonl` (one line per frame) and `scenario.json` into `out`.

    With `frames_every` = K > 0, every K-th frame is also written to `out/frames/` as a JPEG with a
    `labels.csv` (`file,x,y,w,h,plate`, the real frames folder's format: 2:1 boxes, one row per plate
    at least `min_plate_px` wide; a frame showing no plate gets `name,,,,,`, edge.sources.folder's
    "labelled: no plate here"), so the detector benches and training can read it; and each of those
    plates is cut out (its 2:1 box) into `out/crops/` with `labels.csv` (`file,state,plate`, the real
    crops folder's format) for the OCR bench.
    """
    check_video_size(scenario, source=scenario.name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = SceneRenderer(scenario, seed)
    setup_s = time.perf_counter() - t0
    W, H = scenario.camera.width, scenario.camera.height
    video = out / f"video.{container}"
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if container == "mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(video), fourcc, float(scenario.camera.fps), (W, H))
    if not writer.isOpened() and container == "mp4":  # an OpenCV build without an MP4 muxer: Motion-JPEG AVI
        video = out / "video.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), float(scenario.camera.fps), (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {video}")
    sightings, seen = 0, set()
    render_s = 0.0
    frame_labels = plate_less = crops = 0
    stem = file_stem(scenario.name)  # the frames' file names: a name like "lot b/entry" is no file name
    (out / "scenario.json").write_text(json.dumps({"seed": r.seed, **scenario.model_dump(mode="json")}, indent=2))
    # Every file grows with the frames, each line flushed once what it describes is written, and the
    # video is closed whatever stops the loop: an interrupted render (Ctrl-C, SIGTERM) leaves a
    # shorter clip whose ground truth, frames and crops agree with it (the labels were written only
    # at the end: saved frames and crops without labels).
    with contextlib.ExitStack() as files:
        files.callback(writer.release)
        gt = files.enter_context(open(out / "ground_truth.jsonl", "w"))
        if frames_every > 0:
            import csv

            (out / "frames").mkdir(exist_ok=True)
            (out / "crops").mkdir(exist_ok=True)
            frame_labels_file = files.enter_context(open(out / "frames" / "labels.csv", "w", newline=""))
            crop_labels_file = files.enter_context(open(out / "crops" / "labels.csv", "w", newline=""))
            frame_labels_csv, crop_labels_csv = csv.writer(frame_labels_file), csv.writer(crop_labels_file)
            frame_labels_csv.writerow(["file", "x", "y", "w", "h", "plate"])
            crop_labels_csv.writerow(["file", "state", "plate"])
        done = 0  # frames whose video frame, ground truth line and labels are all written
        try:
            for i in range(r.frames):
                a = time.perf_counter()
                frame, truths = r.render_frame(i)
                render_s += time.perf_counter() - a
                writer.write(frame)
                if frames_every > 0 and i % frames_every == 0:
                    name = f"{stem}-{r.seed}-{i:06d}.jpg"
                    _imwrite(out / "frames" / name, frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
                    rows = _frame_label_rows(name, truths, min_plate_px)
                    frame_labels_csv.writerows(rows)
                    frame_labels_file.flush()
                    plate_less += not truths
                    frame_labels += len(rows) - (not truths)
                    for tr in truths:
                        if tr.width_px >= min_plate_px:
                            x0, y0, x1, y1 = tr.box
                            cx0, cy0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
                            cx1, cy1 = min(W, int(math.ceil(x1))), min(H, int(math.ceil(y1)))
                            if tr.visibility == 1.0 and cx1 - cx0 >= 8 and cy1 - cy0 >= 4:
                                crop_name = f"{tr.state}-{r.seed}-{i:06d}-{tr.vehicle_id}.png"
                                _imwrite(out / "crops" / crop_name, frame[cy0:cy1, cx0:cx1])
                                crop_labels_csv.writerow((crop_name, tr.state, tr.plate))
                                crop_labels_file.flush()
                                crops += 1
                sightings += len(truths)
                seen.update(tr.vehicle_id for tr in truths)
                gt.write(json.dumps({"frame": i, "t": round(i / scenario.camera.fps, 4),
                                     "plates": [tr.to_dict() for tr in truths]}) + "\n")
                gt.flush()
                done += 1
        except KeyboardInterrupt:
            raise SceneInterrupted(done, r.frames, video) from None
    return {
        "scenario": scenario.name,
        "seed": r.seed,
        "frames": r.frames,
        "resolution": f"{W}x{H}",
        "fps": scenario.camera.fps,
        "vehicles": len(r.vehicles),
        "plates_seen": len(seen),
        "plate_sightings": sightings,
        "setup_s": round(setup_s, 3),
        "render_fps": round(r.frames / max(render_s, 1e-9), 2),
        "video": str(video),
        "ground_truth": str(out / "ground_truth.jsonl"),
        "frames_dir": str(out / "frames") if frames_every > 0 else None,
        "frame_labels": frame_labels,  # plates labelled
        "plate_less_frames": plate_less,
        "crops": crops,
    }
