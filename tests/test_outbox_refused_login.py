"""A camera whose login the broker refuses says why, naming the client id, once (then once a minute).

With the dynamic-security plugin a camera login may connect only as `edge-<camera id>`: a node started
with another --camera-id than its login's camera was refused with a bare 'Not authorized', logged
again on every reconnect attempt (every 2 s)."""

from __future__ import annotations

import logging
import time

from edge.transport.outbox import Outbox, publisher_for_url


def test_a_refused_login_names_the_client_id_and_is_logged_once(mosquitto, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.transport.outbox")
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put("alpr/raw/cam-1", b"{}", "r1")
    pub = publisher_for_url(outbox, mosquitto.url("cam-1"), "edge-cam-2")  # cam-1's login, cam-2's client id
    pub.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pub.connect_refusals < 3:
            time.sleep(0.05)
        assert pub.connect_refusals >= 3, pub.last_error
        assert "'edge-cam-2'" in pub.last_error and "Not authorized" in pub.last_error
        assert "edge-C" in pub.last_error and "--camera-id" in pub.last_error
        refusals = [r for r in caplog.records if "broker refused the connection" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        assert len(outbox) == 1  # nothing lost
    finally:
        pub.stop()
        outbox.close()
