"""A password never reaches an error message or a log, whatever characters it holds.

Before, redact_url trusted urlsplit, whose netloc ends at the first '/', '?' or '#': a password
with one of those was shown from there on (`alpr-edge gate --broker 'mqtt://alpr-gate:top/secret@...'`
printed "broker URL 'mqtt://alpr-gate:top/secret@127.0.0.1:1': bad port"; `demo --source
'rtsp://user:pa/ss@...'` printed "cannot open stream rtsp://user:pa/ss@...")."""

from __future__ import annotations

import pytest

from edge.transport import mqtt as transport
from edge.transport.mqtt import redact_url


@pytest.mark.parametrize("password", ["top/secret", "a#b", "q?x=1", "p@ss", "pl:ain", "simple", "/lead", "end/"])
def test_the_password_is_never_shown(password):
    for scheme in ("mqtt", "rtsp", "http"):
        url = f"{scheme}://user:{password}@127.0.0.1:1/cam"
        shown = redact_url(url)
        assert password not in shown, shown
        assert shown.startswith(f"{scheme}://user:***@")
    with pytest.raises(transport.BrokerURLError) as err:
        transport.parse_broker_url(f"mqtt://alpr-gate:{password}@127.0.0.1:99999")  # a bad port: an error
    assert password not in str(err.value)


def test_a_password_with_a_reserved_character_is_named_as_the_problem():
    with pytest.raises(transport.BrokerURLError, match="percent-encoded"):
        transport.parse_broker_url("mqtt://alpr-gate:top/secret@127.0.0.1:1883")
    u = transport.parse_broker_url("mqtt://alpr-gate:top%2Fsecret@127.0.0.1:1883")
    assert u.password == "top/secret" and "secret" not in u.redacted()


def test_what_is_not_a_url_with_a_password_comes_back_as_is():
    for s in ("synthetic:highway_gantry?seed=3", "/videos/a.mp4", "rtsp://cam.local:554/stream",
              "rtsp://user@cam.local/stream", "mqtt://127.0.0.1:1883"):
        assert redact_url(s) == s
