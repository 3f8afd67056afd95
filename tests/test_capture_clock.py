"""CaptureClock with a length or media time that is no date: a damaged header's frame count (OpenCV
gives what the container says; the stream source believes up to 100 million frames, at any frame
rate above 0) made the clock raise OverflowError before the first frame, stopping the source. Such a
length is not believed: the frames are held at the clock, as when the length is unknown."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from edge.sources.base import CaptureClock, Frame, FrameSource


class _Announced(FrameSource):
    def __init__(self, length: int, fps: float):
        super().__init__()
        self.length, self.fps = length, fps

    def __iter__(self):
        clock = self.capture_clock()
        for i in range(3):
            yield Frame(i, np.zeros((4, 4, 3), np.uint8), i / self.fps, clock.at(i / self.fps))


@pytest.mark.parametrize("length,fps", [(99_999_999, 0.001), (2**62, 25.0), (4_294_967_295, 1e-6)])
def test_a_length_too_long_to_date_is_held_at_the_clock(length, fps):
    before = datetime.now(timezone.utc)
    stamps = [f.captured_at for f in _Announced(length, fps)]
    after = datetime.now(timezone.utc)
    assert len(stamps) == 3 and all(before - timedelta(seconds=1) <= s <= after for s in stamps)


@pytest.mark.parametrize("duration", [float("nan"), float("inf"), -5.0, 1e12, 1e18])
def test_a_duration_that_is_no_date_holds_at_the_clock(duration):
    before = datetime.now(timezone.utc)
    clock = CaptureClock(duration)
    assert before <= clock.at(0.0) <= datetime.now(timezone.utc)


@pytest.mark.parametrize("media", [float("nan"), float("inf"), -1e12])
def test_a_media_time_that_is_no_date_is_stamped_now(media):
    clock = CaptureClock(60.0)
    before = datetime.now(timezone.utc)
    assert before <= clock.at(media) <= datetime.now(timezone.utc)
    assert clock.at(30.0) <= datetime.now(timezone.utc)  # the clock goes on as before
