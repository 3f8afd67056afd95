"""Small PNGs that show what the renderer makes, for `docs/` (judge realism at a glance).

    python -m edge.synth.gallery docs/

writes `synth_plates.png` (one clean plate per state and DC, then degraded OCR crops) and
`synth_scene_<name>.png` (one frame per example scenario, ground-truth 2:1 boxes in green).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edge.synth.plates import render_plate_images, render_plates
from edge.synth.scene import SceneRenderer, load_scenario
from edge.synth.states import ALL_STATES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def plate_grid(seed: int = 0, cols: int = 9, height: int = 48) -> np.ndarray:
    tiles = [render_plate_images(1, np.random.default_rng([seed, k]), height=height, states=[s])[0][0]
             for k, s in enumerate(ALL_STATES)]
    pad = np.full_like(tiles[0], 255)
    tiles += [pad] * (-len(tiles) % cols)
    rows = [np.hstack([np.pad(t, ((3, 3), (3, 3), (0, 0)), constant_values=255) for t in tiles[i : i + cols]])
            for i in range(0, len(tiles), cols)]
    clean = np.vstack(rows)
    crops = render_plates(3 * cols, np.random.default_rng(seed + 1), size=(height, 2 * height)).images
    crows = [np.hstack([np.pad(c, ((3, 3), (3, 3), (0, 0)), constant_values=255) for c in crops[i : i + cols]])
             for i in range(0, len(crops), cols)]
    return np.vstack([clean, np.full((10, clean.shape[1], 3), 255, np.uint8), *crows])


def scene_frame(path: Path, width: int = 640, step: int = 5) -> np.ndarray:
    """The frame with the most readable plates (>= 20 px wide), boxes drawn, scaled to `width`."""
    r = SceneRenderer(load_scenario(path))
    best = None
    for i in range(0, r.frames, step):
        frame, truths = r.render_frame(i)
        score = sum(t.width_px >= 20 for t in truths) + 0.01 * sum(t.width_px for t in truths) / 100
        if best is None or score > best[0]:
            best = (score, frame, truths)
    _, frame, truths = best
    frame = frame.copy()
    for t in truths:
        x0, y0, x1, y1 = (int(round(v)) for v in t.box)
        cv2.rectangle(frame, (x0, y0), (x1, y1), (0, 255, 0), max(1, frame.shape[1] // 640))
    h = int(round(frame.shape[0] * width / frame.shape[1]))
    return cv2.resize(frame, (width, h), interpolation=cv2.INTER_AREA)


def write_png(path: Path, img: np.ndarray) -> None:
    """256-colour palette PNG: a third of the bytes, still fine for judging the look."""
    from PIL import Image

    Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    # argparse: `--help` was taken for the folder (a folder named --help, filled with PNGs), and no
    # argument wrote over ./docs wherever the command ran
    p = argparse.ArgumentParser(prog="python -m edge.synth.gallery", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for the PNGs (the project's own: docs/)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        p.exit(2, f"{p.prog}: error: {out}: {err.strerror or err}\n")
    write_png(out / "synth_plates.png", plate_grid())
    for path in sorted(EXAMPLES.glob("*.yaml")):
        write_png(out / f"synth_scene_{path.stem}.png", scene_frame(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
