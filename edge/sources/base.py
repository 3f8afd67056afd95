"""Frames and the sources that produce them.

A source yields `Frame`s (BGR uint8 image + media timestamp + UTC capture time + any ground-truth
labels it knows). Bad input is reported and skipped, never fatal: a frame that does not decode is
counted in `source.skipped` and logged; a truncated file ends the source with a warning. A problem
that repeats (`report(kind=...)`) is logged the first time, then counted (`source.repeats`) and
summed up at the end of the source, not logged once per frame.

`paced` replays a file in real time; `ReaderThread` decodes ahead on its own thread (OpenCV
releases the GIL while decoding) into a bounded queue whose depth the node reports. For live
sources the queue drops the oldest frame when the pipeline falls behind (a camera does not wait);
for files it blocks (nothing is skipped).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The source cannot be opened at all (missing file, unsupported URL...)."""


@dataclass(frozen=True)
class PlateLabel:
    """A ground-truth plate in a frame: text and axis-aligned box (x1, y1, x2, y2) in pixels."""

    plate: str
    box: tuple[float, float, float, float]
    track: int | None = None  # which vehicle (synthetic scenes), so a pass can be counted once


@dataclass
class Frame:
    index: int
    image: np.ndarray
    timestamp: float  # media seconds since the start of the source
    captured_at: datetime  # UTC
    name: str | None = None  # file name for image folders
    labels: list[PlateLabel] | None = None  # None: the source has no ground truth for this frame
    decode_ms: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        return (w, h)


@dataclass
class Repeats:
    """The reports of one kind of problem (`FrameSource.report(kind=...)`)."""

    reports: int = 0
    frames: int = 0  # frames skipped by these reports
    unlogged: int = 0  # reports since the last one logged
    logged_at: float = 0.0  # time.monotonic() of the last one logged


class FrameSource(ABC):
    #: frames in the source when known (files, folders), for progress bars
    length: int | None = None
    #: nominal frame rate (frames per media second)
    fps: float = 25.0
    #: frames are unrelated photos (an image folder): the tracker is flushed after each one
    independent: bool = False
    #: a live camera/stream: frames are dropped rather than queued when the pipeline lags
    live: bool = False
    #: played at its frame rate (the node sets it for --realtime): stamped as it plays, not as a recording
    paced: bool = False
    #: a problem of one kind that keeps coming back is logged again at most this often
    repeat_log_s: float = 60.0

    def __init__(self) -> None:
        self.skipped = 0  # corrupt or undecodable frames reported and skipped
        self.problems: list[str] = []
        self.repeats: dict[str, Repeats] = {}  # kind -> its reports, for `report(kind=...)`

    def capture_clock(self) -> CaptureClock:
        """The clock for one pass over the frames (see CaptureClock): a recording read as fast as
        possible is dated to end now; a live or paced one from now on."""
        recorded = self.length and not self.live and not self.paced
        return CaptureClock(self.length / self.fps if recorded and self.fps > 0 else None)

    def report(self, message: str, frames: int = 1, kind: str | None = None) -> None:
        """Count `frames` skipped frames and log why. With a `kind`, only the first report of that
        kind is logged at once; later ones are counted, logged at most every `repeat_log_s` and
        summed up by `summarise()` (a damaged file must not bury the log in identical lines)."""
        self.skipped += frames
        if len(self.problems) < 100:
            self.problems.append(message)
        if kind is None:
            log.warning("%s", message)
            return
        r = self.repeats.setdefault(kind, Repeats())
        r.reports += 1
        r.frames += frames
        now = time.monotonic()
        if r.reports == 1:
            log.warning("%s (more like it are counted and summed up at the end)", message)
        elif now - r.logged_at >= self.repeat_log_s:
            log.warning("%s (%d more like it since the last logged)", message, r.unlogged + 1)
        else:
            r.unlogged += 1
            return
        r.unlogged, r.logged_at = 0, now

    def summarise(self) -> None:
        """One line per kind of problem with reports not logged yet (at the end of the source)."""
        for kind, r in self.repeats.items():
            if r.unlogged:
                log.warning("%s: %d in all, %d frame(s) skipped", kind, r.reports, r.frames)
                r.unlogged, r.logged_at = 0, time.monotonic()

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__


class CaptureClock:
    """Each frame's capture time: a base plus its media time, never ahead of this machine's clock.

    A live camera, or a recording played at its frame rate (`--realtime`), is stamped from the moment
    it opened. A recording read faster than real time, the default, would otherwise be dated ahead of
    the clock (a 10-minute file read in 2 minutes: up to 8 minutes), and the gate refuses reads more
    than 5 minutes ahead (`refuse:clock-skew`): its stamps are set so that it ends when it opened
    (`duration_s`, when its length is known), keeping the spacing of its frames. Whatever is left
    (length unknown, `--speed` above 1) is held at the clock: a stamp that would pass `now` moves the
    base back so that it is `now`, and later frames keep their spacing from there.
    """

    def __init__(self, duration_s: float | None = None):
        now = datetime.now(timezone.utc)
        self.base = now
        # A length that is no number, or so long that its start is no date (a damaged header's frame
        # count: OverflowError stopped the source before its first frame), is not believed: the
        # frames are held at the clock as when the length is unknown.
        if duration_s and math.isfinite(duration_s) and duration_s > 0:
            try:
                self.base = now - timedelta(seconds=duration_s)
            except OverflowError:
                pass

    def at(self, media_s: float) -> datetime:
        now = datetime.now(timezone.utc)
        try:
            t = self.base + timedelta(seconds=media_s)
        except (OverflowError, ValueError):  # a media time that is no number or no date: the clock
            return now
        if t > now:
            self.base = now - timedelta(seconds=media_s)
            return now
        return t


def paced(frames: Iterator[Frame], speed: float = 1.0) -> Iterator[Frame]:
    """Yield frames no faster than their media timestamps (speed 2.0: twice real time)."""
    start = None
    for f in frames:
        if start is None:
            start = time.monotonic() - f.timestamp / speed
        delay = start + f.timestamp / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield f


_END = object()


class ReaderThread:
    """Decode ahead on a thread into a bounded queue."""

    def __init__(self, frames: Iterator[Frame], maxsize: int = 8, drop_oldest: bool = False):
        self._frames = frames
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.drop_oldest and item is not _END:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def _run(self) -> None:
        try:
            for f in self._frames:
                if not self._put(f):
                    return
        except BaseException as err:  # surfaced to the consumer, which decides
            self.error = err
        finally:
            self._put(_END)

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def get(self, timeout: float | None = None) -> Frame | None:
        """Next frame; None at the end of the source. Raises queue.Empty on timeout."""
        item = self.queue.get(timeout=timeout)
        if item is _END:
            if self.error is not None:
                raise self.error
            return None
        return item

    def get_nowait(self) -> Frame | None | bool:
        """Next frame if one is ready; False when none is ready; None at the end."""
        try:
            return self.get(timeout=0)
        except queue.Empty:
            return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
