"""Frame sources: video files, image folders, network streams, the synthetic scene renderer.

`open_source(spec)` picks one from a string, as given to `alpr-edge run --source`:
- `synthetic:<scenario.yaml or built-in name>[?seed=N]`: the synthetic scene renderer;
- anything with `://` (rtsp, http, https, rtmp, udp, tcp) or a capture device number: a stream;
- a directory: an image folder; any other path: a video file.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from edge.sources.base import Frame, FrameSource, PlateLabel, ReaderThread, SourceError, paced

__all__ = ["Frame", "FrameSource", "PlateLabel", "ReaderThread", "SourceError", "open_source", "paced"]


def open_source(spec: str, *, folder_fps: float = 1.0, max_reconnects: int | None = None) -> FrameSource:
    spec = str(spec)
    if spec.startswith(("synthetic:", "synth:")):
        from edge.sources.synthetic import SyntheticSource

        body = spec.split(":", 1)[1]
        scenario, _, query = body.partition("?")
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        raw_seed = q.pop("seed", "0")
        try:
            seed = int(raw_seed)
        except ValueError:
            raise SourceError(f"synthetic source: seed={raw_seed!r} is not a whole number") from None
        if seed < 0:  # numpy's bare 'expected non-negative integer' came at the first frame
            raise SourceError(f"synthetic source: seed={raw_seed!r} must be 0 or more")
        return SyntheticSource(scenario or "default", seed=seed, **q)
    if "://" in spec or spec.isdigit():
        from edge.sources.stream import StreamSource

        return StreamSource(spec, max_reconnects=max_reconnects)
    if os.path.isdir(spec):
        from edge.sources.folder import FolderSource

        return FolderSource(spec, fps=folder_fps)
    if spec.endswith(("/", os.sep)):  # meant as a folder: say so, not "video file not found"
        raise SourceError(f"image folder not found: {spec}")
    from edge.sources.video import VideoFileSource

    return VideoFileSource(spec)
