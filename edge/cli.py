"""`alpr-edge` entry point. Thin: each area registers its own subcommands.

Each module listed in COMMAND_MODULES defines `register(subparsers)`, which adds its parsers and
sets `func` to a callable taking the parsed args and returning an exit code. Modules import their
heavy dependencies inside those callables so `alpr-edge --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sqlite3
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
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Every command parser records its full name (`alpr-edge bench frames`): error lines name the
    command that was run, not only its group. A group run without its action (`alpr-edge audit`)
    shows the group's help, not the top-level one that does not list its actions."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(command_name=child.prog)  # the deepest command parsed wins
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    child.set_defaults(func=_group_help(child))  # an action's own func wins when one is given
                _name_commands(child)


def _group_help(group: argparse.ArgumentParser):
    def show(_args) -> int:
        group.print_help()
        return 2

    return show


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _user_error(err: BaseException) -> tuple[str, int] | None:
    """The message and exit status for an error caused by what the user gave (a file, a config,
    a model, a broker address), or None for a bug. A user error is reported in one line naming the
    problem, never as a traceback (`-vv` shows the traceback too). Exit 2: the input is wrong;
    exit 1: something it names could not be reached or opened (a broker, a database)."""
    from pydantic import ValidationError

    from edge.node.sink import ReadNotStored
    from edge.policy.audit import AuditStoreError
    from edge.sources.base import SourceError
    from edge.transport.mqtt import MQTTError
    from edge.transport.outbox import OutboxError

    if isinstance(err, ValidationError):  # a config model refused a value: name the fields
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or e.get('type', 'value')}: "
                           f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())
        return f"invalid {err.title}: {fields}", 2
    if isinstance(err, (MQTTError, OutboxError, SourceError, ReadNotStored, AuditStoreError,
                        sqlite3.Error, ConnectionError)):
        return str(err) or type(err).__name__, 1
    if isinstance(err, OSError):  # a missing, unreadable or unwritable path: name it
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}", 2
    if isinstance(err, ValueError):  # bad input everywhere in this package (registry, policy, config...)
        return str(err) or type(err).__name__, 2
    module = type(err).__module__ or ""
    if module.startswith("onnxruntime"):  # a model file onnxruntime cannot load or run
        return f"model: {str(err).strip()}", 2
    if module.startswith("psycopg"):  # the PostgreSQL audit store; libpq's text spans lines: one line
        return f"database: {' '.join(str(err).split())}", 1
    return None


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (timeout, systemd, docker stop) unwinds like Ctrl-C, so the `finally` blocks that stop
    # a command's brokers and child processes run; by default Python would die and leave them behind.
    # Long-running commands (run, gate, agency receive, soak) install their own graceful handlers.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose == 0:
        # FFmpeg (inside OpenCV) prints its own line for each damaged frame ("[mjpeg @ 0x...]
        # overread 3") that the sources already report once, naming the file and the frame. -v keeps
        # them: they also carry a stream's reason for not opening ("Connection refused", "401").
        # Set before OpenCV loads (commands import it lazily); inherited by `sim`'s edge processes.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = getattr(args, "command_name", None) or f"alpr-edge {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `alpr-edge audit show | head`: the reader left; not an error
        # Python would complain again when it flushes stdout at exit: point stdout at /dev/null
        # (the recipe in Python's signal module documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit as err:
        if not isinstance(err.code, str):
            raise
        # commands end on bad input with SystemExit("<command>: <what is wrong>"): exit 2, as the rest
        own = command.removeprefix("alpr-edge ") + ": "
        print(f"{command}: error: {err.code.removeprefix(own)}", file=sys.stderr)
        return 2
    except Exception as err:
        reported = _user_error(err)
        if reported is None:
            raise  # a bug: the traceback is what a report needs
        message, status = reported
        if args.verbose >= 2:
            logging.exception("traceback")
        print(f"{command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
