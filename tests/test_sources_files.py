"""Frame sources: video files, image folders, HTTP streams; corrupt input is skipped, never fatal."""

import logging

import cv2
import numpy as np
import pytest

from edge.sources import ReaderThread, SourceError, open_source, paced
from edge.sources.base import FrameSource
from edge.sources.folder import FolderSource, read_labels
from edge.sources.stream import StreamSource
from edge.sources.video import VideoFileSource
from media_server import MediaServer, read_all, send_body, send_mjpeg


def write_video(path, n=30, size=(160, 96), fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        f = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.rectangle(f, (i * 4, 30), (i * 4 + 30, 50), (0, 255, 255), -1)
        cv2.putText(f, str(i), (5, 90), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        w.write(f)
    w.release()
    return path


def test_video_file_all_frames(tmp_path):
    src = open_source(str(write_video(tmp_path / "v.avi")))
    assert isinstance(src, VideoFileSource) and src.length == 30 and src.fps == pytest.approx(10)
    frames = list(src)
    assert [f.index for f in frames] == list(range(30))
    assert frames[5].timestamp == pytest.approx(0.5)
    assert frames[0].image.shape == (96, 160, 3) and src.skipped == 0
    assert frames[0].captured_at.tzinfo is not None


def blank_avi_frames(path, indices):
    """Zero the JPEG data of these frames of an MJPG AVI (their chunks stay, so the file's frame
    positions do not move): frames that do not decode, with frames that do after them."""
    import struct

    data = bytearray(path.read_bytes())
    at, k = data.index(b"movi") + 4, 0
    while (at := data.find(b"00dc", at)) >= 0:
        size = struct.unpack("<I", data[at + 4 : at + 8])[0]
        if k in indices:
            data[at + 8 : at + 8 + size] = bytes(size)
        at, k = at + 8 + size, k + 1
    path.write_bytes(bytes(data))
    return path


def source_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name.startswith("edge.sources") and r.levelno >= logging.WARNING]


def test_truncated_video_is_reported_not_fatal(tmp_path, caplog):
    """One warning naming the file and the frame where decoding stopped, not one per frame it
    lacks; every frame it lacks is counted. (The file name says nothing: pytest's tmp_path of this
    test holds the word "truncated".)"""
    p = write_video(tmp_path / "v.avi", n=48)
    data = p.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    src = VideoFileSource(cut)
    with caplog.at_level(logging.WARNING):
        frames = list(src)
        src.close()
    assert 5 < len(frames) < 48 and [f.index for f in frames] == list(range(len(frames)))
    assert src.skipped == 48 - len(frames)
    warned = source_warnings(caplog)
    assert len(warned) == 1, warned
    assert str(cut) in warned[0] and f"stopped at frame {len(frames)} of 48" in warned[0] and "truncated" in warned[0]
    assert src.problems == warned


def test_frames_that_do_not_decode_are_logged_once_then_summed_up(tmp_path, caplog):
    p = blank_avi_frames(write_video(tmp_path / "v.avi", n=40), {10, 20, 21, 30})
    src = VideoFileSource(p)
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert sorted(set(range(40)) - {f.index for f in frames}) == [10, 20, 21, 30]
    assert src.skipped == 4
    [(kind, repeats)] = src.repeats.items()
    assert repeats.reports == 3 and repeats.frames == 4
    warned = source_warnings(caplog)
    assert len(warned) == 2, warned  # the first at once, then the sum at the end
    assert str(p) in warned[0] and "frame 10 does not decode" in warned[0]
    assert "3 in all, 4 frame(s) skipped" in warned[1]


def test_repeated_problems_are_rate_limited_not_lost(caplog):
    class Damaged(FrameSource):
        def __iter__(self):
            for i in range(24):
                self.report(f"frame {i} does not decode", kind="frames that do not decode")
            self.summarise()
            return iter(())

    quiet, chatty = Damaged(), Damaged()
    chatty.repeat_log_s = 0  # every repeat is due
    with caplog.at_level(logging.WARNING):
        list(quiet)
        assert len(caplog.records) == 2 and "24 in all, 24 frame(s) skipped" in caplog.records[1].getMessage()
        caplog.clear()
        list(chatty)
        assert len(caplog.records) == 24  # nothing left to sum up
    assert quiet.skipped == chatty.skipped == 24


def test_corrupt_bytes_in_the_middle_are_skipped(tmp_path):
    p = write_video(tmp_path / "v.avi", n=40)
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))
    c = tmp_path / "c.avi"
    c.write_bytes(bytes(data))
    frames = list(VideoFileSource(c))
    assert len(frames) >= 30  # most frames still come through; nothing raised


def test_missing_or_bogus_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "nope.mp4"))
    (tmp_path / "x.mp4").write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(tmp_path / "x.mp4"))


