"""`alpr-edge synth plates` and `alpr-edge synth scene`: synthetic training data and camera footage."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("synth", help="render synthetic plates (OCR training data) or camera scenes with ground truth")
    synth_sub = p.add_subparsers(dest="synth", metavar="WHAT")

    pl = synth_sub.add_parser(
        "plates",
        help="labelled plate crops: DIR gets PNGs and labels.csv (file,state,plate), like the real crops folder",
    )
    pl.add_argument("--count", type=int, default=1000, help="number of crops (default 1000)")
    pl.add_argument("--out", type=Path, required=True, help="output folder (created)")
    pl.add_argument("--size", default="64x128", help="crop HEIGHTxWIDTH in pixels (default 64x128: the real crops' 2:1 shape; the OCR resizes to its own input)")
    pl.add_argument("--states", default="", help="comma-separated state codes (default: all 50 states and DC)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--serial-fonts", default="plate",
                    help="comma-separated faces the serials are drawn in, one per plate: plate (default), "
                         "plate-bebas, plate-din, plate-routed (does the OCR read plate dies it never saw?)")
    pl.add_argument("--clean", action="store_true", help="no degradations (frontal, sharp, clean)")
    pl.add_argument("--degradation", type=Path, default=None,
                    help="YAML of degradation ranges (fields of edge.synth.plates.Degradation, e.g. ir_p: 0.5)")
    pl.add_argument("--resume", action="store_true",
                    help="continue an interrupted run in --out (same options): the crops it wrote are kept and "
                         "the rest rendered as the uninterrupted run would have")
    pl.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    pl.set_defaults(func=_plates)

    sc = synth_sub.add_parser(
        "scene",
        help="render a camera scenario (YAML) to a video plus per-frame ground truth (JSON lines)",
    )
    sc.add_argument("scenario", type=Path, help="scenario YAML (see examples/scenarios/)")
    sc.add_argument("--out", type=Path, required=True, help="output folder: video + ground_truth.jsonl")
    sc.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    sc.add_argument("--duration", type=float, default=None, help="override the scenario's duration (seconds)")
    sc.add_argument("--format", choices=["mp4", "avi"], default="mp4", help="video container (default mp4)")
    sc.add_argument("--frames-every", type=int, default=0, metavar="K",
                    help="also write every K-th frame as JPEG + labels.csv (file,x,y,w,h,plate; a frame "
                         "showing no plate: NAME,,,,, so detections there count as false alarms) into "
                         "OUT/frames, and its plates as crops + labels.csv (file,state,plate) into OUT/crops")
    sc.add_argument("--min-plate-px", type=float, default=12.0,
                    help="label plates at least this wide in OUT/frames/labels.csv (default 12)")
    sc.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    sc.set_defaults(func=_scene)


# The largest crop `synth plates` renders: 4x the default's sides (the OCR models read 48x144; their
# training renders 96x288). Memory and time grow with the area: 512x1024 took 7 GB and 20 s to warm
# up, 5000x5000 ran out of memory without a word.
MAX_PLATE_SIZE = (256, 512)
MIN_PLATE_SIZE = (8, 16)  # the renderer's own floor (edge.synth.plates), said with the option's name


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"synth plates: --size must look like 64x128 (HEIGHTxWIDTH), got {text!r}") from None
    if h < MIN_PLATE_SIZE[0] or w < MIN_PLATE_SIZE[1]:
        raise SystemExit(f"synth plates: --size {text}: at least {MIN_PLATE_SIZE[0]}x{MIN_PLATE_SIZE[1]} (HEIGHTxWIDTH)")
    if h > MAX_PLATE_SIZE[0] or w > MAX_PLATE_SIZE[1]:
        raise SystemExit(f"synth plates: --size {text}: at most {MAX_PLATE_SIZE[0]}x{MAX_PLATE_SIZE[1]} "
                         "(HEIGHTxWIDTH; memory and time grow with the crop's area)")
    return h, w


PLATES_BATCH = 1000  # crops rendered, written and checkpointed at a time
PLATES_PROGRESS_NAME = ".synth-plates-progress.json"  # in --out while a run is unfinished


def _write_progress(path: Path, run_options: dict, done: int, rng) -> None:
    """Note that `done` crops are written and labelled, and the random stream's state for the next
    one (atomically: a kill while writing leaves the previous note)."""
    import json
    import os

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"options": run_options, "done": done, "rng": rng.bit_generator.state}))
    os.replace(tmp, path)


def _resume_point(out: Path, run_options: dict, rng) -> int:
    """How many crops the interrupted run in `out` completed; restores `rng` to where it stood there
    and cuts labels.csv back to those crops (rows past the last checkpoint are rendered again, to
    the same PNGs). Refuses, naming the option, a run started with other options."""
    import json
    import os

    labels_path, progress_path = out / "labels.csv", out / PLATES_PROGRESS_NAME
    try:
        progress = json.loads(progress_path.read_text())
        saved_options, done, rng_state = progress["options"], int(progress["done"]), progress["rng"]
    except FileNotFoundError:
        if labels_path.is_file():
            with open(labels_path, newline="") as f:
                listed = max(sum(1 for _ in f) - 1, 0)
            if listed == run_options["--count"]:
                return listed  # finished (its progress note removed): nothing to do
            raise SystemExit(f"synth plates: --resume: {out} holds no interrupted run ({progress_path.name} "
                             f"missing; its labels.csv lists {listed} crops, --count is {run_options['--count']}); "
                             "run without --resume to start over") from None
        raise SystemExit(f"synth plates: --resume: {out} holds no interrupted run (no {progress_path.name}); "
                         "run without --resume to start") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"synth plates: --resume: cannot read {progress_path} ({err}); "
                         "run without --resume to start over") from None
    for option, value in run_options.items():
        if saved_options.get(option) != value:
            raise SystemExit(f"synth plates: --resume: {option} is {value!r} here, {saved_options.get(option)!r} "
                             f"in the interrupted run in {out}; resume with the same options, or run without "
                             "--resume to start over")
    try:
        with open(labels_path, newline="") as f:
            lines = f.readlines()
    except OSError as err:
        raise SystemExit(f"synth plates: --resume: cannot read {labels_path} ({err.strerror or err}); "
                         "run without --resume to start over") from None
    kept = lines[: 1 + done]
    missing = [line.split(",", 1)[0] for line in kept[1:] if not (out / line.split(",", 1)[0]).is_file()]
    if len(kept) != 1 + done or missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        why = f"{missing[0]}{more} listed but missing" if missing else \
            f"it lists {len(lines) - 1} crops, the progress note {done}"
        raise SystemExit(f"synth plates: --resume: {labels_path} does not match the interrupted run ({why}); "
                         "run without --resume to start over")
    if len(lines) != len(kept):  # rows of the batch the interruption cut short: rendered again
        tmp = labels_path.with_name(labels_path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            f.writelines(kept)
        os.replace(tmp, labels_path)
    rng.bit_generator.state = rng_state
    return done


def _plates(args: argparse.Namespace) -> int:
    import csv
    import os
    import sys
    import time

    import cv2
    import numpy as np

    from edge.bench.report import machine_info, print_json_last, print_table
    from edge.synth.plates import Degradation, render_plates, warm_up

    if args.count < 1:
        raise SystemExit("synth plates: --count must be at least 1")
    if args.seed < 0:
        raise SystemExit("synth plates: --seed must be >= 0")
    size = _parse_size(args.size)
    states = [s.strip().lower() for s in args.states.split(",") if s.strip()] or None
    from edge.synth.plates import check_serial_fonts

    try:
        serial_fonts = check_serial_fonts(args.serial_fonts)
    except ValueError as err:
        raise SystemExit(f"synth plates: --serial-fonts: {err}") from None
    degradation = None
    if args.degradation is not None:
        import yaml
        from pydantic import ValidationError

        try:
            degradation = Degradation.model_validate(yaml.safe_load(args.degradation.read_text()) or {})
        except UnicodeDecodeError as err:
            raise SystemExit(f"synth plates: cannot read {args.degradation}: not UTF-8 text (byte "
                             f"{err.object[err.start]:#04x} at offset {err.start})") from None
        except (OSError, yaml.YAMLError) as err:
            raise SystemExit(f"synth plates: cannot read {args.degradation}: {err}") from None
        except ValidationError as err:
            parts = [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()]
            raise SystemExit(f"synth plates: {args.degradation}: " + "; ".join(parts)) from None
    cv2.setNumThreads(1)  # the figure is per core; OpenCV threads only add overhead on small crops
    rng = np.random.default_rng(args.seed)
    # what makes the crops what they are: a resumed run must have been started with the same
    run_options = {"--count": args.count, "--size": list(size), "--states": states, "--seed": args.seed,
                   "--serial-fonts": list(serial_fonts), "--clean": args.clean,
                   "--degradation": degradation.model_dump(mode="json") if degradation is not None else None}
    start = 0
    if args.resume:
        start = _resume_point(args.out, run_options, rng)
        if start == args.count:
            (args.out / PLATES_PROGRESS_NAME).unlink(missing_ok=True)
            print(f"synth plates: {args.out / 'labels.csv'} already lists all {args.count} crops; nothing to resume")
            return 0
    setup0 = time.perf_counter()
    try:
        # one-time: glyph atlases and state templates for this size (no more warm-up crops than asked for)
        warm_up(size, states, plates=min(512, args.count))
    except ValueError as err:
        raise SystemExit(f"synth plates: {err}") from None
    setup_s = time.perf_counter() - setup0
    args.out.mkdir(parents=True, exist_ok=True)
    labels_path, progress_path = args.out / "labels.csv", args.out / PLATES_PROGRESS_NAME
    # labels.csv grows with the crops: a row is added (and flushed) right after its PNG is written,
    # so an interrupted run (Ctrl-C, kill, even SIGKILL) leaves a labels.csv listing exactly the
    # crops it completed, usable as it is; the progress file notes, after each batch, where the
    # random stream stood, so --resume renders the rest exactly as an uninterrupted run would.
    _write_progress(progress_path, run_options, start, rng)
    labels = open(labels_path, "a" if start else "w", newline="")
    # Each batch is written before the next is rendered: holding every crop until the end took
    # count x crop size of memory (100k crops at 96x288: 8 GB) and wrote nothing before it.
    wall = cpu = write_s = 0.0
    i = start
    try:
        w = csv.writer(labels)
        if not start:
            w.writerow(["file", "state", "plate"])
        for batch_start in range(start, args.count, PLATES_BATCH):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                batch = render_plates(min(PLATES_BATCH, args.count - batch_start), rng, size=size, states=states,
                                      degrade=not args.clean, degradation=degradation, serial_fonts=serial_fonts)
            except ValueError as err:
                raise SystemExit(f"synth plates: {err}") from None
            wall, cpu = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0
            write0 = time.perf_counter()
            for img, text, state in zip(batch.images, batch.texts, batch.states):
                name = f"{state}{i:06d}.png"
                if not cv2.imwrite(str(args.out / name), img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):  # fast; small crops
                    raise SystemExit(f"synth plates: cannot write {args.out / name} (disk full, or the folder not writable?)")
                w.writerow((name, state, text))
                labels.flush()
                i += 1
            os.fsync(labels.fileno())
            _write_progress(progress_path, run_options, i, rng)
            write_s += time.perf_counter() - write0
    except KeyboardInterrupt:
        print(f"synth plates: interrupted: {labels_path} lists the {i} crops written; the same command "
              "with --resume renders the rest", file=sys.stderr)
        raise
    finally:
        labels.close()
    progress_path.unlink()
    rendered = args.count - start

    result = {
        "count": args.count,
        "resumed_at": start,
        "size": list(size),
        "degraded": not args.clean,
        "setup_s": round(setup_s, 3),
        "render_s": round(wall, 3),
        "crops_per_s": round(rendered / wall, 1),
        "crops_per_cpu_s": round(rendered / max(cpu, 1e-9), 1),
        "write_s": round(write_s, 3),
        "out": str(args.out),
        "machine": machine_info(),
    }
    print_table(
        "synth plates",
        ["crops", "size", "render s", "crops/s (wall, 1 core)", "crops per CPU-s", "write s"],
        [[rendered, f"{size[0]}x{size[1]}", wall, result["crops_per_s"], result["crops_per_cpu_s"], write_s]],
    )
    if args.json:
        print_json_last(result)
    return 0


def _scene(args: argparse.Namespace) -> int:
    from edge.synth.scene import (
        ScenarioError,
        SceneInterrupted,
        check_video_size,
        load_scenario,
        parse_scenario,
        render_scene_to_dir,
    )

    try:
        scenario = load_scenario(args.scenario)
        if args.duration is not None:  # validated as if the file said it (model_copy would not check)
            scenario = parse_scenario({**scenario.model_dump(), "duration_s": float(args.duration)},
                                      source=f"--duration {args.duration}")
        check_video_size(scenario, source=str(args.scenario))
    except ScenarioError as err:
        raise SystemExit(f"synth scene: {err}") from None
    if args.frames_every < 0:
        raise SystemExit("synth scene: --frames-every must be >= 0")
    if not 0 <= args.min_plate_px < float("inf"):  # nan labelled no plate at all, without a word
        raise SystemExit(f"synth scene: --min-plate-px must be a width in pixels >= 0, got {args.min_plate_px}")
    if args.seed is not None and args.seed < 0:
        raise SystemExit("synth scene: --seed must be >= 0")
    try:
        summary = render_scene_to_dir(scenario, args.out, seed=args.seed, container=args.format,
                                      frames_every=args.frames_every, min_plate_px=args.min_plate_px)
    except SceneInterrupted as stop:
        import sys

        print(f"synth scene: interrupted after {stop.frames} of {stop.total} frames: {stop.video} and "
              "ground_truth.jsonl (and any frames/ and crops/ with their labels.csv) hold those frames",
              file=sys.stderr)
        raise

    from edge.bench.report import print_json_last, print_table

    print_table(
        f"synth scene {scenario.name}",
        ["frames", "resolution", "fps", "vehicles", "plate sightings", "render fps", "video"],
        [[summary["frames"], summary["resolution"], summary["fps"], summary["vehicles"], summary["plate_sightings"],
          summary["render_fps"], summary["video"]]],
    )
    if args.json:
        print_json_last(summary)
    return 0
