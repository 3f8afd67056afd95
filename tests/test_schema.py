import json
from datetime import datetime, timezone

import pytest

from edge.schema import MAX_READ_BYTES, ReadEvent, SchemaError, new_read_id, parse_read


def good(**over):
    d = {
        "read_id": new_read_id(),
        "camera_id": "cam-1",
        "agency_id": "sacramento-pd",
        "captured_at": "2026-11-26T12:00:00Z",
        "plate": "7ABC123",
        "confidence": 0.9,
        "char_confidence": [0.99] * 7,
        "box": {"x": 10, "y": 20, "w": 100, "h": 50},
    }
    d.update(over)
    return d


def test_round_trip():
    ev = parse_read(json.dumps(good()))
    assert ev.plate == "7ABC123"
    assert ev.captured_at.tzinfo is not None
    again = parse_read(ev.to_json())
    assert again == ev


@pytest.mark.parametrize(
    "over, field",
    [
        ({"plate": "7abc123"}, "plate"),
        ({"plate": "7ABC-123"}, "plate"),
        ({"plate": "7ÄBC123"}, "plate"),
        ({"camera_id": "cam/1"}, "camera_id"),
        ({"camera_id": "cam+"}, "camera_id"),
        ({"camera_id": "#"}, "camera_id"),
        ({"confidence": "0.9"}, "confidence"),
        ({"confidence": 1.5}, "confidence"),
        ({"captured_at": "2026-11-26T12:00:00"}, "captured_at"),
        ({"char_confidence": [0.9] * 3}, None),
        ({"shared_with": "fbi"}, "shared_with"),
    ],
)
def test_rejects_with_field_named(over, field):
    with pytest.raises(SchemaError) as exc:
        parse_read(json.dumps(good(**over)))
    if field:
        assert field in str(exc.value)


def test_rejects_oversized_before_parsing():
    payload = b'{"read_id": "' + b"a" * MAX_READ_BYTES + b'"}'
    with pytest.raises(SchemaError, match="over the"):
        parse_read(payload)


@pytest.mark.parametrize("payload", [b"", b"{", b"null", b"[]", b"\xff\xfe", b'{"plate": 1}'])
def test_rejects_malformed(payload):
    with pytest.raises(SchemaError):
        parse_read(payload)


def test_captured_at_normalised_to_utc():
    ev = parse_read(json.dumps(good(captured_at="2026-11-26T04:00:00-08:00")))
    assert ev.captured_at == datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    assert isinstance(ev, ReadEvent)


@pytest.mark.parametrize("field, raw", [("frames_seen", "1" * 4000), ("frames_seen", str(2**63)), ("track_id", str(2**63)),
                                        ("frame_size", "[1000001, 1080]"), ("frame_size", "[1920, " + "9" * 30 + "]")])
def test_integers_beyond_any_real_value_are_refused(field, raw):
    """Before: any size passed (a 4,000-digit frames_seen went through the gate to every agency)."""
    text = json.dumps(good())[:-1] + f', "{field}": {raw}}}'
    with pytest.raises(SchemaError, match=field):
        parse_read(text)


def test_largest_integers_still_accepted():
    ev = parse_read(json.dumps(good(frames_seen=2**63 - 1, track_id=2**63 - 1, frame_size=[1_000_000, 1_000_000])))
    assert parse_read(ev.to_json()) == ev


@pytest.mark.parametrize("corner", ["[1e400, 2]", "[NaN, 2]", "[1, -Infinity]"])
def test_corners_must_be_finite(corner):
    """Before: accepted, re-serialized as null, and the agency receiver refused the forwarded read."""
    text = json.dumps(good())[:-1] + f', "corners": [{corner}, [1, 2], [3, 4], [5, 6]]}}'
    with pytest.raises(SchemaError, match="corners"):
        parse_read(text)
    ok = parse_read(json.dumps(good(corners=[[-3.5, 2], [1, 2], [3, 4], [5, 6]])))  # off-frame corners are real
    assert parse_read(ok.to_json()) == ok
