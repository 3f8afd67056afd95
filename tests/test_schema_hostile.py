"""Property-based: whatever bytes arrive, parse_read either returns a valid ReadEvent or raises
SchemaError (never another exception), and what it accepts is topic-safe and round-trips."""

import json

from hypothesis import given, settings, strategies as st

from edge.schema import MAX_READ_BYTES, ReadEvent, SchemaError, parse_read

TOPIC_SYNTAX = set("/+#\x00 ")


def _check(payload):
    try:
        ev = parse_read(payload)
    except SchemaError as err:
        assert str(err)
        return None
    assert isinstance(ev, ReadEvent)
    assert not (set(ev.camera_id) | set(ev.agency_id) | set(ev.read_id)) & TOPIC_SYNTAX
    assert parse_read(ev.to_json()) == ev
    return ev


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(payload):
    _check(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)

BASE = {
    "read_id": "abcdef0123456789",
    "camera_id": "cam-1",
    "agency_id": "sac-pd",
    "captured_at": "2026-11-26T12:00:00Z",
    "plate": "7ABC123",
    "confidence": 0.9,
    "char_confidence": [0.9] * 7,
    "box": {"x": 1, "y": 2, "w": 3, "h": 4},
}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(BASE) + ["region", "corners", "alternatives", "extra"]), json_values)
def test_one_field_replaced_by_anything(field, value):
    d = dict(BASE)
    d[field] = value
    _check(json.dumps(d, allow_nan=True))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_unicode_and_topic_injection_in_ids_and_plate(s):
    for field in ("camera_id", "agency_id", "read_id", "plate"):
        d = dict(BASE, **{field: s})
        if field == "plate":
            d["char_confidence"] = [0.9] * max(1, len(s))
        ev = _check(json.dumps(d))
        if ev is not None and field == "plate":
            assert ev.plate.isascii() and ev.plate.isalnum() and ev.plate.upper() == ev.plate


def test_huge_payload_rejected_cheaply():
    big = json.dumps(dict(BASE, crop_ref="x" * (MAX_READ_BYTES * 4)))
    try:
        parse_read(big)
    except SchemaError as err:
        assert "limit" in str(err)
    else:
        raise AssertionError("oversized payload accepted")
