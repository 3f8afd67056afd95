"""Video files through OpenCV (FFmpeg backend): any container/codec FFmpeg decodes."""

from __future__ import annotations

import os
import time
from typing import Iterator

import cv2

from edge.sources.base import Frame, FrameSource, SourceError, wall_clock_base

# A decoder that fails this many times in a row is at the end of what it can read.
MAX_CONSECUTIVE_FAILURES = 25


class VideoFileSource(FrameSource):
    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise SourceError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise SourceError(f"cannot open video {self.path}: not a video FFmpeg can decode")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = n if n > 0 else None
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def describe(self) -> str:
        return f"video {self.path} ({self.size[0]}x{self.size[1]} @ {self.fps:.3g} fps, {self.length or '?'} frames)"

    def __iter__(self) -> Iterator[Frame]:
        base = wall_clock_base()
        index = 0  # frames delivered or skipped: the position in the file
        failures = 0
        while True:
            t0 = time.perf_counter()
            ok, image = self._cap.read()
            decode_ms = (time.perf_counter() - t0) * 1000
            if not ok or image is None:
                failures += 1
                at_end = self.length is not None and index >= self.length
                if at_end or failures >= MAX_CONSECUTIVE_FAILURES:
                    if not at_end and self.length is not None:
                        self.report(
                            f"{self.path}: decoding stopped at frame {index} of {self.length} "
                            "(truncated or corrupt file); the rest is skipped"
                        )
                    break
                self.report(f"{self.path}: frame {index} does not decode; skipped")
                index += 1
                continue
            failures = 0
            ts = index / self.fps
            yield Frame(index, image, ts, base + _td(ts), decode_ms=decode_ms)
            index += 1

    def close(self) -> None:
        self._cap.release()


def _td(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)
