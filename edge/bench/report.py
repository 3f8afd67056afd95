"""Shared output for every bench: a rich table for people, one JSON object last for machines."""

from __future__ import annotations

import errno
import json
import math
import platform
import os
import re
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table


def cpu_int8_path() -> str:
    """Which int8 dot-product instructions this x86 CPU offers (what onnxruntime's kernels use)."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return "unknown"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    return "avx512" if "avx512bw" in flags else "avx2" if "avx2" in flags else "other"


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: benches report ratios against engines run on this machine.
    `int8_path` matters for int8 models: onnxruntime's kernels differ between VNNI, AVX-512 and
    AVX2-only CPUs (see edge/training/ocr_quant.py)."""
    model = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": model,
        "int8_path": cpu_int8_path(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def surroundings(image, box, context: float = 1.5):
    """A copy of the image around a box (x1, y1, x2, y2; `context` box widths each side, clipped to
    the image) and the copy's top-left corner in the image: a picture of a plate in context. Never
    empty: a box wholly outside the image gives the whole image."""
    x1, y1, x2, y2 = box
    w = max(8.0, x2 - x1)
    h_img, w_img = image.shape[:2]
    cx1, cy1 = int(max(0, x1 - context * w)), int(max(0, y1 - context * w))
    cx2, cy2 = int(min(w_img, x2 + context * w)), int(min(h_img, y2 + context * w))
    if cx2 <= cx1 or cy2 <= cy1:  # a box beyond the image (a label past its edge): the whole image
        return image.copy(), (0, 0)
    return image[cy1:cy2, cx1:cx2].copy(), (cx1, cy1)


def picture_name(used: set[str], *parts: str) -> str:
    """A PNG file name for a bench picture from its parts (the image's whole file name, extension
    included, then e.g. the plate), unique among the names in `used` (updated; compared without
    case, as some file systems do): `a.jpg` and `a.png`, or one plate labelled twice in a frame, get
    a picture each instead of the second overwriting the first. Characters a file name cannot hold
    everywhere (a path's `/`, spaces) become `-`."""
    stem = "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)).strip(".") or "-" for p in parts)
    name, k = f"{stem}.png", 1
    while name.lower() in used:
        k += 1
        name = f"{stem}~{k}.png"
    used.add(name.lower())
    return name


def write_picture(path: Path, image) -> None:
    """Write `image` as a PNG at `path`; an OSError naming the file when it cannot be written (a
    full disk, a folder that became unwritable, an empty image) instead of cv2.imwrite's silent False."""
    import cv2

    try:
        ok, buf = cv2.imencode(".png", image)
    except cv2.error as err:
        raise OSError(errno.EINVAL, f"could not encode the picture ({' '.join(str(err).split())[-120:]})",
                      str(path)) from None
    if not ok:
        raise OSError(errno.EINVAL, "could not encode the picture", str(path))
    Path(path).write_bytes(buf.tobytes())


def picture_error(flag: str, err: OSError, written: int) -> str:
    """The one line a bench ends with when a picture could not be written: which file, why, and how
    many were written before it (the figures above are complete: only the pictures stopped)."""
    return (f"{flag}: could not write {err.filename}: {err.strerror or err}; {written} picture(s) written "
            "before it, none after (the figures above are complete)")


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% at z=1.96) for a rate of `hits` in `n`: what a rate measured on
    a few dozen images can and cannot tell apart (17 frames read 15 of 17: 66-97%). Unlike the
    normal approximation it stays inside [0, 1] and is not empty at 0 or n hits. (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= hits <= n:
        raise ValueError(f"hits: {hits} is not between 0 and n = {n}")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(str(c))
    for r in rows:
        table.add_row(*[_fmt(v) for v in r])
    # stderr when --json is used would hide the table from people piping stdout; the JSON line is
    # always printed last on stdout, so the table can go to stdout too.
    Console(width=160).print(table)


def print_json_last(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, sort_keys=False, default=_default), flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
