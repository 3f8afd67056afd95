"""Test helpers for the edge node: a read collector and a scripted scene.

The scripted scene is a tiny low-resolution road: each vehicle is a solid plate-coloured rectangle
moving across the frame. `ColourKeyedDetector` finds those rectangles (by thresholding, on the
pixels) and `ColourKeyedOCR` reads a crop by its colour (each plate has its own colour) and
misreads characters at a given rate, so tests exercise the real tracker, vote, outbox and MQTT
path without trained models.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.vision.base import Detections, Detector, PlateOCR, PlateTexts

class Collector:
    """Subscribes (QoS 1, persistent session) and keeps every JSON payload it receives."""

    def __init__(self, url: str, topic: str = "alpr/raw/#", client_id: str | None = None):
        import paho.mqtt.client as mqtt

        from edge.transport.mqtt import parse_broker_url

        b = parse_broker_url(url)
        self.messages: list[dict] = []
        self.topics: list[str] = []
        self.dups: list[bool] = []  # the broker re-delivering to us (our PUBACK was lost), not a new publish
        self.lock = threading.Lock()
        self.connected = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{os.getpid()}-{id(self)}",
            clean_session=False,
        )
        if b.username:
            c.username_pw_set(b.username, b.password)
        c.reconnect_delay_set(0.1, 0.5)

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe(topic, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.topics.append(msg.topic)
                self.dups.append(bool(msg.dup))
                try:
                    self.messages.append(json.loads(msg.payload))
                except ValueError:
                    self.messages.append({"raw": msg.payload})

        c.on_connect = on_connect
        c.on_message = on_message
        c.connect_async(b.host, b.port)
        c.loop_start()
        self.client = c
        assert self.connected.wait(10), "collector could not connect"
        time.sleep(0.2)  # SUBACK

    def read_ids(self, fresh_only: bool = False) -> list[str]:
        """Read ids received; fresh_only: leave out the broker's own re-deliveries (DUP set)."""
        with self.lock:
            return [m["read_id"] for m, d in zip(self.messages, self.dups) if "read_id" in m and not (fresh_only and d)]

    def wait_for(self, n_unique: int, timeout: float = 20) -> set[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(set(self.read_ids())) >= n_unique:
                break
            time.sleep(0.05)
        return set(self.read_ids())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- a scripted scene -------------------------------------------------------------------------

ROAD_GREY = 90


@dataclass(frozen=True)
class Vehicle:
    plate: str
    colour: tuple[int, int, int]  # BGR, unique per vehicle
    enter_frame: int
    y: int
    speed: float  # px per frame (negative: right to left)
    size: float = 1.0  # plate size relative to the others (a placard lettered like a plate: 4+)


def plate_colour(i: int) -> tuple[int, int, int]:
    # Bright, well separated colours; none close to the road grey.
    return (40 + (i * 53) % 200, 255 - (i * 37) % 120, 120 + (i * 71) % 130)


def scripted_scene(
    n_vehicles: int, width: int = 320, height: int = 180, gap: int = 14, seed: int = 0, speed: float = 12.0,
    occlude: tuple[int, int] | None = None, sizes: dict[int, float] | None = None,
):
    """Vehicles crossing left to right one after another; returns (vehicles, frame count, render).
    occlude=(a, b): frames a..b-1 hide every plate (something passes in front of the camera).
    sizes: vehicle index -> its plate's size relative to the others (default 1)."""
    rng = np.random.default_rng(seed)
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    vehicles = []
    for i in range(n_vehicles):
        plate = "".join(rng.choice(list(alphabet), size=7))
        vehicles.append(Vehicle(plate, plate_colour(i), i * gap, 60 + 20 * (i % 3), speed, (sizes or {}).get(i, 1.0)))
    plate_w, plate_h = 40, 16
    n_frames = vehicles[-1].enter_frame + int((width + plate_w * vehicles[-1].size) / speed) + 4

    def render(k: int) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
        frame = np.full((height, width, 3), ROAD_GREY, np.uint8)
        frame[::8, :, :] = ROAD_GREY + 10  # some texture
        truth = []
        if occlude and occlude[0] <= k < occlude[1]:
            return frame, truth
        for v in vehicles:
            pw, ph = int(plate_w * v.size), int(plate_h * v.size)
            x = int(-pw + (k - v.enter_frame) * v.speed)
            if k < v.enter_frame or x >= width or x + pw <= 0:
                continue
            x1, x2 = max(0, x), min(width, x + pw)
            frame[v.y : v.y + ph, x1:x2] = v.colour
            if x2 - x1 >= pw * 0.7:  # mostly in view: a plate the tests expect to be read
                truth.append((v.plate, (x1, v.y, x2, v.y + ph)))
        return frame, truth

    return vehicles, n_frames, render


class ColourKeyedDetector(Detector):
    """Finds the bright rectangles of the scripted scene (connected components off the road grey)."""

    def __init__(self, min_area: int = 200):
        self.min_area = min_area
        self.calls = 0

    def predict(self, frames):
        import cv2

        out = []
        for f in frames:
            self.calls += 1
            mask = (np.abs(f.astype(np.int16) - ROAD_GREY).max(axis=2) > 25).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            boxes = [
                [x, y, x + w, y + h] for x, y, w, h, area in stats[1:] if area >= self.min_area and w >= 0.7 * 40
            ]
            if not boxes:
                out.append(Detections.empty())
                continue
            b = np.array(boxes, np.float32)
            out.append(Detections(b, np.full(len(b), 0.9, np.float32), None))
        return out


class ColourKeyedOCR(PlateOCR):
    """Reads a crop by the median colour of its centre; misreads `error_rate` of the characters (seeded)."""

    def __init__(self, vehicles, error_rate: float = 0.0, seed: int = 0):
        self.table = {v.colour: v.plate for v in vehicles}
        self.colours = np.array([v.colour for v in vehicles], np.float32)
        self.plates = [v.plate for v in vehicles]
        self.error_rate = error_rate
        self.rng = np.random.default_rng(seed)
        self.batches: list[int] = []
        self.frame_misreads = 0

    def predict(self, crops):
        self.batches.append(len(crops))
        texts, confs, ccs = [], [], []
        for c in crops:
            h, w = c.shape[:2]
            mean = np.median(c[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3), axis=0)
            d = np.abs(self.colours - mean).sum(axis=1)
            k = int(d.argmin())
            if d[k] > 30:
                texts.append("")
                confs.append(0.0)
                ccs.append(np.zeros(0, np.float32))
                continue
            t = list(self.plates[k])
            cc = self.rng.uniform(0.8, 0.99, len(t)).astype(np.float32)
            wrong = self.rng.random(len(t)) < self.error_rate
            for p in np.nonzero(wrong)[0]:
                t[p] = "Q" if t[p] != "Q" else "O"
                cc[p] = self.rng.uniform(0.3, 0.7)
            if wrong.any():
                self.frame_misreads += 1
            texts.append("".join(t))
            confs.append(float(np.prod(cc)))
            ccs.append(cc)
        return PlateTexts(texts, np.array(confs, np.float32), ccs)


class ScriptedSource:
    """A FrameSource over `scripted_scene` (labels carry the vehicle index as `track`)."""

    def __new__(cls, n_vehicles: int = 6, fps: float = 25.0, lead_in: int = 0, seed: int = 0, **kw):
        from datetime import datetime, timedelta, timezone

        from edge.sources.base import Frame, FrameSource, PlateLabel

        vehicles, n_frames, render = scripted_scene(n_vehicles, seed=seed, **kw)
        index = {v.plate: i for i, v in enumerate(vehicles)}

        class _Src(FrameSource):
            def __iter__(self):
                base = datetime.now(timezone.utc)
                for k in range(n_frames + lead_in):
                    img, truth = render(k - lead_in)
                    ts = k / self.fps
                    labels = [PlateLabel(p, b, index[p]) for p, b in truth]
                    yield Frame(k, img, ts, base + timedelta(seconds=ts), labels=labels)

        src = _Src()
        src.fps = fps
        src.length = n_frames + lead_in
        src.vehicles = vehicles
        return src
