"""Image folders: every image file in name order, with ground truth when labels are present.

Labels, when present, come from either
- `labels.csv` with columns `file,x,y,w,h,plate` (this project's dataset format), one row per plate;
  a row with the file name and the other fields empty (`name.jpg,,,,,`) labels a frame that shows
  no plate, so what is read or detected there counts as a false alarm (an image with no row at all
  is simply unlabelled), or
- openalpr benchmark style: one `<image stem>.txt` per image, `file x y w h PLATE` per line.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge.sources.base import Frame, FrameSource, PlateLabel, SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_labels(folder: Path, labels_file: str | os.PathLike | None = None) -> dict[str, list[PlateLabel]]:
    """The folder's labels; with labels_file, that CSV (`file,x,y,w,h,plate`) instead, so labels
    can live apart from the images (a read-only archive, someone else's footage). A labels file
    that is missing, lacks a column or has a bad row is a ValueError naming the file and line
    (the folder's own labels.csv too, unless it has no box columns at all: then it is another
    kind of labels and is ignored)."""
    if labels_file is not None:
        return _read_labels_file(Path(labels_file))
    labels: dict[str, list[PlateLabel]] = {}
    csv_path = folder / "labels.csv"
    if csv_path.is_file():
        with open_csv(csv_path) as fh:
            try:
                header = [h.strip() for h in next(csv.reader(fh), [])]
            except UnicodeDecodeError as err:
                raise _not_utf8(csv_path, err) from None
        if not {"x", "y", "w", "h"} & set(header):
            # another kind of labels (a crops folder's file,state,plate): no plate boxes to use
            log.warning("%s has no x,y,w,h columns: not plate boxes in frames, ignored", csv_path)
            return labels
        return _read_labels_file(csv_path)  # plate boxes: a bad row is an error naming its line
    for txt in folder.glob("*.txt"):
        for line in txt.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 6:
                continue
            try:
                x, y, w, h = (float(v) for v in parts[1:5])
            except ValueError:
                continue
            labels.setdefault(parts[0], []).append(PlateLabel(parts[5].upper(), (x, y, x + w, y + h)))
    return labels


LABEL_COLUMNS = ("file", "x", "y", "w", "h", "plate")


def is_plate_less_row(row: dict) -> bool:
    """`name.jpg,,,,,`: every field but the file present and empty. A short row (fields missing,
    None here) stays an error: a cut-off line must not pass for a frame without plates."""
    return all(row.get(k) is not None and not row[k].strip() for k in LABEL_COLUMNS[1:])


def open_csv(path: Path):
    """A labels CSV for csv.reader: UTF-8, with or without the byte-order mark spreadsheets
    write first (Excel's "CSV UTF-8"), which would otherwise stick to the first column's name."""
    return open(path, newline="", encoding="utf-8-sig")


def _not_utf8(path: Path, err: UnicodeDecodeError) -> ValueError:
    return ValueError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                      "save it as UTF-8 CSV")


def _read_labels_file(path: Path) -> dict[str, list[PlateLabel]]:
    if not path.is_file():
        raise ValueError(f"labels file not found: {path}")
    try:
        return _parse_labels_file(path)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None


def _parse_labels_file(path: Path) -> dict[str, list[PlateLabel]]:
    labels: dict[str, list[PlateLabel]] = {}
    with open_csv(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames:  # "file, x, y, w, h, plate": the names without their spaces
            reader.fieldnames = [(f or "").strip() for f in reader.fieldnames]
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(LABEL_COLUMNS)})")
        for row in reader:
            if not (row["file"] or "").strip():
                raise ValueError(f"{path} line {reader.line_num}: no file name in {row}")
            row["file"] = row["file"].strip()
            if is_plate_less_row(row):
                labels.setdefault(row["file"], [])  # labelled, and no plate in it
                continue
            try:
                x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
                plate = row["plate"].strip().upper()
            except (ValueError, AttributeError, TypeError):
                raise ValueError(f"{path} line {reader.line_num}: bad row {row} "
                                 f"(a frame with no plate: its file name and empty fields, name.jpg,,,,,)") from None
            if not plate or not plate.isalnum() or w <= 0 or h <= 0:
                raise ValueError(f"{path} line {reader.line_num}: plate must be A-Z0-9 and w, h > 0, got {row}")
            labels.setdefault(row["file"], []).append(PlateLabel(plate, (x, y, x + w, y + h)))
    return labels


class FolderSource(FrameSource):
    independent = True

    def __init__(self, folder: str | os.PathLike, fps: float = 1.0, names: list[str] | None = None,
                 labels_file: str | os.PathLike | None = None):
        super().__init__()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        files = sorted(p.name for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if names is not None:
            wanted = set(names)
            files = [f for f in files if f in wanted]
        if not files:
            raise SourceError(f"no images in {self.folder}")
        self.files = files
        self.length = len(files)
        self.fps = float(fps)
        self.labels = read_labels(self.folder, labels_file)

    def describe(self) -> str:
        return f"folder {self.folder} ({self.length} images, {len(self.labels)} labelled)"

    def __iter__(self) -> Iterator[Frame]:
        clock = self.capture_clock()

        for i, name in enumerate(self.files):
            t0 = time.perf_counter()
            data = np.fromfile(self.folder / name, np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            decode_ms = (time.perf_counter() - t0) * 1000
            if image is None:
                # the first logged at once, the others counted and summed up at the end (a folder
                # copied from a Mac holds a '._name.jpg' for every image: one line each buried the log)
                self.report(f"{self.folder / name}: not a readable image; skipped",
                            kind=f"{self.folder}: files that are not readable images")
                continue
            ts = i / self.fps
            # an image with no row is unlabelled (None), not labelled as showing no plate ([]: `name,,,,,`)
            labels = self.labels.get(name)
            yield Frame(i, image, ts, clock.at(ts), name=name, labels=labels, decode_ms=decode_ms)
        self.summarise()

    def close(self) -> None:
        self.summarise()  # a run stopped early still says what it skipped