def test_folder_sorted_with_labels_and_corrupt_image(tmp_path):
    for name in ["b.jpg", "a.png", "c.jpg"]:
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 128, np.uint8))
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8 broken")
    (tmp_path / "labels.csv").write_text("file,x,y,w,h,plate\na.png,1,2,10,5,abc123\n")
    src = open_source(str(tmp_path))
    assert isinstance(src, FolderSource) and src.independent
    frames = list(src)
    assert [f.name for f in frames] == ["a.png", "b.jpg", "c.jpg"]
    assert frames[0].labels[0].plate == "ABC123" and frames[0].labels[0].box == (1, 2, 11, 7)
    assert frames[1].labels is None  # no row: unlabelled (`b.jpg,,,,,` would be [], no plate here)
    assert src.skipped == 1 and "d.jpg" in src.problems[0]


def test_folder_openalpr_txt_labels(tmp_path):
    cv2.imwrite(str(tmp_path / "car1.jpg"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "car1.txt").write_text("car1.jpg 3 4 10 5 7XYZ123\n")
    (f,) = list(FolderSource(tmp_path))
    assert f.labels[0].plate == "7XYZ123" and f.labels[0].box == (3, 4, 13, 9)
    assert list(FolderSource(tmp_path)) and FolderSource(tmp_path).labels


def decoded_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (item := cap.read())[0]:
        frames.append(item[1])
    return frames


def test_a_recording_over_http_is_read_once_like_a_file(tmp_path):
    # Before: its end was taken for a dropped camera, and with the default (reconnect forever) the
    # file was played again from the start, over and over: every pass read again each time.
    local = decoded_frames(write_video(tmp_path / "v.avi", n=20))
    data = (tmp_path / "v.avi").read_bytes()
    with MediaServer({"/v.avi": lambda req, n: send_body(req, data)}) as server:
        src = open_source(server.url + "/v.avi")  # max_reconnects None: a camera would retry forever
        assert isinstance(src, StreamSource) and not src.live and src.length == 20
        assert src.describe().startswith("recording ")
        frames = read_all(src)
        assert server.gets["/v.avi"] == 1  # opened once, never replayed
    assert len(frames) == 20 and src.skipped == 0 and src.problems == [] and src.reconnects == 0
    assert all(np.array_equal(f.image, want) for f, want in zip(frames, local))
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(20)])  # media time
    assert (frames[-1].captured_at - frames[0].captured_at).total_seconds() == pytest.approx(1.9)
    with pytest.raises(SourceError, match="cannot open stream") as err:
        StreamSource("http://user:secret@127.0.0.1:9/none.avi", open_timeout_s=1)
    assert "secret" not in str(err.value)  # stream credentials never reach the logs


