"""Shared output for every bench: a rich table for people, one JSON object last for machines."""

from __future__ import annotations

import json
import platform
import os
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: benches report ratios against engines run on this machine."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


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
