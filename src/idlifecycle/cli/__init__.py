"""The command line: parses arguments, prints, and turns errors into one line and an exit code.

Exit codes: 0 done or nothing to do, 1 error (bad input, a directory refused, some changes failed),
2 stopped by a guard (nothing applied), 3 done but some feed rows were refused (their people held).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from idlifecycle import __version__
from idlifecycle.errors import GuardTripped, UserError

EXIT_OK, EXIT_ERROR, EXIT_GUARD = 0, 1, 2



@dataclass(frozen=True)
class Command:
    """A top-level command as `idlifecycle --help` lists it, without importing the module that runs it."""

    area: str
    """The `idlifecycle.cli.<area>` module whose `register(subparsers)` adds the command's arguments (with
    `add_command`) and whose handler runs it; imported only when the command is run."""
    help: str


COMMANDS: dict[str, Command] = {
    "plan": Command("sync", "show what would change, and optionally save the plan"),
    "apply": Command("sync", "apply a saved plan (refused if the directories moved since)"),
    "sync": Command("sync", "the nightly job: plan, check the guards, apply"),
    "feed": Command("sync", "feed commands"),
    "audit": Command("sync", "audit log commands"),
    "passwords": Command("passwords", "password commands"),
    "access": Command("access", "restricted shares: requests, SIRO approvals, grants"),
    "serve": Command("access", "run the approval web app (behind a reverse proxy)"),
    "report": Command("report", "the SIRO's access review"),
    "state": Command("state", "the state database: rebuild it from the directories"),
    "people": Command("people", "people outside the MIS (supply, governors …): add, list, extend; keep-active"),
}
"""Every top-level command, in the order `--help` lists them. Building the parser from every area would
import every SDK (msgraph, googleapiclient, ldap3, openpyxl, starlette), a second of CPU that a cron line,
a shell completion or `--help` would pay each time; so only the area of the command being run is imported."""


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            payload = json.loads(message)
        except ValueError:
            payload = {"message": message}
        if not isinstance(payload, dict):
            payload = {"message": message}
        return json.dumps({"time": self.formatTime(record), "level": record.levelname, **payload})


def default_job() -> str:
    return os.environ.get("IDLIFECYCLE_JOB", "jobs/nightly.toml")


def today_arg(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2026-09-01") from None


def add_command(subparsers: Any, name: str) -> argparse.ArgumentParser:
    """The parser of top-level command `name` (listed in COMMANDS), for an area's `register`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=COMMANDS[name].help)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser for `command` (only its area's module is imported); without one, or for an
    unknown one, every command is listed by name and help alone (enough for `--help` and its errors)."""
    parser = argparse.ArgumentParser(prog="idlifecycle", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"idlifecycle {__version__}")
    parser.add_argument("--config", default=default_job(), metavar="JOB.toml",
                        help="the job file (default: $IDLIFECYCLE_JOB or jobs/nightly.toml)")
    parser.add_argument("--today", type=today_arg, default=None, metavar="YYYY-MM-DD",
                        help="run as if on this day (rehearsals and tests)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json gives one structured line per event, for cron and log shippers")
    parser.add_argument("-v", "--verbose", action="store_true")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command in COMMANDS:
        importlib.import_module(f"idlifecycle.cli.{COMMANDS[command].area}").register(subparsers)
    else:
        for name, listed in COMMANDS.items():
            subparsers.add_parser(name, help=listed.help, add_help=False)
    return parser


def command_in(argv: Sequence[str] | None) -> str:
    """The top-level command `argv` names; `--help`, `--version` and a missing command end here."""
    named: str = build_parser().parse_known_args(argv)[0].command
    return named


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now, so a handler outliving a redirected stderr still works."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(log_format: str, verbose: bool) -> None:
    handler = CurrentStderrHandler()
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else logging.Formatter("%(message)s"))
    root = logging.getLogger("idlifecycle")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    # In a terminal the progress bar and the printed plan say it; under cron each change is a log line.
    for name in ("idlifecycle.changes", "idlifecycle.feed"):
        logging.getLogger(name).setLevel(logging.INFO if verbose or not sys.stderr.isatty() else logging.WARNING)
    # Each directory's snapshot, apply and store times: only when asked (bench/night.py sets it), not
    # a line in every command's output.
    timings = logging.getLogger("idlifecycle.changes.timing")
    timings.setLevel(logging.DEBUG if os.environ.get("IDLIFECYCLE_TIMINGS") == "1" else logging.WARNING)


def cannot_write(error: OSError) -> str:
    """One line for a file that could not be written or read, naming it and what to do."""
    where = error.filename or "a file"
    if error.errno == errno.ENOSPC:
        return f"cannot write {where}: the disk is full; free some space on it, then rerun"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where}: {error.strerror}; make it (and its folder) writable by this user, then rerun"
    return f"{where}: {error.strerror or error}"


PRIVATE_UMASK = 0o077
"""Everything the tool writes (the state database with every pupil's details, plans, slips, reviews, caches)
is its user's alone, whatever umask cron or a shell hands it: files 0600, folders 0700."""


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)
    args = build_parser(command_in(argv)).parse_args(argv)
    setup_logging(args.log_format, args.verbose)
    try:
        code: int = args.handler(args)
    except GuardTripped as tripped:
        print(tripped.heading, file=sys.stderr)
        for reason in tripped.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return EXIT_GUARD
    except UserError as error:
        print(f"idlifecycle: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        # A file the tool writes beside its database (the lock, slips, plans) on a full or read-only disk.
        print(f"idlifecycle: {cannot_write(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("idlifecycle: interrupted; rerun to finish (the journal keeps what was done)", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
