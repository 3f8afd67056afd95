"""`alpr-edge run` (one camera's edge node) and `alpr-edge sim` (N of them as separate processes)."""

from __future__ import annotations

import argparse
import os
import sys

BROKER_ENV = "ALPR_EDGE_BROKER_URL"
# Set by `sim` to its own pid: a camera whose sim is gone (killed with SIGKILL) stops by itself.
PARENT_ENV = "ALPR_EDGE_PARENT_PID"

RUN_FLAGS = {
    # flag: (config field, argparse kwargs)
    "--source": ("source", dict(help="video file, image folder, rtsp://... / http://... stream, or synthetic:<scenario>[?seed=N]")),
    "--camera-id": ("camera_id", dict(help="camera identifier (publishes on alpr/raw/<camera-id>)")),
    "--agency-id": ("agency_id", dict(help="operating agency that owns the camera")),
    "--broker": ("broker_url", dict(help="mqtt://user:password@host:port, or $ALPR_EDGE_BROKER_URL (neither: store reads in the outbox only)")),
    "--max-reconnects": ("max_reconnects", dict(type=int, help="streams: failed reconnects in a row before giving up (default: never give up)")),
    "--motion-threshold": ("motion_threshold", dict(type=float, help="share of changed pixels that counts as motion")),
    "--detector-model": ("detector_model", dict(help="detector ONNX (default models/detector.onnx)")),
    "--ocr-model": ("ocr_model", dict(help="OCR ONNX model, or several comma-separated (the first reads every "
                                           "plate, the others give a second opinion on small ones); default "
                                           "models/ocr.onnx,models/ocr-camera.onnx")),
    "--detector-threshold": ("detector_threshold", dict(type=float)),
    "--plate-check-chars": ("plate_check_chars", dict(type=int, help="keep detections the OCR reads at least this many characters in (0: off)")),
    "--detect-tiles": ("detect_tiles", dict(help="run the detector over COLSxROWS overlapping tiles, e.g. 2x2 (small plates, large frames)")),
    "--min-confidence": ("min_confidence", dict(type=float, help="voted plate confidence needed to publish")),
    "--plate-size-max-ratio": ("plate_size_max_ratio", dict(type=float, help="video: detections this many times taller than the camera's plates at that row are not plates (default 4; 0: off)")),
    "--min-plate-chars": ("min_plate_chars", dict(type=int, help="shorter voted readings are not published (default 4)")),
    "--track-timeout": ("track_timeout_s", dict(type=float, help="seconds without a sighting that end a track")),
    "--min-track-frames": ("min_track_frames", dict(type=int, help="sightings a video track needs to become a read (default 2)...")),
    "--short-track-confidence": ("short_track_confidence", dict(type=float, help="...unless its reading is at least this sure (default 0.95; 0: never)")),
    "--outbox": ("outbox_path", dict(help="SQLite outbox file (default <output-dir>/outbox.db)")),
    "--outbox-max": ("outbox_max_rows", dict(type=int, help="unacknowledged reads the outbox holds at most")),
    "--output-dir": ("output_dir", dict(help="where crops (crop_ref) and the default outbox go")),
    "--crop-min-free-mb": ("crop_min_free_mb", dict(type=int, help="no crop is saved while the disk of --output-dir has less free (MB; "
                                                             "default 1024; 0: off): the outbox keeps room for reads")),
    "--metrics-interval": ("metrics_interval_s", dict(type=float)),
    "--threads": ("threads", dict(type=int, help="onnxruntime threads per stage")),
    "--batch-frames": ("batch_frames", dict(type=int)),
    "--min-plate-height": ("min_plate_height", dict(type=float, help="plate boxes shorter than this (px) are tracked, not read")),
    "--ocr-variants": ("ocr_variants", dict(type=int, help="framings of each plate the OCR reads and votes over (1-5)")),
    "--second-look-max-chars": ("second_look_max_chars", dict(
        type=int, help="with framings voted: readings this short are read again wider for a cut-off end character (default 5; 0: off)")),
    "--speed": ("speed", dict(type=float, help="real-time pacing multiplier")),
    "--vision": ("vision", dict(choices=["onnx", "labels", "label-boxes"], help="labels: plates from the source's ground truth (network simulation); label-boxes: ground-truth boxes, real OCR")),
    "--label-misread-rate": ("label_misread_rate", dict(type=float, help="vision=labels: share of characters misread")),
    "--drain-timeout": ("drain_timeout_s", dict(type=float, help="at the end of a file, wait this long for PUBACKs")),
}


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with edge node settings (flags override it)")
    for flag, (_, kw) in RUN_FLAGS.items():
        p.add_argument(flag, default=None, **kw)
    p.add_argument("--realtime", action="store_const", const="realtime", dest="pacing", help="pace files at their frame rate")
    p.add_argument("--fast", action="store_const", const="fast", dest="pacing", help="process files as fast as possible (default)")
    p.add_argument("--no-motion-gating", action="store_false", dest="motion_gating", default=None, help="process every frame")
    p.add_argument("--no-crops", action="store_false", dest="save_crops", default=None, help="do not save crop JPEGs")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last stdout line")


def config_from_args(args):
    from edge.node.config import build_config

    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _) in RUN_FLAGS.items()}
    if overrides["broker_url"] is None and os.environ.get(BROKER_ENV):
        # The environment keeps the camera's password out of the process list (`ps`).
        overrides["broker_url"] = os.environ[BROKER_ENV]
    overrides.update(pacing=args.pacing, motion_gating=args.motion_gating, save_crops=args.save_crops)
    return build_config(args.config, **overrides)


def register(sub) -> None:
    p = sub.add_parser("run", help="run one camera's edge node: detect, read, track, vote, publish over MQTT")
    add_run_arguments(p)
    p.set_defaults(func=_run)

    s = sub.add_parser("sim", help="run N edge nodes as separate processes against one broker")
    s.add_argument("--cameras", type=int, default=None, help="number of edge nodes (default: every camera of --registry)")
    s.add_argument("--camera-prefix", default="cam", help="without --registry, camera ids are <prefix>-<n> (n from 1)")
    s.add_argument(
        "--broker",
        required=True,
        help="broker URL; {camera} and {password} are filled per camera, e.g. mqtt://{camera}:{password}@127.0.0.1:1884; "
        "with --registry: mqtt://host:port (each camera logs in with its registry login)",
    )
    s.add_argument("--passwords", help="YAML mapping camera id -> password (for {password} in --broker)")
    s.add_argument("--registry", help="registry YAML: cameras, their agencies and logins (with --secrets)")
    s.add_argument("--secrets", help="secrets directory of the registry's credentials (default: secrets/ next to the registry; "
                        "broker-config writes it)")
    s.add_argument("--source", default="synthetic:default", help="source for every camera; synthetic sources get seed=<n>")
    s.add_argument("--agency-id", default=None, help="operating agency of every camera (default: from --registry)")
    s.add_argument("--output-dir", default="edge-data", help="each camera uses <output-dir>/<camera-id>")
    s.add_argument("--json", action="store_true")
    s.add_argument("run_args", nargs=argparse.REMAINDER, help="after --: more `alpr-edge run` flags for every camera")
    s.set_defaults(func=_sim)


def _run(args) -> int:
    from edge.node.runner import run_node

    return run_node(args)


def _sim(args) -> int:
    from edge.node.sim import run_sim

    return run_sim(args)