def test_a_recording_dropped_midway_resumes_where_it_was(tmp_path, caplog):
    local = decoded_frames(write_video(tmp_path / "v.avi", n=20))
    data = (tmp_path / "v.avi").read_bytes()

    def first_get_drops(req, n):
        send_body(req, data if n > 1 else data[: len(data) * 6 // 10], length=len(data))

    with MediaServer({"/v.avi": first_get_drops}) as server, caplog.at_level(logging.WARNING, "edge.sources"):
        src = StreamSource(server.url + "/v.avi")
        frames = read_all(src)
        assert server.gets["/v.avi"] == 2
    assert src.reconnects == 1 and src.skipped == 0
    drops = [r.getMessage() for r in caplog.records if "read failed after" in r.getMessage()]
    assert len(drops) == 1 and "reconnecting" in drops[0]
    dropped_after = int(drops[0].split("read failed after ")[1].split()[0])
    assert 5 < dropped_after < 20
    # every frame once, in order: the frames before the drop are not read again, nor skipped. The
    # last one before the drop may be cut short (the decoder fills what arrived), none other differs.
    assert len(frames) == 20 and [f.index for f in frames] == list(range(20))
    differ = [f.index for f, want in zip(frames, local) if not np.array_equal(f.image, want)]
    assert differ in ([], [dropped_after - 1])


def test_a_recording_shorter_than_it_announced_is_truncated_not_replayed(tmp_path):
    write_video(tmp_path / "v.avi", n=20)
    data = (tmp_path / "v.avi").read_bytes()
    cut = data[: len(data) * 6 // 10]  # every request: the header says 20 frames, ~11 are there
    with MediaServer({"/v.avi": lambda req, n: send_body(req, cut)}) as server:
        src = StreamSource(server.url + "/v.avi")  # reconnects forever for a live camera
        frames = read_all(src)
        gets = server.gets["/v.avi"]
    assert 5 < len(frames) < 20 and [f.index for f in frames] == list(range(len(frames)))
    assert src.skipped == 20 - len(frames)  # what it lacks, counted as a truncated video file does
    assert "truncated" in src.problems[-1] and f"{len(frames)} of the 20 frames" in src.problems[-1]
    assert gets == 3  # opened, then reopened and sought twice at the same frame: it ends there


def test_a_live_stream_reconnects_after_each_drop_and_logs_the_first(caplog):
    jpegs = [cv2.imencode(".jpg", np.full((48, 64, 3), 20 * i, np.uint8))[1].tobytes() for i in range(5)]

    def mjpeg(req, n):
        if n > 3:  # the camera goes away for good after three sessions
            req.send_error(503)
            return
        send_mjpeg(req, jpegs)

    with MediaServer({"/cam.mjpg": mjpeg}) as server, caplog.at_level(logging.WARNING, "edge.sources"):
        src = StreamSource(server.url + "/cam.mjpg", max_reconnects=1)
        assert src.live and src.length is None
        frames = read_all(src)
    # A drop between frames resets the count in a row: three sessions of five frames each are read;
    # then one failed reconnect is allowed, and the next gives up.
    assert len(frames) == 15 and [f.index for f in frames] == list(range(15))
    assert [round(float(f.image.mean()) / 20) for f in frames] == [0, 1, 2, 3, 4] * 3
    assert src.reconnects == 3 and "gave up after 1 reconnect attempts in a row" in src.problems[-1]
    assert src.skipped == 0  # every frame the camera sent was read; giving up skips none
    messages = [r.getMessage() for r in caplog.records]
    assert sum("read failed after" in m for m in messages) == 1  # the first drop; the rest counted
    assert any("drops: 3 in all" in m for m in messages)  # and summed up at the end


def test_a_camera_that_stalls_is_a_drop_after_the_read_timeout():
    import time

    jpegs = [cv2.imencode(".jpg", np.full((48, 64, 3), 20 * i, np.uint8))[1].tobytes() for i in range(3)]

    def stalls_once(req, n):
        if n > 2:
            req.send_error(503)
            return
        send_mjpeg(req, jpegs)
        if n == 1:
            time.sleep(15)  # connected, sending nothing: a hung camera

    with MediaServer({"/cam.mjpg": stalls_once}) as server:
        t0 = time.monotonic()
        src = StreamSource(server.url + "/cam.mjpg", max_reconnects=1, read_timeout_s=1.0)
        frames = read_all(src)
        took = time.monotonic() - t0
    assert len(frames) == 6 and src.reconnects == 2  # reconnected after the stall, not stuck in it
    assert took < 10, f"waited {took:.1f} s: the read timeout did not apply"


def test_a_negative_reconnect_limit_is_refused():
    with pytest.raises(SourceError, match="max_reconnects must be 0 or more"):
        StreamSource("http://127.0.0.1:9/none.avi", max_reconnects=-1)


def test_reader_thread_and_pacing(tmp_path):
    src = VideoFileSource(write_video(tmp_path / "v.avi", n=6, fps=50))
    import time

    t0 = time.monotonic()
    reader = ReaderThread(paced(iter(src)), maxsize=2)
    got = []
    while (f := reader.get(timeout=5)) is not None:
        got.append(f.index)
    assert got == list(range(6))
    assert time.monotonic() - t0 >= 5 / 50 * 0.9  # real-time pacing


def test_video_ground_truth_next_to_it(tmp_path):
    import json

    write_video(tmp_path / "video.avi", n=5)
    with open(tmp_path / "ground_truth.jsonl", "w") as fh:
        for i in range(5):
            plates = [{"plate": "abc123", "box": [i, 1, i + 10, 6], "vehicle_id": 4}] if i % 2 else []
            fh.write(json.dumps({"frame": i, "t": i / 10, "plates": plates}) + "\n")
    frames = list(VideoFileSource(tmp_path / "video.avi"))
    assert [len(f.labels) for f in frames] == [0, 1, 0, 1, 0]
    assert frames[1].labels[0].plate == "ABC123" and frames[1].labels[0].track == 4
    assert frames[1].labels[0].box == (1, 1, 11, 6)
    assert list(VideoFileSource(tmp_path / "video.avi", ground_truth=False))[1].labels is None


def test_video_ground_truth_with_bad_lines_says_so(tmp_path, caplog):
    """A truncated ground_truth.jsonl: the lines that parse are kept, the others named, not silently lost."""
    import json

    write_video(tmp_path / "video.avi", n=4)
    lines = [json.dumps({"frame": i, "plates": [{"plate": "ABC123", "box": [1, 1, 11, 6], "vehicle_id": 1}]})
             for i in range(4)]
    lines[2] = lines[2][: len(lines[2]) // 2]  # cut mid-line
    (tmp_path / "ground_truth.jsonl").write_text("\n".join(lines) + "\n")
    source = VideoFileSource(tmp_path / "video.avi")
    assert sorted(source.ground_truth) == [0, 1, 3]
    assert source.ground_truth.bad_lines == [3]
    assert "ground_truth.jsonl: 1 line(s) do not parse (first: line 3)" in caplog.text


def test_folder_labels_csv_bad_row_is_named_other_labels_ignored(tmp_path, caplog):
    (tmp_path / "labels.csv").write_text("file,x,y,w,h,plate\na.jpg,1,2,30,15,ABC123\nb.jpg,1,2\n")
    with pytest.raises(ValueError, match="line 3"):
        read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("file,state,plate\na.png,ca,ABC123\n")  # a crops folder
    assert read_labels(tmp_path) == {}
    assert "no x,y,w,h columns" in caplog.text


def test_live_reader_drops_oldest_when_the_pipeline_lags():
    from datetime import datetime, timezone

    from edge.sources.base import Frame

    frames = (Frame(i, np.zeros((2, 2, 3), np.uint8), i / 10, datetime.now(timezone.utc)) for i in range(50))
    reader = ReaderThread(frames, maxsize=4, drop_oldest=True)
    import time

    time.sleep(0.3)  # the "camera" runs on while nobody reads
    got = []
    while (f := reader.get(timeout=5)) is not None:
        got.append(f.index)
    assert reader.dropped > 0 and got[-1] == 49 and got == sorted(got)
    assert len(got) + reader.dropped == 50


def test_folder_labels_from_a_file_elsewhere_and_its_errors(tmp_path):
    """Labels apart from the images (a read-only archive): the file's labels win over the folder's;
    a missing file, a missing column or a bad row is an error naming the file and line."""
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((20, 30, 3), np.uint8))
    (images / "labels.csv").write_text("file,x,y,w,h,plate\na.png,1,1,4,2,FOLDER1\n")
    good = tmp_path / "mine.csv"
    good.write_text("file,x,y,w,h,plate\na.png,1,2,10,5,abc123\n")
    (f,) = list(FolderSource(images, labels_file=good))
    assert [lab.plate for lab in f.labels] == ["ABC123"] and f.labels[0].box == (1, 2, 11, 7)
    assert read_labels(images)["a.png"][0].plate == "FOLDER1"
    with pytest.raises(ValueError, match="labels file not found"):
        read_labels(images, tmp_path / "nope.csv")
    (tmp_path / "cols.csv").write_text("file,x,y,w,plate\na.png,1,2,10,ABC\n")
    with pytest.raises(ValueError, match=r"cols\.csv: missing column\(s\) h"):
        read_labels(images, tmp_path / "cols.csv")
    (tmp_path / "row.csv").write_text("file,x,y,w,h,plate\na.png,1,2,10,5,ABC\na.png,1,two,10,5,ABC\n")
    with pytest.raises(ValueError, match=r"row\.csv line 3: bad row"):
        read_labels(images, tmp_path / "row.csv")
    (tmp_path / "plate.csv").write_text("file,x,y,w,h,plate\na.png,1,2,10,5,AB-12\n")
    with pytest.raises(ValueError, match=r"plate\.csv line 2: plate must be A-Z0-9"):
        read_labels(images, tmp_path / "plate.csv")


def test_the_shipped_benchmark_labels_parse():
    """benchmarks/*.labels.csv (read by `bench frames --labels`) stay well-formed: one label per
    frame, boxes 2:1 within a frame, plates A-Z0-9."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    files = sorted(root.glob("*.labels.csv"))
    assert files
    for path in files:
        labels = read_labels(root, path)
        assert labels and all(len(v) == 1 for v in labels.values())
        for (lab,) in labels.values():
            x1, y1, x2, y2 = lab.box
            assert x1 >= 0 and y1 >= 0 and 1.6 < (x2 - x1) / (y2 - y1) < 2.4 and lab.plate.isalnum()


def test_rtsp_is_opened_over_tcp_unless_the_user_says_otherwise(monkeypatch):
    import os

    import edge.sources.stream as stream

    seen = []

    class FakeCapture:
        def __init__(self, target, *args):
            seen.append((target, os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")))

        def isOpened(self):
            return False

    monkeypatch.setattr(stream.cv2, "VideoCapture", FakeCapture)
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    with pytest.raises(SourceError):
        StreamSource("http://127.0.0.1:9/a.mjpg")
    assert seen[-1] == ("http://127.0.0.1:9/a.mjpg", None)  # only RTSP has a transport to choose
    with pytest.raises(SourceError):
        StreamSource("rtsp://cam:pw@127.0.0.1:9/stream1")
    assert seen[-1][1] == "rtsp_transport;tcp"
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp")
    with pytest.raises(SourceError):
        StreamSource("rtsp://127.0.0.1:9/stream1")
    assert seen[-1][1] == "rtsp_transport;udp"  # the user's own setting wins
