"""Wiring for `alpr-edge run`: config -> source, ONNX stages, outbox, publisher -> EdgeNode."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import zlib
from datetime import datetime, timezone

log = logging.getLogger("edge.node")

# Signals this close together are one stop request (from several senders), not "again: stop now".
SAME_STOP_REQUEST_S = 1.0


def _fail(msg: str) -> int:
    print(f"alpr-edge run: error: {msg}", file=sys.stderr)
    return 2


def load_stages(cfg):
    """The ONNX detector and OCR named by the config (clear errors when they are missing)."""
    if cfg.vision == "labels":
        from edge.node.label_vision import LabelDetector, LabelOCR

        log.warning(
            "%s: vision=labels: plates come from the source's ground truth (network simulation; "
            "these reads say nothing about recognition)", cfg.camera_id
        )
        det = LabelDetector(min_height=cfg.min_plate_height)
        return det, LabelOCR(det, cfg.label_misread_rate, seed=zlib.crc32(cfg.camera_id.encode()))
    from edge.vision.ocr import load_ocr

    if cfg.vision == "label-boxes":
        from edge.node.label_vision import LabelDetector

        return LabelDetector(keep_texts=False), load_ocr(cfg.ocr_model, intra_op_threads=cfg.threads)

    from edge.vision.detector import OnnxPlateDetector

    from edge.vision.verify import PROPOSAL_THRESHOLD

    threshold = cfg.detector_threshold
    if threshold is None and cfg.plate_check_chars:
        # the node checks these proposals by their readings (EdgeNode._read_stage)
        threshold = PROPOSAL_THRESHOLD
    detector = OnnxPlateDetector(cfg.detector_model, threshold=threshold, threads=cfg.threads)
    if cfg.detect_tiles != "1x1":
        from edge.node.tiling import TiledDetector

        cols, rows = (int(v) for v in cfg.detect_tiles.split("x"))
        detector = TiledDetector(detector, cols, rows)
    ocr = load_ocr(cfg.ocr_model, intra_op_threads=cfg.threads)
    return detector, ocr


def _drain(publisher, outbox, cfg, stop) -> None:
    """Give the broker time to acknowledge the reads still in the outbox (when it is there)."""
    waiting = len(outbox)
    if not waiting:
        return
    # Asked to stop: a short grace period only (what is left goes out on the next start).
    limit = min(cfg.drain_timeout_s, 2.0) if stop.is_set() else cfg.drain_timeout_s
    end = time.monotonic() + limit
    # A broker still being connected to (far away, a TLS handshake) when a short source ended is
    # there: its answer is part of the drain time (before, such runs left every read for the next start).
    if publisher.wait_connected(limit):
        log.info("waiting up to %.0f s for the broker to acknowledge %d reads", end - time.monotonic(), waiting)
        publisher.wait_drained(max(0.0, end - time.monotonic()))


def _stop_when_parent_is_gone(stop: threading.Event, check_every_s: float = 1.0) -> None:
    """Under `sim` (PARENT_ENV holds its pid): stop as on SIGTERM when sim is gone. A sim killed with
    SIGKILL passes no signal on, and its cameras ran on, orphaned, until their sources ended."""
    from edge.node.commands import PARENT_ENV

    try:
        parent = int(os.environ.get(PARENT_ENV, ""))
    except ValueError:
        return
    if os.getppid() != parent:  # a stale variable (inherited from a shell), not our sim: not watched
        return

    def watch() -> None:
        while not stop.wait(check_every_s):
            if os.getppid() != parent:
                log.warning("alpr-edge sim (pid %d) is gone: finishing the vehicles in view, then stopping", parent)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _name_camera_in_log_lines_under_sim(camera_id: str) -> None:
    """Under `sim` every camera logs to sim's stderr: each line names its camera. Many lines name
    none ('connected to broker', 'broker connection lost', 'signal 15: ...'), and an operator could
    not tell which camera had lost the broker."""
    from edge.node.commands import PARENT_ENV

    if not os.environ.get(PARENT_ENV):
        return
    fmt = f"%(asctime)s %(levelname)s [{camera_id.replace('%', '%%')}] %(name)s: %(message)s"
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(fmt))


def run_node(args) -> int:
    from edge.node.commands import config_from_args
    from edge.node.config import EdgeConfigError
    from edge.node.pipeline import EdgeNode
    from edge.node.sink import OutboxSink, ReadNotStored
    from edge.sources import SourceError, open_source
    from edge.transport.mqtt import redact_url
    from edge.transport.outbox import Outbox, OutboxError, OutboxInUse, publisher_for_url

    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        # Periodic metrics are log lines: show them unless the user asked for quiet.
        logging.getLogger("edge").setLevel(logging.INFO)
        if not logging.getLogger().handlers:
            logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
    except EdgeConfigError as err:
        return _fail(str(err))
    _name_camera_in_log_lines_under_sim(cfg.camera_id)
    try:
        source = open_source(cfg.source, max_reconnects=cfg.max_reconnects)
    except (SourceError, ValueError, TypeError) as err:
        return _fail(f"source {redact_url(cfg.source)!r}: {err}")  # a stream URL may hold a password
    try:
        detector, ocr = load_stages(cfg)
    except (FileNotFoundError, ValueError, ImportError) as err:
        return _fail(f"cannot load the vision models: {err}")
    try:
        outbox = Outbox(cfg.resolved_outbox_path, cfg.outbox_max_rows, exclusive=True)
    except OutboxInUse as err:
        return _fail(str(err))
    except OutboxError as err:
        return _fail(f"{err}. Refusing to take frames without a writable outbox")
    publisher = None
    if cfg.broker_url:
        try:
            # A camera killed (or its machine gone) said "running" on its retained status for good:
            # the broker now replaces it with "offline" when the connection ends without a goodbye.
            offline = json.dumps({"camera_id": cfg.camera_id, "agency_id": cfg.agency_id, "state": "offline"})
            publisher = publisher_for_url(outbox, cfg.broker_url, client_id=f"edge-{cfg.camera_id}",
                                          will=(cfg.status_topic, offline.encode()))
        except ValueError as err:
            return _fail(str(err))
        publisher.start()
    log.info("%s: %s -> %s (outbox %s, %d waiting)", cfg.camera_id, source.describe(), cfg.topic if publisher else "outbox only", cfg.resolved_outbox_path, len(outbox))

    stop = threading.Event()
    sink = OutboxSink(outbox, cfg.topic, publisher, stop_event=stop)

    def publish_status(state: str, snap: dict) -> None:
        """The retained alpr/status/<camera> message: the same fields while running and at the end."""
        status = {
            "camera_id": cfg.camera_id,
            "agency_id": cfg.agency_id,
            "at": datetime.now(timezone.utc).isoformat(),
            "state": state,
            "outbox_depth": len(outbox),
            "outbox_max": cfg.outbox_max_rows,
            "broker_connected": publisher.connected,
            **snap,
        }
        publisher.publish_status(cfg.status_topic, json.dumps(status).encode())

    def on_metrics(snap: dict) -> None:
        # also called while the node waits for a full (or unwritable) outbox: it says so
        if publisher is not None:
            publish_status("blocked" if snap.get("outbox_full") or snap.get("outbox_unwritable") else "running", snap)

    node = EdgeNode(cfg, source, detector, ocr, sink, on_metrics=on_metrics)
    node.stop_event = stop

    first_signal_at: list[float] = []

    def on_signal(signum, frame):
        now = time.monotonic()
        if first_signal_at:
            if now - first_signal_at[0] < SAME_STOP_REQUEST_S:
                # the same stop from another sender: systemd signals every process of the unit and
                # sim each camera too; taken as "again", they stopped cameras without their last reads
                return
            # a second Ctrl-C: stop now (stored reads are safe in the outbox)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        first_signal_at.append(now)
        log.warning("signal %d: finishing the vehicles in view, then stopping (again to stop now)", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    _stop_when_parent_is_gone(stop)

    show_progress = args.progress if args.progress is not None else (sys.stderr.isatty() and source.length)
    rc = 0
    try:
        if show_progress and source.length:
            from rich.progress import Progress

            with Progress(transient=False) as bar:
                task = bar.add_task(cfg.camera_id, total=source.length)
                metrics = node.run(progress=lambda n: bar.advance(task, n))
        else:
            metrics = node.run()
    except ReadNotStored as err:
        log.error("%s", err)
        metrics, rc = node.metrics, 3
    finally:
        source.close()
    drain_start = time.monotonic()
    if publisher is not None:
        _drain(publisher, outbox, cfg, stop)
        if publisher.connected:
            publish_status("stopped", metrics.snapshot({**node.stage_counters(), **sink.state()}))
        publisher.stop()  # an unreachable broker: paho may be sleeping between attempts (<= 2 s)
    drain_s = time.monotonic() - drain_start
    if drain_s >= 0.1:
        log.info("%s: %.1f s after the last frame for the outbox and the broker (not in fps)", cfg.camera_id, drain_s)
    waiting = len(outbox)
    if waiting:
        why = f" ({publisher.last_error})" if publisher is not None and publisher.last_error else ""
        log.warning("%d reads stay in the outbox %s%s; they are sent on the next start", waiting,
                    cfg.resolved_outbox_path, why)
    outbox.close()
    summary = metrics.snapshot(
        {
            **node.stage_counters(),
            "camera_id": cfg.camera_id,
            "outbox_waiting": waiting,
            "published": publisher.published if publisher else 0,
            "acked": publisher.acked if publisher else 0,
            "drain_s": round(drain_s, 3),  # after processing: fps and elapsed_s leave it out
            "blocked_s": round(sink.blocked_s, 3),  # waiting for a full or unwritable outbox
        }
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return rc
