"""`alpr-edge bench placement SCENARIO --vary FIELD=V1,V2 ...`: will this camera, at this angle and
distance, read plates?

Every combination of the varied scenario fields is rendered by the scene renderer with the same
seed (the same traffic: only the camera or the conditions change), written as an MP4 the way a
camera delivers it, and run through the edge node exactly as `bench video` runs a file (detector,
OCR, tracker, vote); its reads are scored per vehicle pass against the scene's ground truth. The
scenario as written is always measured too, as the baseline row, so each setting reads as a ratio
to it. All settings are validated before anything is rendered: a wrong field or value is named.

    alpr-edge bench placement examples/scenarios/city_intersection.yaml \\
        --vary camera.mount_height_m=3,6,9 --vary camera.hfov_deg=20,35 --duration 20
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# The most grid cells (combinations of --vary values) run without --max-cells: each one renders
# and reads the whole scenario (city_intersection, 1080p at 15 fps: 15 s for 10 s of video on a
# 2-core machine), so a typo in a value list (a range typed out, one value too many in each of three
# --vary) could mean hours before the first table.
DEFAULT_MAX_CELLS = 50

# Field pairs of which a scenario holds at most one: setting one clears the other.
_EXCLUSIVE = {("camera", "hfov_deg"): ("camera", "focal_length_mm"), ("camera", "focal_length_mm"): ("camera", "hfov_deg")}


class PlacementError(ValueError):
    """A --vary option or a setting that the scenario refuses; the message names the field."""


def register(sub) -> None:
    from edge.bench.frames import _common

    p = sub.add_parser("placement", help="read rate per camera setting on a synthetic scene: --vary FIELD=V1,V2 ...")
    p.add_argument("scenario", type=Path, help="scenario YAML (examples/scenarios/)")
    p.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a scenario field (dotted: camera.mount_height_m, camera.hfov_deg, traffic.speed_kmh, "
                   "lighting.mode, ...) and the values to try; repeat for a grid. List values: "
                   "traffic.speed_kmh=[[20,30],[60,80]]")
    p.add_argument("--duration", type=float, default=None, help="seconds rendered per setting (default: the scenario's)")
    p.add_argument("--seed", type=int, default=None, help="scene seed (default: the scenario's)")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep each setting's video and ground truth in DIR/<n>/ (default: temporary)")
    p.add_argument("--no-motion-gating", action="store_true", help="process every frame")
    p.add_argument("--vision", choices=["onnx", "labels", "label-boxes"], default="onnx",
                   help="labels: ground truth instead of the models (the geometry alone); "
                   "label-boxes: ground-truth boxes, real OCR")
    p.add_argument("--max-cells", type=int, default=DEFAULT_MAX_CELLS, metavar="N",
                   help=f"refuse a --vary grid of more than N combinations, each a whole scenario rendered and "
                        f"read (default {DEFAULT_MAX_CELLS})")
    _common(p)
    p.set_defaults(func=_placement)


def parse_vary(text: str) -> tuple[tuple[str, ...], list[Any]]:
    """'camera.mount_height_m=3,6,9' -> (('camera', 'mount_height_m'), [3, 6, 9]). Each value is
    read as YAML (numbers, true/false, words); a value list in brackets is one YAML list."""
    field, sep, raw = text.partition("=")
    field, raw = field.strip(), raw.strip()
    if not sep or not field or not raw:
        raise PlacementError(f"--vary {text!r}: expected FIELD=V1,V2,... (e.g. camera.mount_height_m=3,6,9)")
    try:
        values = yaml.safe_load(raw) if raw.startswith("[") else [yaml.safe_load(v) for v in raw.split(",")]
    except yaml.YAMLError as err:
        raise PlacementError(f"--vary {field}: values {raw!r} are not readable ({err})") from None
    if not isinstance(values, list) or not values or any(v is None for v in values):
        raise PlacementError(f"--vary {field}: give at least one value, none empty (got {raw!r})")
    return tuple(field.split(".")), values


def apply_setting(data: dict, path: tuple[str, ...], value: Any) -> None:
    """Set a dotted field of a scenario's dict, naming what is there when the field is not."""
    node = data
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(path[:depth]) or "the scenario"
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a section)"
            raise PlacementError(f"--vary {'.'.join(path)}: {where} has no field {key!r}; known: {known}")
        if depth == len(path) - 1:
            node[key] = value
        else:
            node = node[key]
    other = _EXCLUSIVE.get(path)
    if other is not None:
        data[other[0]][other[1]] = None


