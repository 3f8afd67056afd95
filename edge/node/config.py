"""Edge node configuration: one pydantic model, built from a YAML file and/or CLI flags.

Validation errors name the field (`EdgeConfigError("field 'motion_threshold': ...")`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.schema import Identifier, describe_validation_error
from edge.vision.ocr import DEFAULT_MODELS as DEFAULT_OCR_MODELS
from edge.vision.ocr import model_paths

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


class EdgeConfigError(ValueError):
    """A bad edge node configuration; the text names the field."""


class EdgeNodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    camera_id: Identifier
    agency_id: Identifier
    source: str = Field(min_length=1, description="video file, image folder, stream URL, or synthetic:<scenario>")
    pacing: Literal["realtime", "fast"] = "fast"  # files: replay at their frame rate, or as fast as possible
    speed: float = Field(1.0, gt=0, le=100)  # realtime pacing multiplier
    # (lat, lon) of the camera, in the read schema's ranges (edge.schema.Location): checked here,
    # not at the first read, where it stopped the node
    location: tuple[
        Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)],
        Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)],
    ] | None = None
    # Streams: failed reconnects in a row before the node gives up (None: never, as a fixed camera
    # on a flaky link should). A stream that delivers frames between drops resets the count.
    max_reconnects: int | None = Field(None, ge=0)

    # Motion gating
    motion_gating: bool = True
    motion_threshold: float = Field(0.002, ge=0, le=1)  # share of thumbnail pixels that changed
    motion_max_skip: int = Field(0, ge=0)  # >0: process at least every Nth frame anyway

    # Vision stages. "labels": plates from the source's ground truth (network simulation only)
    # "label-boxes": ground-truth boxes, the real OCR (measures OCR + tracking + vote without the detector)
    vision: Literal["onnx", "labels", "label-boxes"] = "onnx"
    label_misread_rate: float = Field(0.0, ge=0, le=1)
    detector_model: Path = REPO_MODELS / "detector.onnx"
    # One recognizer, or several (a list, or "a.onnx,b.onnx"): the first reads every plate, the
    # others give a second opinion on small ones (edge.vision.ocr.EnsemblePlateOCR).
    ocr_model: tuple[Path, ...] = DEFAULT_OCR_MODELS
    # None: the model's own threshold, or edge.vision.verify.PROPOSAL_THRESHOLD with the plate check
    detector_threshold: float | None = Field(None, ge=0, le=1)
    # Plate check (edge/vision/verify.py): keep a detection only where the OCR reads at least this
    # many characters in it (brake lights and badges have none). 0: off, the network alone decides.
    plate_check_chars: int = Field(3, ge=0, le=10)
    # Detector over cols x rows overlapping tiles (small plates in large frames), e.g. "2x2"; cost x tiles.
    detect_tiles: str = Field("1x1", pattern=r"^[1-4]x[1-4]$")
    # Plate crop size (width, height) handed to the OCR. None: the OCR model's own input size (a crop
    # warped straight to it reads best: 12/17 validation frames vs 9/17 at 192x96 resized by the OCR).
    crop_width: int | None = Field(None, ge=8, le=1024)
    crop_height: int | None = Field(None, ge=8, le=512)
    # A fixed camera learns from its own reads how tall a plate is at each image row
    # (edge/vision/plate_size.py); a detection more than this many times taller than that is lettering
    # built like a plate (a van's door placard, a sign), not a plate. 0: off. Never for photos.
    plate_size_max_ratio: float = Field(4.0, ge=0, le=100)
    # Plates whose box (2:1, around the plate) is shorter than this are tracked but not read: a few
    # pixels of plate only give the vote junk. Taller ones count more, up to full_weight_height.
    min_plate_height: float = Field(12.0, ge=0, le=1000)
    full_weight_height: float = Field(40.0, gt=0, le=1000)
    # Framings of each plate read and voted (1: the plain crop). None: 3 for photos (one look at
    # each plate), 1 for video (the vote across frames does the same job for free).
    ocr_variants: int | None = Field(None, ge=1, le=5)
    # With framings voted (ocr_variants > 1): a voted reading of at most this many characters is
    # read again from two wider framings (1.4x, 1.55x the box), and takes one more character at its
    # start or end when both wider readings agree on it, sure of it. Why: US plates have 6-7
    # characters (none of the 108 dev-set frames has fewer), and a short reading is most often a
    # detector box narrower than its plate cutting an end character off. 0: off.
    second_look_max_chars: int = Field(5, ge=0, le=10)
    batch_frames: int = Field(4, ge=1, le=64)  # frames detected per batch (OCR batches all their plates)
    threads: int = Field(1, ge=1, le=64)  # onnxruntime intra-op threads per stage
    overlap_stages: bool = True  # detector of the next batch runs while the OCR reads this one

    # Tracking and voting
    min_confidence: float = Field(0.2, ge=0, le=1)  # voted plate confidence to publish a read
    # Shorter readings are not published. 4 is OpenALPR's default (postprocess_min_characters):
    # 1-3 characters are nearly always a cut-off or far plate, or a word the detector took for a
    # plate ("LOT", "ETC" on signs, "55" of a van's lettering: `bench placement` published such reads
    # at 2). Short vanity plates exist (4 of the 389 real crops' labels are 1-3 characters): set 1-3
    # to accept them.
    min_plate_chars: int = Field(4, ge=1, le=10)
    track_timeout_s: float = Field(1.0, gt=0, le=60)  # a track ends this long after its last sighting
    # A track that ends inside the frame (occluded, missed detections) waits this long (media time)
    # for a continuation: a later track with a similar reading is the same pass, and the two are
    # voted as one. Tracks that leave through the frame edge are published at once. 0 disables.
    merge_window_s: float = Field(4.0, ge=0, le=60)
    # A track whose plate was already read within this many seconds (media time) is the same vehicle
    # seen again after an occlusion: merged, not published twice. 0 disables.
    repeat_window_s: float = Field(10.0, ge=0, le=3600)
    max_track_s: float = Field(120.0, gt=0)
    track_iou: float = Field(0.1, ge=0, le=1)
    min_track_frames: int = Field(2, ge=1)  # sightings needed before a video track becomes a read
    # ...unless its reading is at least this sure: a fast vehicle the detector finds in one frame
    # only is still a pass (the synthetic highway video: 3 of 19 passes, each one sighting read right
    # at 0.996-1.0). 0: never (min_track_frames 1 publishes every short track).
    short_track_confidence: float = Field(0.95, ge=0, le=1)
    alternatives: int = Field(3, ge=0, le=5)

    # Store and forward
    broker_url: str | None = None  # mqtt://user:password@host:port; None: store only
    outbox_path: Path | None = None  # default: <output_dir>/outbox.db
    outbox_max_rows: int = Field(100_000, ge=1)
    output_dir: Path = Path("edge-data")  # crops (crop_ref is relative to this) and the outbox
    save_crops: bool = True
    # Crops are one JPEG per read, kept (never pruned: retention is the agency's policy): over days
    # they fill the disk, and a full disk also stops the outbox, so the camera stops reading. Below
    # this much free space (MB) on the crops' disk no crop is saved (reads go on without crop_ref,
    # warned about) and the rest is left to the outbox. 0: off.
    crop_min_free_mb: int = Field(1024, ge=0)
    metrics_interval_s: float = Field(5.0, gt=0)
    drain_timeout_s: float = Field(10.0, ge=0)  # at the end of a finite source, wait for PUBACKs

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return v.strip()

    @field_validator("ocr_model", mode="before")
    @classmethod
    def _ocr_models(cls, v):
        items = [v] if isinstance(v, (str, os.PathLike)) else v if isinstance(v, (list, tuple)) else None
        if v is not None and (items is None or not all(isinstance(i, (str, os.PathLike)) for i in items)):
            # model_paths would raise TypeError, which pydantic lets through as a traceback
            raise ValueError("expected an ONNX path, 'a.onnx,b.onnx' or a list of paths")
        return model_paths(v)

    @field_validator("plate_size_max_ratio")
    @classmethod
    def _size_ratio(cls, v: float) -> float:
        if 0 < v <= 1:
            raise ValueError("must be 0 (off) or more than 1 (a plate as tall as expected is plausible)")
        return v

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("mqtt://", "mqtts://", "tcp://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return v

    @property
    def topic(self) -> str:
        return f"alpr/raw/{self.camera_id}"

    @property
    def status_topic(self) -> str:
        return f"alpr/status/{self.camera_id}"

    @property
    def resolved_outbox_path(self) -> Path:
        return self.outbox_path or (self.output_dir / "outbox.db")


# A YAML file written from the flags' names: the field each flag sets where the two differ.
FLAG_FIELDS = {"broker": "broker_url", "track_timeout": "track_timeout_s", "outbox": "outbox_path",
               "outbox_max": "outbox_max_rows", "metrics_interval": "metrics_interval_s",
               "drain_timeout": "drain_timeout_s", "realtime": "pacing: realtime", "fast": "pacing: fast",
               "no_motion_gating": "motion_gating: false", "no_crops": "save_crops: false"}


def build_config(yaml_path: str | Path | None = None, **overrides: Any) -> EdgeNodeConfig:
    """YAML file values, then CLI overrides (None means "not given"). Raises EdgeConfigError."""
    data: dict[str, Any] = {}
    if yaml_path:
        from edge.policy.registry import describe_yaml_error, load_yaml

        try:
            # duplicate keys refused: plain YAML keeps the last `source:` of two silently
            loaded = load_yaml(Path(yaml_path).read_text())
        except OSError as err:
            raise EdgeConfigError(f"cannot read config {yaml_path}: {err}") from None
        except UnicodeDecodeError as err:  # a bare "'utf-8' codec can't decode ..." named no file
            raise EdgeConfigError(f"cannot read config {yaml_path}: not UTF-8 text (byte "
                                  f"{err.object[err.start]:#04x} at offset {err.start})") from None
        except yaml.YAMLError as err:  # one line: PyYAML's own text spans several
            raise EdgeConfigError(f"cannot read config {yaml_path}: {describe_yaml_error(err)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise EdgeConfigError(f"config {yaml_path}: expected a mapping of field: value")
        for key in loaded:
            flag_like = str(key).replace("-", "_")
            if key not in EdgeNodeConfig.model_fields and flag_like in FLAG_FIELDS:
                raise EdgeConfigError(f"config {yaml_path}: unknown field '{key}': the setting of "
                                      f"--{flag_like.replace('_', '-')} is written '{FLAG_FIELDS[flag_like]}'")
            if key not in EdgeNodeConfig.model_fields and flag_like in EdgeNodeConfig.model_fields:
                raise EdgeConfigError(f"config {yaml_path}: unknown field '{key}': fields are written "
                                      f"with underscores, '{flag_like}'")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EdgeNodeConfig.model_validate(data)
    except ValidationError as err:
        msg, _ = describe_validation_error(err)
        raise EdgeConfigError(f"invalid edge node config: {msg}") from None
