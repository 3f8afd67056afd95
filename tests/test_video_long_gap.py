"""A damaged stretch of more than 25 frames in the middle of a video is skipped, not the end of it.

The source stopped after 25 frames in a row that did not decode and reported the file truncated,
though the frames after the damage decode again (a few seconds of a recording damaged on disk or in
transfer lost everything after them). A file that announces its frame count is now read up to it.
"""

from __future__ import annotations

import logging

from edge.sources.video import VideoFileSource
from test_sources_files import blank_avi_frames, write_video


def test_frames_after_a_long_damaged_stretch_are_read(tmp_path, caplog):
    path = blank_avi_frames(write_video(tmp_path / "v.avi", n=100), set(range(30, 70)))
    src = VideoFileSource(path)
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert [f.index for f in frames] == list(range(30)) + list(range(70, 100))
    assert src.skipped == 40
    assert "frames 30-69 do not decode" in caplog.text and "truncated" not in caplog.text


def test_a_truncated_file_is_still_reported_truncated(tmp_path, caplog):
    path = write_video(tmp_path / "v.avi", n=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 4])
    src = VideoFileSource(path)
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert 0 < len(frames) < 200 and src.skipped == 200 - len(frames)
    assert f"decoding stopped at frame {len(frames)} of 200" in caplog.text
