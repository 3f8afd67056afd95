"""Video files through OpenCV (FFmpeg backend): any container/codec FFmpeg decodes.

A `ground_truth.jsonl` next to the video (as `alpr-edge synth scene` writes) gives per-frame labels.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Iterator

import cv2

from edge.sources.base import Frame, FrameSource, PlateLabel, SourceError

log = logging.getLogger(__name__)

# A decoder that fails this many times in a row is at the end of what it can read, in a file that
# does not say how many frames it holds. One that does is read up to that count: a damaged stretch
# longer than this (a few seconds of a recording) is followed by frames that decode again, and a
# truncated file's failing reads past its end cost ~10 us each.
MAX_CONSECUTIVE_FAILURES = 25
# Frame counts above this are not believed for that purpose (a broken header's estimate).
MAX_SCANNED_FRAMES = 10_000_000


class GroundTruth(dict):
    """frame index -> [PlateLabel]; `bad_lines` lists the line numbers that could not be read."""

    bad_lines: list[int]


def read_ground_truth(path: str) -> GroundTruth | None:
    """Per-frame labels from `ground_truth.jsonl` next to the video (what `alpr-edge synth scene`
    writes: one JSON line per frame with its plates), or None when there is none. A line that
    does not parse (a truncated or edited file) is skipped with a warning naming it: the labels
    are then incomplete, and scores made from them say so (`bad_lines`)."""
    gt = os.path.join(os.path.dirname(os.path.abspath(path)), "ground_truth.jsonl")
    if not os.path.isfile(gt):
        return None
    labels = GroundTruth()
    labels.bad_lines = []
    # bytes, line by line: a damaged line (bytes that are not UTF-8 text) is one bad line, not the
    # end of the file (read as text, it raised from the middle and the video would not open at all)
    with open(gt, "rb") as fh:
        for number, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
                labels[int(row["frame"])] = [
                    PlateLabel(str(p["plate"]).upper(), tuple(float(v) for v in p["box"]), int(p["vehicle_id"]))
                    for p in row.get("plates", [])
                ]
            except (ValueError, KeyError, TypeError, AttributeError):
                labels.bad_lines.append(number)
    if labels.bad_lines:
        log.warning("%s: %d line(s) do not parse (first: line %d) and were skipped; the ground truth is incomplete",
                    gt, len(labels.bad_lines), labels.bad_lines[0])
    return labels


class VideoFileSource(FrameSource):
    def __init__(self, path: str | os.PathLike, ground_truth: bool = True):
        super().__init__()
        self.path = str(path)
        if os.path.isdir(self.path):
            raise SourceError(f"{self.path} is a folder, not a video file")
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
        self.ground_truth = read_ground_truth(self.path) if ground_truth else None

    def describe(self) -> str:
        return f"video {self.path} ({self.size[0]}x{self.size[1]} @ {self.fps:.3g} fps, {self.length or '?'} frames)"

    def __iter__(self) -> Iterator[Frame]:
        clock = self.capture_clock()
        index = 0  # frames delivered or skipped: the position in the file
        failed_from = None  # the first frame of the current run of frames that do not decode
        while True:
            t0 = time.perf_counter()
            ok, image = self._cap.read()
            decode_ms = (time.perf_counter() - t0) * 1000
            if not ok or image is None:
                failed_from = index if failed_from is None else failed_from
                at_end = self.length is not None and index >= self.length
                counted = self.length is not None and self.length <= MAX_SCANNED_FRAMES
                if at_end or (not counted and index + 1 - failed_from >= MAX_CONSECUTIVE_FAILURES):
                    break
                index += 1
                continue
            if failed_from is not None:  # decoding resumed: those frames were corrupt
                self._skip_undecodable(failed_from, index)
                failed_from = None
            ts = index / self.fps
            labels = self.ground_truth.get(index, []) if self.ground_truth is not None else None
            yield Frame(index, image, ts, clock.at(ts), labels=labels, decode_ms=decode_ms)
            index += 1
        self._end_of_decoding(failed_from)
        self.summarise()

    def _skip_undecodable(self, first: int, end: int) -> None:
        """Frames first..end-1 did not decode, and the ones after them did."""
        which = f"frame {first} does" if end - first == 1 else f"frames {first}-{end - 1} do"
        self.report(f"{self.path}: {which} not decode; skipped", frames=end - first,
                    kind=f"{self.path}: places where frames do not decode")

    def _end_of_decoding(self, failed_from: int | None) -> None:
        """Decoding ended at `failed_from`: short of the frame count the file declares, the file is
        truncated (one report for all the frames it lacks). Without a frame count, the end of what
        decodes is the end of the file: nothing tells a cut file from a whole one."""
        if failed_from is None or self.length is None or failed_from >= self.length:
            return
        self.report(
            f"{self.path}: decoding stopped at frame {failed_from} of {self.length} (truncated or corrupt "
            f"file); the remaining {self.length - failed_from} frame(s) are skipped",
            frames=self.length - failed_from,
        )

    def close(self) -> None:
        self.summarise()  # a run stopped early still says what it skipped
        self._cap.release()
