"""bench detect held every decoded frame of the folder for the whole run (108 mostly 720p frames:
500 MB; a folder of 5,000 such frames would need 14 GB). The frames are now decoded as each stage
reaches them: no more are alive at once than the 10 the 1080p timing uses and the current one, and the figures are the same."""

from __future__ import annotations

import weakref

import cv2
import numpy as np

import edge.bench.detect as bench_detect


def test_bench_detect_keeps_only_a_few_frames_alive(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = ["file,x,y,w,h,plate"]
    for i in range(24):
        frame = rng.integers(0, 255, (180, 320, 3), np.uint8)
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), frame)
        rows.append(f"f{i:02d}.png,100,60,60,30,ABC123")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows.append("broken.png,100,60,60,30,ABC123")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")

    alive, most = set(), [0]
    imread = cv2.imread

    def tracked(*args, **kwargs):
        image = imread(*args, **kwargs)
        if image is not None:
            key = id(image)
            alive.add(key)
            weakref.finalize(image, alive.discard, key)
            most[0] = max(most[0], len(alive))
        return image

    monkeypatch.setattr(cv2, "imread", tracked)
    res = bench_detect.run_bench(tmp_path, plate_check_chars=0)
    assert res["frames"] == 24 and res["skipped"] == 1 and res["unreadable"] == ["broken.png"]
    assert res["frame_sizes"] == {"320x180": 24} and res["n"] == 25
    assert most[0] <= 12, f"{most[0]} decoded frames alive at once"  # the 10 timed at 1080p, the current one
