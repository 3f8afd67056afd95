"""`alpr-edge bench ...`: each benchmark lives in its own module here and defines
`register(bench_subparsers)`. Every bench prints a table and, with --json, one JSON object as
the last line of stdout. Figures are reported next to reference engines measured in the same run.
"""

from __future__ import annotations

import importlib

BENCH_MODULES = [
    "edge.bench.gate",
    "edge.bench.ocr",
    "edge.bench.detect",
    "edge.bench.frames",  # bench frames, bench video
    "edge.bench.placement",
    "edge.bench.soak",
]


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: print a table; --json adds one JSON object as the last line")
    bench_sub = p.add_subparsers(dest="bench", metavar="BENCH")
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(bench_sub)
