"""Reading a labelled folder's images for training (torch-free): one file that does not decode is
skipped with a warning naming it, not a reason to refuse the whole folder, as `bench ocr` skips a
bad crop; only a folder where nothing decodes is refused."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("edge.training")

NAMES_SHOWN = 10  # of the files skipped, named in the warning or the error
# Warnings already given in this process: training loads a folder more than once (the main process
# to evaluate, again in each data loader worker, forked with this set), and says it once.
_warned: set[tuple] = set()


class ImageReader:
    """cv2.imread over one folder's labelled images, keeping the names of those it could not read
    (missing, truncated, not an image). `check()` when done: warns of the skipped ones, or raises a
    ValueError if none of the images tried could be read."""

    def __init__(self, folder: Path, what: str):
        self.folder, self.what = Path(folder), what
        self.tried: set[str] = set()
        self.skipped: dict[str, None] = {}  # in the order met (a set would not keep it)

    def read(self, name: str) -> np.ndarray | None:
        image = cv2.imread(str(self.folder / name), cv2.IMREAD_COLOR)
        if image is None:
            self.skipped[name] = None
        self.tried.add(name)
        return image

    def check(self) -> None:
        if not self.skipped:
            return
        shown = ", ".join(list(self.skipped)[:NAMES_SHOWN])
        if len(self.skipped) > NAMES_SHOWN:
            shown += f" and {len(self.skipped) - NAMES_SHOWN} more"
        if len(self.skipped) == len(self.tried):
            raise ValueError(f"{self.folder}: none of the {len(self.tried)} labelled {self.what} is a readable image "
                             f"(missing or not an image: {shown})")
        key = (str(self.folder), self.what, tuple(self.skipped), len(self.tried))
        if key not in _warned:
            _warned.add(key)
            log.warning("%s: skipped %d of %d labelled %s, missing or not a readable image: %s",
                        self.folder, len(self.skipped), len(self.tried), self.what, shown)


def read_label_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) of a labels.csv as the benches read it: UTF-8 with or without the
    byte-order mark a spreadsheet writes (it stuck to the first column's name: "row 2 has no
    'file'"), column names and values without the spaces after the commas ("file, state, plate":
    no 'plate' column), so a folder `bench ocr` or `bench detect` reads trains the same."""
    from edge.sources.folder import open_csv

    try:
        with open_csv(path) as f:
            reader = csv.DictReader(f)
            if reader.fieldnames:
                reader.fieldnames = [(name or "").strip() for name in reader.fieldnames]
            return [(reader.line_num, {k: v.strip() if isinstance(v, str) else v for k, v in row.items()})
                    for row in reader]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                         "save it as UTF-8 CSV") from None
