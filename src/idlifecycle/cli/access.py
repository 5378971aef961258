"""Commands for restricted shares: `access request|approve-link|revoke|list` and `serve` (the approval web app)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from idlifecycle.access.service import Access
from idlifecycle.access.shares import web_settings
from idlifecycle.cli import add_command
from idlifecycle.errors import UserError
from idlifecycle.job import load_job, open_job


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def request(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        access = Access(job)
        made = access.request(args.share, args.person, args.reason, args.days, args.requester or _actor())
        print(f"Request #{made.request_id} for {made.person_name} to {made.share} ({made.days} days) "
              f"sent to {access.settings.siro_name} <{access.settings.siro_email}> for approval.")
    return 0


def approve_link(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        access = Access(job)
        pending = access.records.request(args.request_id)
        if pending is None:
            raise UserError(f"there is no request #{args.request_id}")
        access.send_link(pending)
        print(f"A new approval link for request #{pending.request_id} was emailed to {access.settings.siro_email}.")
    return 0


def revoke(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        grant, notes = Access(job).revoke(args.grant_id, args.by or _actor())
        print(f"Grant #{grant.grant_id} ({grant.person_name} to {grant.share}) ended.")
        for note in notes:
            print(f"  {note}")
    return 0


def list_access(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        access = Access(job)
        rows = access.holdings(job.read_people().people)
        if args.share:
            access.share(args.share)
            rows = [r for r in rows if r.share == args.share]
        header = ("share", "person", "name", "basis", "approved by", "until", "reason")
        table: list[tuple[str, ...]] = [header, *[
            (r.share, r.person_id, r.person_name, r.basis, r.approver,
             f"{r.expires:%Y-%m-%d %H:%M}" if r.expires else "", r.reason.replace("\n", " ")[:60])
            for r in rows
        ]]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if not rows:
            print("(nobody holds any share's group)")
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from idlifecycle.web.app import FormLimits, create_app

    with open_job(args.config, today=args.today) as job:
        access = Access(job)
        settings = web_settings(job)
        access.signer  # noqa: B018 - fail now, not on the SIRO's first click, when the signing key is missing
        access.mailer  # noqa: B018 - likewise for a bad [mail] table
    config_path, today = args.config, args.today
    app = create_app(lambda: load_job(config_path, today=today), secure_cookies=settings.secure,
                     form_limits=FormLimits.of(settings.limits))
    print(f"Serving {settings.public_base_url} on {args.host or settings.host}:{args.port or settings.port}")
    # No access log: approval links carry their token in the query string, and a token is a credential.
    # Decisions and refused links go to the audit log instead.
    uvicorn.run(app, host=args.host or settings.host, port=args.port or settings.port, proxy_headers=True,
                forwarded_allow_ips=settings.forwarded_allow_ips, server_header=False, access_log=False,
                log_level="info")
    return 0


def register(subparsers: Any) -> None:
    access = add_command(subparsers, "access")
    commands = access.add_subparsers(dest="access_command", metavar="ACCESS_COMMAND", required=True)

    p = commands.add_parser("request", help="ask the SIRO to grant someone a share for a number of days")
    p.add_argument("--share", required=True, help="the share's name in the shares registry")
    p.add_argument("--person", required=True, help="the person's MIS id")
    p.add_argument("--reason", required=True, help="why the access is needed (shown to the SIRO)")
    p.add_argument("--days", required=True, type=int, help="how long, up to the share's maximum")
    p.add_argument("--requester", help="your email address, to be told the decision")
    p.set_defaults(handler=request)

    p = commands.add_parser("approve-link", help="email the SIRO a fresh approval link for a pending request")
    p.add_argument("request_id", type=int, metavar="REQUEST_ID")
    p.set_defaults(handler=approve_link)

    p = commands.add_parser("revoke", help="end a grant now and remove the membership")
    p.add_argument("grant_id", type=int, metavar="GRANT_ID")
    p.add_argument("--by", help="who is revoking (recorded in the audit log)")
    p.set_defaults(handler=revoke)

    p = commands.add_parser("list", help="who is in each share's group, and why")
    p.add_argument("--share", help="only this share")
    p.set_defaults(handler=list_access)

    p = add_command(subparsers, "serve")
    p.add_argument("--host", help="listen address (default: web.host)")
    p.add_argument("--port", type=int, help="listen port (default: web.port)")
    p.set_defaults(handler=serve)
