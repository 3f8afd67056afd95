"""`bench video` and `run` agree on a video they cannot open: exit 2 (bad input), one clear line.

bench video exited 1 (the status for something unreachable, like a broker) where `run --source`
exited 2 for the same file.
"""

from __future__ import annotations

import pytest

from edge.cli import main


def _bad(tmp_path, kind):
    if kind == "garbage":
        p = tmp_path / "clip.mp4"
        p.write_bytes(b"not a video at all\n" * 10)
    elif kind == "empty":
        p = tmp_path / "clip.mp4"
        p.write_bytes(b"")
    elif kind == "missing":
        p = tmp_path / "nope.mp4"
    else:
        p = tmp_path
    return p


@pytest.mark.parametrize("kind", ["garbage", "empty", "missing", "folder"])
def test_bench_video_and_run_exit_2_for_the_same_bad_file(tmp_path, capsys, kind):
    path = _bad(tmp_path, kind)
    bench = main(["bench", "video", str(path)])
    bench_err = capsys.readouterr().err
    run = main(["run", "--source", str(path), "--camera-id", "cam-1", "--agency-id", "sac-pd",
                "--output-dir", str(tmp_path / "out")])
    run_err = capsys.readouterr().err
    assert bench == run == 2, (bench_err, run_err)
    assert "Traceback" not in bench_err and str(path) in bench_err
    assert [line for line in bench_err.splitlines() if "alpr-edge bench video: error:" in line]


def test_bench_video_with_no_frame_that_decodes_is_bad_input(tmp_path, capsys):
    """A video that opens but none of whose frames decode printed a table of zeros, fps 0.0, exit 0."""
    from test_sources_files import blank_avi_frames, write_video

    path = blank_avi_frames(write_video(tmp_path / "v.avi", n=10), set(range(10)))
    assert main(["bench", "video", str(path), "--json"]) == 2
    out = capsys.readouterr()
    assert "no frame of" in out.err and "10 skipped" in out.err and "nothing to measure" in out.err
    assert '"fps"' not in out.out
