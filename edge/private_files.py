"""Files that hold plate reads (audit log, outbox, agency inbox) are created readable by their
owner only.

ALPR reads are personal information: SB 34 (Civil Code 1798.90.51) asks operators to protect them
with reasonable security procedures. SQLite creates a database file with the process's umask
(usually 0644: readable by every local user), so these stores create the file first with mode 0600;
SQLite gives the -wal and -shm files it adds the database file's permissions. A file that already
exists keeps the mode its owner gave it.
"""

from __future__ import annotations

import os
from pathlib import Path


def create_private(path: str | os.PathLike) -> Path:
    """Create `path` as an empty file with mode 0600 unless it exists; return it as a Path. An empty
    file is an empty SQLite database."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return p
    os.close(fd)
    return p


def write_private(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` (replacing it), created with mode 0600: a plate crop is a picture of
    a vehicle at a place and time."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
