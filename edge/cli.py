"""`alpr-edge` entry point. Thin: each area registers its own subcommands.

Each module listed in COMMAND_MODULES defines `register(subparsers)`, which adds its parsers and
sets `func` to a callable taking the parsed args and returning an exit code. Modules import their
heavy dependencies inside those callables so `alpr-edge --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

COMMAND_MODULES = [
    "edge.policy.commands",  # broker-config, gate, audit, verify-acl
    "edge.policy.tls",  # tls-certs
    "edge.policy.retention",  # retention
    "edge.synth.commands",  # synth plates, synth scene
    "edge.node.commands",  # run, sim
    "edge.agency.commands",  # agency receive
    "edge.demo.commands",  # demo
    "edge.bench.commands",  # bench gate|ocr|detect|frames|video|soak
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpr-edge",
        description="ALPR edge processing with a policy gate (California SB 34 by default).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency inside the module: say so
                raise
            continue
        module.register(sub)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (timeout, systemd, docker stop) unwinds like Ctrl-C, so the `finally` blocks that stop
    # a command's brokers and child processes run; by default Python would die and leave them behind.
    # Long-running commands (run, gate, agency receive, soak) install their own graceful handlers.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
