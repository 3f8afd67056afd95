"""bench video on a damaged file scores passes over the frames that decoded.

A vehicle that passed only in frames that did not decode (a truncated or damaged recording) was
counted as a pass left unread, lowering the read rate of the frames actually processed; now it is
left out of the score and counted apart (`passes_in_undecoded_frames`).
"""

from __future__ import annotations

import json

import cv2

from edge import cli
from edge_node_helpers import ColourKeyedDetector, ColourKeyedOCR, ScriptedSource
from test_sources_files import blank_avi_frames


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_passes_only_in_undecoded_frames_are_not_counted_unread(tmp_path, monkeypatch, capsys):
    src = ScriptedSource(n_vehicles=4, seed=5, gap=30)
    monkeypatch.setattr("edge.bench.frames._stages", lambda cfg: (ColourKeyedDetector(), ColourKeyedOCR(src.vehicles)))
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 180))
    ids = {v.plate: i for i, v in enumerate(src.vehicles)}
    in_frames: dict[int, set[int]] = {}
    with open(tmp_path / "ground_truth.jsonl", "w") as gt:
        for f in src:
            w.write(f.image)
            plates = [{"plate": lab.plate, "box": list(lab.box), "vehicle_id": ids[lab.plate]} for lab in f.labels]
            for p in plates:
                in_frames.setdefault(p["vehicle_id"], set()).add(f.index)
            gt.write(json.dumps({"frame": f.index, "t": f.timestamp, "plates": plates}) + "\n")
    w.release()
    last = src.vehicles[-1]
    lost = in_frames[ids[last.plate]]
    assert not lost & set().union(*(in_frames[i] for i in range(3)))  # the last vehicle passes alone
    blank_avi_frames(path, lost)  # ... in frames that no longer decode
    assert cli.main(["bench", "video", str(path), "--json"]) == 0
    out = _last_json(capsys)
    assert out["skipped"] >= len(lost)  # (25 failures in a row end the decoding: the rest counts too)
    g = out["ground_truth"]
    assert g["vehicle_passes"] == 3 and g["passes_read"] == 3 and g["pass_read_rate"] == 1.0
    assert g["passes_in_undecoded_frames"] == 1 and last.plate not in g["unread_readable"]
    assert g["by_min_confidence"][0]["passes_read"] == 3
