"""Network streams OpenCV can open (RTSP, HTTP MJPEG/HLS, ...) and local capture devices.

A camera stream is live: timestamps are wall-clock, frames are dropped rather than queued when the
pipeline lags, and when the stream breaks the source reports it and reconnects with a growing
delay. `max_reconnects` bounds the failed attempts *in a row* (None: forever): a camera that comes
back and delivers frames between drops is kept, as a fixed camera on a flaky link should be. The
first drop is logged, later ones are counted and logged at most once a minute (`report(kind=)`).

A recording served over the network (an .mp4 or .avi over HTTP) announces a frame count; it is read
like a video file instead: media timestamps, nothing dropped, and its end is the end of the source.
Reopened after its end it would play again from the start, publishing every pass twice, so a drop
in the middle resumes at the frame it reached, and a recording that ends before the count it
announced is reported as truncated, never replayed.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Iterator

import cv2

from edge.sources.base import Frame, FrameSource, SourceError

# A recording whose reads keep failing at one frame, however often it is reopened and sought there,
# ends there (its container announced more frames than it holds).
RESUME_TRIES = 3
# Frame counts beyond this are a container's placeholder (some live demuxers report 2**63), not a count.
MAX_PLAUSIBLE_FRAMES = 100_000_000


class StreamSource(FrameSource):
    live = True

    def __init__(self, url: str, max_reconnects: int | None = None, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 10.0):
        super().__init__()
        if max_reconnects is not None and max_reconnects < 0:
            from edge.transport.mqtt import redact_url

            raise SourceError(f"stream {redact_url(url)!r}: max_reconnects must be 0 or more, not {max_reconnects}")
        self.url = url
        self.max_reconnects = max_reconnects
        self.open_timeout_s = open_timeout_s
        # A camera that stops sending without closing the connection is a drop too: without a limit
        # the read waits for OpenCV's own 30 s.
        self.read_timeout_s = read_timeout_s
        self.reconnects = 0  # reopen attempts over the whole run
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(f"cannot open stream {self._safe_url()} (alpr-edge -v shows FFmpeg's reason)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if count and 0 < count < MAX_PLAUSIBLE_FRAMES:
            self.length = int(count)
            self.live = False  # a recording: read like a file (see the module docstring)

    def _safe_url(self) -> str:
        # Never log stream credentials.
        from edge.transport.mqtt import redact_url

        return redact_url(self.url)

    def describe(self) -> str:
        return f"{'stream' if self.live else 'recording'} {self._safe_url()}"

    def _open(self):
        target = int(self.url) if self.url.isdigit() else self.url
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        if isinstance(target, str) and target.lower().startswith(("rtsp://", "rtsps://")):
            # RTSP over TCP, as NVRs and Frigate default to: over UDP a lost packet is a smeared,
            # half-grey frame (a misread plate), and UDP rarely crosses NAT or a firewall. OpenCV reads
            # FFmpeg's options from this variable at each open; a user's own setting wins.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        try:
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG if isinstance(target, str) else cv2.CAP_ANY, params)
        except cv2.error:
            return None
        return cap if cap.isOpened() else None

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self._frames()
        finally:
            self.summarise()  # a run stopped early still says how often the stream dropped

    def _frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        clock = self.capture_clock()
        index = 0  # frames read so far: for a recording, where to resume after a drop
        failures = 0  # failed reads and reopens in a row
        failed_at, tries_here = -1, 0  # a recording: the frame its reads last failed at, how often
        where = self._safe_url()
        while True:
            if self._cap is None:
                if self.max_reconnects is not None and failures > self.max_reconnects:
                    self.report(
                        f"stream {where}: gave up after {failures - 1} reconnect attempts in a row",
                        # a recording: the frames it still had; a live camera: none known lost
                        frames=0 if self.live else max(self.length - index, 0),
                    )
                    return
                time.sleep(min(0.5 * 2 ** max(failures - 1, 0), 10.0))
                self._cap = self._open()
                self.reconnects += 1
                if self._cap is None:
                    failures += 1
                    continue
                if not self.live and index:
                    if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, index):
                        self._end_recording(index, f"cannot resume at frame {index} (not seekable)")
                        return
            t0 = time.perf_counter()
            ok, image = self._cap.read()
            decode_ms = (time.perf_counter() - t0) * 1000
            if not ok or image is None:
                if not self.live and index >= self.length:
                    self._release()
                    return  # the end of the recording
                if not self.live:
                    tries_here = tries_here + 1 if index == failed_at else 1
                    failed_at = index
                    if tries_here >= RESUME_TRIES:
                        self._end_recording(index, f"no frame after {RESUME_TRIES - 1} reconnects here")
                        return
                failures += 1
                self.report(
                    f"stream {where}: read failed after {index} frames; reconnecting",
                    frames=0,  # a drop loses no frame of a recording (resumed), and a live camera's
                    kind=f"stream {where}: drops",  # lost frames are not known
                )
                self._release()
                continue
            failures = 0
            if self.live:
                yield Frame(index, image, time.monotonic() - start, datetime.now(timezone.utc), decode_ms=decode_ms)
            else:
                t = index / self.fps
                yield Frame(index, image, t, clock.at(t), decode_ms=decode_ms)
            index += 1

    def _end_recording(self, index: int, why: str) -> None:
        self._release()
        self.report(
            f"recording {self._safe_url()}: truncated, {index} of the {self.length} frames it announced ({why})",
            frames=max(self.length - index, 0),
        )

    def close(self) -> None:
        self._release()

