"""Capture times of recorded footage are never ahead of the clock.

Before, every source stamped frame t as (the moment it opened) + t. A recording read as fast as
possible (the default) was then dated ahead of the clock by up to its own length minus the time it
took to read, and the gate refuses reads more than 5 minutes ahead: a 10-minute synthetic recording
run through a gate lost 171 of its 355 reads as refuse:clock-skew."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edge.sources.base import CaptureClock
from edge.sources.synthetic import SyntheticSource


def test_a_recording_read_fast_ends_when_it_opened_and_keeps_its_spacing():
    # 20 minutes of a small scene at one frame every 10 s: 120 frames, read in a few seconds
    src = SyntheticSource("highway_gantry", seed=1, duration="1200", fps="0.1", width="160", height="120")
    opened = datetime.now(timezone.utc)
    stamps = [f.captured_at for f in src]
    done = datetime.now(timezone.utc)
    assert len(stamps) == 120
    assert all(s <= done for s in stamps)  # nothing ahead of the clock (was: up to 20 minutes)
    assert opened - timedelta(seconds=1200) - timedelta(seconds=1) <= stamps[0] <= opened
    assert [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])] == pytest.approx([10.0] * 119)


def test_a_paced_recording_is_stamped_as_it_plays():
    src = SyntheticSource("highway_gantry", seed=1, duration="10", fps="1", width="160", height="120")
    src.paced = True  # what the node sets for --realtime
    opened = datetime.now(timezone.utc)
    first = next(iter(src)).captured_at
    assert abs((first - opened).total_seconds()) < 1.0


def test_the_clock_holds_what_it_cannot_date_at_now():
    before = datetime.now(timezone.utc)
    clock = CaptureClock()  # length unknown, read faster than real time
    a = clock.at(0.0)
    b = clock.at(600.0)  # ten media minutes later, a moment later on the wall clock
    c = clock.at(601.0)
    after = datetime.now(timezone.utc)
    assert before <= a <= b <= after and c <= datetime.now(timezone.utc)
    known = CaptureClock(duration_s=60)
    start, end = known.at(0), known.at(60)
    assert (end - start).total_seconds() == pytest.approx(60, abs=0.01) and end <= datetime.now(timezone.utc)
