"""Network streams OpenCV can open (RTSP, HTTP MJPEG/HLS, ...) and local capture devices.

A camera stream is live: timestamps are wall-clock, and when the stream breaks the source reports
it and reconnects with a growing delay (up to `max_reconnects` times in a row; None: forever).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Iterator

import cv2

from edge.sources.base import Frame, FrameSource, SourceError


class StreamSource(FrameSource):
    live = True

    def __init__(self, url: str, max_reconnects: int | None = None, open_timeout_s: float = 10.0):
        super().__init__()
        self.url = url
        self.max_reconnects = max_reconnects
        self.open_timeout_s = open_timeout_s
        self.reconnects = 0
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(f"cannot open stream {self._safe_url()}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0

    def _safe_url(self) -> str:
        # Never log stream credentials.
        from edge.transport.mqtt import redact_url

        return redact_url(self.url)

    def describe(self) -> str:
        return f"stream {self._safe_url()}"

    def _open(self):
        target = int(self.url) if self.url.isdigit() else self.url
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000)]
        try:
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG if isinstance(target, str) else cv2.CAP_ANY, params)
        except cv2.error:
            return None
        return cap if cap.isOpened() else None

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        failures = 0
        while True:
            if self._cap is None:
                if self.max_reconnects is not None and failures > self.max_reconnects:
                    self.report(f"stream {self._safe_url()}: gave up after {failures - 1} reconnect attempts")
                    return
                time.sleep(min(0.5 * 2 ** max(failures - 1, 0), 10.0))
                self._cap = self._open()
                self.reconnects += 1
                if self._cap is None:
                    failures += 1
                    continue
            t0 = time.perf_counter()
            ok, image = self._cap.read()
            decode_ms = (time.perf_counter() - t0) * 1000
            if not ok or image is None:
                failures += 1
                self.report(f"stream {self._safe_url()}: read failed; reconnecting")
                self._cap.release()
                self._cap = None
                continue
            failures = 0
            yield Frame(index, image, time.monotonic() - start, datetime.now(timezone.utc), decode_ms=decode_ms)
            index += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
