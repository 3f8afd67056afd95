"""A broker address whose other end takes the TCP connection but never answers the CONNECT (a hung
broker, a TLS port given as mqtt://, another service on that port): the edge said nothing at all,
however long, while reads piled up in the outbox. Each such attempt is now a failed connection,
logged at once and then every minute, and the node's drain stops waiting for it."""

import logging
import socket
import threading
import time

from edge.transport.outbox import Outbox, publisher_for_url


def test_a_server_that_never_answers_the_connect_is_reported(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.transport.outbox")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    taken = []

    def accept_and_say_nothing():
        while True:
            try:
                taken.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    outbox = Outbox(tmp_path / "outbox.db")
    pub = publisher_for_url(outbox, f"mqtt://cam-1:pw@127.0.0.1:{server.getsockname()[1]}", client_id="edge-cam-1",
                            keepalive_s=1)  # paho waits this long for the CONNACK
    pub.start()
    try:
        t0 = time.monotonic()
        assert not pub.wait_connected(20)
        assert time.monotonic() - t0 < 10  # ended by the failed attempt, not by the timeout
        assert taken and pub.connect_failures >= 1
        assert "sent no MQTT answer" in pub.last_error
        warned = [r.getMessage() for r in caplog.records if "sent no MQTT answer" in r.getMessage()]
        assert len(warned) == 1 and "reads stay in the outbox" in warned[0]
    finally:
        pub.stop()
        outbox.close()
        server.close()
        for c in taken:
            c.close()