def _get(data: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def check_varies(varies: list[tuple[tuple[str, ...], list[Any]]]) -> None:
    """A field varied twice (`--vary camera.hfov_deg=20 --vary camera.hfov_deg=30`: the grid set it
    twice, the later value winning in every row, the rows labelled with both) or both fields of a pair
    a scenario holds one of (hfov_deg and focal_length_mm: each setting of one cleared the other) is
    refused, naming the fields."""
    seen: set[tuple[str, ...]] = set()
    for path, _ in varies:
        if path in seen:
            raise PlacementError(f"--vary {'.'.join(path)} is given twice; give its values once: "
                                 f"--vary {'.'.join(path)}=V1,V2,...")
        seen.add(path)
    for path, _ in varies:
        other = _EXCLUSIVE.get(path)
        if other in seen:
            raise PlacementError(f"--vary {'.'.join(path)} and --vary {'.'.join(other)}: a scenario holds one of the two "
                                 "(both set the field of view; setting one clears the other): vary one")


def check_grid_size(varies: list[tuple[tuple[str, ...], list[Any]]], max_cells: int, seconds_each: float) -> None:
    """Refuse a grid of more than `max_cells` combinations, naming the options and the count, before
    any is built (the grid is listed and each setting validated up front: a huge one took that long
    or all the memory before a word)."""
    cells = math.prod(len(values) for _, values in varies)
    if cells > max_cells:
        sizes = " x ".join(f"{len(values)} ({'.'.join(path)})" for path, values in varies)
        each = ("its duration_s" if ("duration_s",) in {path for path, _ in varies}  # varied too
                else f"{seconds_each:g} s")
        raise PlacementError(
            f"--vary gives {cells:,} settings ({sizes}), each {each} of video rendered and read, "
            f"plus the baseline: more than --max-cells {max_cells}; vary fewer values, or give --max-cells {cells} "
            "to run them all")


def settings(scenario, varies: list[tuple[tuple[str, ...], list[Any]]], duration: float | None,
             seed: int | None = None):
    """[(label dict, Scenario)]: the baseline (the scenario as written) first, then every
    combination of the varied values, each validated (a refused one is a PlacementError); a
    combination that gives a scenario already listed (the baseline's own value, a value given
    twice) is measured once. `duration` and `seed` replace the scenario's own (a varied seed still
    varies: the traffic then differs from row to row)."""
    from edge.synth.scene import ScenarioError, check_video_size, parse_scenario

    check_varies(varies)
    base = scenario.model_dump()
    if duration is not None:
        base["duration_s"] = duration
    if seed is not None:
        base["seed"] = seed
    out = []
    grid = list(itertools.product(*[[(path, v) for v in values] for path, values in varies])) if varies else []
    combos = [()] + grid
    for combo in combos:
        data = copy.deepcopy(base)
        for path, value in combo:
            apply_setting(data, path, value)
        label = {".".join(path): value for path, value in combo}
        desc = ", ".join(f"{k}={v}" for k, v in label.items()) if combo else "baseline"
        try:
            s = parse_scenario(data, source=f"setting {desc}")
            check_video_size(s, source=f"setting {desc}")  # each setting is rendered to a video
        except ScenarioError as err:
            raise PlacementError(str(err)) from None
        if combo and any(s == o[1] for o in out):
            continue  # the baseline's own values, or a value given twice: measured once
        out.append((label, s))
    # the baseline row shows the scenario's own values of the varied fields (all known by now)
    out[0][0].update({".".join(path): _get(base, path) for path, _ in varies})
    return out


def _placement(args: argparse.Namespace) -> int:
    from edge.bench.frames import _config, _stages, run_on_source, score_passes, video_confidence_sweep
    from edge.bench.report import machine_info, print_json_last, print_table
    from edge.sources.video import VideoFileSource
    from edge.synth.scene import ScenarioError, load_scenario, render_scene_to_dir

    logging.getLogger("edge").setLevel(logging.WARNING)
    if args.seed is not None and args.seed < 0:  # said before anything loads, naming the option
        raise SystemExit(f"bench placement: --seed must be 0 or more, got {args.seed}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise SystemExit(f"bench placement: --duration must be a positive number of seconds, got {args.duration}")
    if args.max_cells < 1:
        raise SystemExit(f"bench placement: --max-cells must be 1 or more, got {args.max_cells}")
    try:
        scenario = load_scenario(args.scenario)
        varies = [parse_vary(v) for v in args.vary]
        check_grid_size(varies, args.max_cells, args.duration if args.duration is not None else scenario.duration_s)
        runs = settings(scenario, varies, args.duration, args.seed)
    except (ScenarioError, PlacementError) as err:
        raise SystemExit(f"bench placement: {err}") from None
    if args.keep:  # before the models load and the first setting renders, naming the option
        try:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SystemExit(f"bench placement: --keep {args.keep}: {err.strerror or err}") from None
    cfg = _config(args, str(args.scenario), motion_gating=not args.no_motion_gating, vision=args.vision)
    detector, ocr = _stages(cfg)
    fields = [".".join(path) for path, _ in varies]
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="alpr-placement-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for n, (label, s) in enumerate(runs):
            folder = root / f"{n:02d}"
            t0 = time.perf_counter()
            rendered = render_scene_to_dir(s, folder)  # the setting's own seed (--seed is in it)
            render_s = time.perf_counter() - t0
            source = VideoFileSource(rendered["video"])
            run = run_on_source(cfg, source, detector, ocr)
            score = score_passes(source.ground_truth or {}, [e.plate for e in run.events])
            score["by_min_confidence"] = video_confidence_sweep(source.ground_truth or {}, run.events, cfg.min_confidence)
            result = {"setting": label, "baseline": n == 0, **score, "fps": round(run.fps, 2),
                      "frames": run.metrics.frames, "render_s": round(render_s, 2)}
            if args.keep:
                result["video"] = str(rendered["video"])
            results.append(result)
    base_rate = results[0]["pass_read_rate"]
    for r in results:
        r["read_rate_vs_baseline"] = round(r["pass_read_rate"] / base_rate, 3) if base_rate else None
        px = r["plate_px_at_closest"]
        rows.append(
            [("baseline" if r["baseline"] else "")]
            + [r["setting"].get(f, "") for f in fields]
            + [f"{px['min']}-{px['median']}-{px['max']}" if px["median"] is not None else "-",
               r["vehicle_passes"], r["passes_read"], r["pass_read_rate"], r["read_rate_vs_baseline"],
               _wrong_cell(r), r["fps"]]
        )
    print_table(
        f"bench placement: {args.scenario} ({runs[0][1].camera.width}x{runs[0][1].camera.height}, "
        f"{runs[0][1].duration_s:g} s per setting, vision {args.vision})",
        [""] + fields + ["plate px at closest (min-median-max)", "passes", "read", "read rate", "vs baseline",
                         "wrong", "fps"],
        rows,
    )
    sweep_rows = [[("baseline" if r["baseline"] else "") or ", ".join(f"{f}={r['setting'].get(f, '')}" for f in fields)]
                  + [f"{t['passes_read']}/{t['wrong_reads']}" for t in r["by_min_confidence"]] for r in results]
    print_table("publishing only reads at least this confident: passes read / wrong reads",
                ["setting"] + [str(t["min_confidence"]) for t in results[0]["by_min_confidence"]], sweep_rows)
    if args.json:
        print_json_last({
            "bench": "placement",
            "scenario": str(args.scenario),
            "varied": fields,
            "duration_s": runs[0][1].duration_s,
            "seed": runs[0][1].seed,
            "vision": args.vision,
            "settings": results,
            "machine": machine_info(),
        })
    return 0


def _wrong_cell(result: dict) -> str:
    """'2: SUNMS, HM42' (the count and the wrong plates by name), or '0'."""
    names = result.get("wrong") or []
    return f"{result['wrong_reads']}: {', '.join(names)}" if names else str(result["wrong_reads"])
