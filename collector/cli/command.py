"""The one calling convention of every ``certfleet`` command.

A command module exposes ``register(subparsers)``: it adds its parsers to the ``certfleet``
parser's subcommands and marks each runnable one with its handler (:func:`handles`). A handler
is a :data:`Handler`, ``(channel, ns) -> exit code``: it gets the open channel to the collector
(it makes the service stubs it calls) and the parsed arguments, prints its output and returns
0 on success. ``collector/cli/main.py`` builds the parser from the command modules, loads the
client config, opens the channel and calls the handler; errors it turns into exit codes there:
a :class:`~collector.errors.CollectorError` is 2, a failed call 1.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
from typing import Any, Callable

import grpc

Handler = Callable[[grpc.Channel, argparse.Namespace], int]

TIMEOUT = 60.0           # seconds for one admin call (commands that wait longer say so)


def handles(parser: argparse.ArgumentParser, handler: Handler) -> None:
    """Make ``handler`` what runs when ``parser``'s command is given (``ns.func``)."""
    parser.set_defaults(func=handler)


def add_group(subparsers: Any, name: str, help: str, dest: str = "action") -> Any:  # noqa: A002 - argparse's name
    """A command group (``certfleet NAME ACTION``): its own subcommands, one of them required.
    ``dest`` names the missing action in argparse's error ("the following arguments are required: ...")."""
    return subparsers.add_parser(name, help=help).add_subparsers(dest=dest, required=True)


def add_format(parser: argparse.ArgumentParser, *choices: str) -> None:
    """``--format`` with these choices; the first is the default."""
    parser.add_argument("--format", choices=list(choices), default=choices[0])


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def terminal_width(fallback: int = 120) -> int:
    """Columns of the terminal; ``fallback`` when standard output is not one."""
    return shutil.get_terminal_size((fallback, 24)).columns
