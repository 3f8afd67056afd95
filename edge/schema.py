"""Wire messages: the read event a camera publishes, versioned, strict, JSON on the wire.

Everything that arrives over MQTT is untrusted. `parse_read` is the one door in: it checks the size
before parsing, then validates strictly (unknown fields, wrong types and out-of-range values are
rejected) and raises `SchemaError` naming the offending field.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
# A read event with every optional field filled is about 1.5 KiB; 16 KiB leaves room for long
# crop references and alternatives while refusing anything that is clearly not a read.
MAX_READ_BYTES = 16 * 1024
MAX_FRAME_SIDE = 1_000_000  # pixels (JPEG stops at 65,535; leave room for stitched frames)
MAX_INT64 = 2**63 - 1

# Identifiers end up inside MQTT topics (alpr/raw/<camera>, alpr/share/<agency>/reads), so they
# must never contain topic syntax ('/', '+', '#'), whitespace, or NUL.
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ReadId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
PlateText = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,10}$")]
StateCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
# Finite: an infinite or NaN corner was accepted, re-serialized as null, and every agency receiver
# refused the read the gate forwarded (and audited as forwarded).
Coordinate = Annotated[float, Field(allow_inf_nan=False)]


class SchemaError(ValueError):
    """A message that is not a valid read event. The text names the field and the problem."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Box(_Strict):
    """Axis-aligned plate box in frame pixels."""

    x: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    y: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    w: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    h: Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Location(_Strict):
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class Direction(str, Enum):
    approaching = "approaching"
    receding = "receding"
    left = "left"
    right = "right"
    unknown = "unknown"


class Alternative(_Strict):
    plate: PlateText
    confidence: Probability


class ReadEvent(_Strict):
    """One plate read: one per vehicle pass, published on alpr/raw/<camera_id>."""

    schema_version: Literal[1] = SCHEMA_VERSION
    read_id: ReadId
    camera_id: Identifier
    agency_id: Identifier  # the operating agency that owns the camera
    captured_at: datetime
    plate: PlateText
    confidence: Probability
    char_confidence: Annotated[list[Probability], Field(min_length=1, max_length=10)]
    region: StateCode | None = None
    region_confidence: Probability | None = None
    box: Box
    corners: Annotated[list[tuple[Coordinate, Coordinate]], Field(min_length=4, max_length=4)] | None = None
    # Integers bounded like every other field (before: any size, a 4,000-digit frames_seen went through
    # the gate to every agency): frame sides as an image has them, counters within a signed 64-bit column.
    frame_size: tuple[Annotated[int, Field(gt=0, le=MAX_FRAME_SIDE)], Annotated[int, Field(gt=0, le=MAX_FRAME_SIDE)]] | None = None
    location: Location | None = None
    direction: Direction = Direction.unknown
    crop_ref: Annotated[str, StringConstraints(max_length=256)] | None = None
    alternatives: Annotated[list[Alternative], Field(max_length=5)] = []
    frames_seen: Annotated[int, Field(ge=1, le=MAX_INT64)] = 1
    track_id: Annotated[int, Field(ge=0, le=MAX_INT64)] | None = None

    @field_validator("captured_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("must carry a UTC offset (e.g. 2026-01-01T12:00:00Z)")
        try:
            return v.astimezone(timezone.utc)
        except OverflowError:  # 0001-01-01T00:00:00+01:00: before year 1 in UTC (pydantic passes only ValueError on)
            raise ValueError("out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _per_char(self) -> "ReadEvent":
        if len(self.char_confidence) != len(self.plate):
            raise ValueError(
                f"char_confidence has {len(self.char_confidence)} values for "
                f"{len(self.plate)} plate characters"
            )
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def new_read_id() -> str:
    return uuid.uuid4().hex


def describe_validation_error(err: ValidationError) -> tuple[str, str | None]:
    """Turn pydantic's error list into one line that names each bad field."""
    parts = []
    first_field = None
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "<message>"
        first_field = first_field or loc
        if e["type"] == "extra_forbidden":
            parts.append(f"field '{loc}': unknown field")
        else:
            parts.append(f"field '{loc}': {e['msg']}")
    more = len(err.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts), first_field


def parse_read(payload: bytes | str, max_bytes: int = MAX_READ_BYTES) -> ReadEvent:
    """Validate an untrusted wire payload. Raises SchemaError naming the problem."""
    return _parse_bounded(ReadEvent, "read event", payload, max_bytes)


def _parse_bounded(model, what: str, payload: bytes | str, max_bytes: int):
    """Size check before any parsing, then strict validation; errors name the field."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if len(payload) > max_bytes:
        raise SchemaError(f"payload is {len(payload)} bytes, over the {max_bytes}-byte limit", "<size>")
    try:
        return model.model_validate_json(payload)
    except ValidationError as err:
        msg, field = describe_validation_error(err)
        raise SchemaError(f"invalid {what}: {msg}", field) from None


class ForwardedRead(_Strict):
    """What the policy gate publishes on alpr/share/<agency>/reads: the validated read (re-serialized,
    nothing the camera added passes) and the decision that shared it with this recipient."""

    schema_version: Literal[1] = 1
    policy: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}@[0-9]{1,9}$")]  # "ca-sb34@1"
    recipient: Identifier
    rule: Annotated[str, StringConstraints(pattern=r"^allow:[a-z0-9-]{1,64}$")]
    read: ReadEvent


def parse_forwarded(payload: bytes | str, max_bytes: int = MAX_READ_BYTES + 1024) -> ForwardedRead:
    """Validate a message an agency received from the gate. Raises SchemaError naming the problem."""
    return _parse_bounded(ForwardedRead, "forwarded read", payload, max_bytes)
