"""A ground_truth.jsonl with a damaged line (bytes that are not UTF-8) is one bad line, not an error.

Read as text, the first such byte raised UnicodeDecodeError from the middle of the file, and the
video beside it would not open at all: `run --source video.mp4` (which does not need the labels)
and `bench video` both refused the video with "'utf-8' codec can't decode byte 0xff".
"""

from __future__ import annotations

import json
import logging

from edge.sources.video import VideoFileSource
from test_sources_files import write_video


def test_a_damaged_line_is_skipped_and_named(tmp_path, caplog):
    write_video(tmp_path / "video.avi", n=4)
    lines = [json.dumps({"frame": i, "plates": [{"plate": "ABC123", "box": [1, 1, 11, 6], "vehicle_id": 1}]}).encode()
             for i in range(4)]
    lines[1] = b"\xff\xfe\x00" + lines[1][3:]  # a few bytes overwritten on disk
    (tmp_path / "ground_truth.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING):
        source = VideoFileSource(tmp_path / "video.avi")
    assert sorted(source.ground_truth) == [0, 2, 3]
    assert source.ground_truth.bad_lines == [2]
    assert "1 line(s) do not parse (first: line 2)" in caplog.text
    assert len(list(source)) == 4
