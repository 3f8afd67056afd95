"""A loopback HTTP server that plays a camera or a recording for stream tests, and a bounded read."""

import http.server
import threading


class MediaServer:
    """A loopback HTTP server for stream tests: `routes` maps a path to a handler(request, gets),
    `gets` counting the requests for that path so far (this one included)."""

    def __init__(self, routes):
        gets = {path: 0 for path in routes}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path not in routes:
                    self.send_error(404)
                    return
                gets[self.path] += 1
                self.close_connection = True
                routes[self.path](self, gets[self.path])

        self.gets = gets
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


def send_body(request, body: bytes, length: int | None = None, content_type="video/x-msvideo"):
    """Send `body`, announcing `length` bytes (more than the body: the connection drops mid-file)."""
    request.send_response(200)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body) if length is None else length))
    request.end_headers()
    request.wfile.write(body)


def read_all(src, timeout_s=60.0):
    """list(src), failing the test (not hanging it) if the source never ends."""
    got, done = [], threading.Event()

    def consume():
        try:
            got.extend(src)
        finally:
            done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(timeout_s), f"the source did not end within {timeout_s} s ({len(got)} frames so far)"
    return got


def send_mjpeg(request, jpegs) -> None:
    """Answer as an MJPEG camera (multipart/x-mixed-replace) sending these JPEG frames."""
    request.send_response(200)
    request.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    request.end_headers()
    for j in jpegs:
        request.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(j), j))
    request.wfile.flush()
