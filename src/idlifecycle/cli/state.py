"""Commands on the state database itself: `state rebuild`, when it was lost, emptied, replaced or rolled back."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from idlifecycle.cli import add_command
from idlifecycle.config import load_job_config
from idlifecycle.rebuild import preview, rebuild


def cmd_state_rebuild(args: argparse.Namespace) -> int:
    config = load_job_config(args.config)
    today = args.today or date.today()
    if not args.yes:
        for line in preview(config, today):
            print(line)
        print("Nothing was changed. Rerun with --yes to rebuild the state (it is audited).")
        return 1
    for line in rebuild(config, today):
        print(line)
    return 0


def register(subparsers: Any) -> None:
    state = add_command(subparsers, "state").add_subparsers(dest="state_command", required=True)
    p = state.add_parser("rebuild", help="rebuild the state database from the directories (after it was lost "
                                         "or restored from an old backup); shows what it will do without --yes")
    p.add_argument("--yes", action="store_true", help="do it (audited; the old database is kept beside it)")
    p.set_defaults(handler=cmd_state_rebuild)
