"""The sponsor's extend page: the link from the end-date warning (`sponsors.warn_sponsors`).

As with the approval page, GET changes nothing (mail scanners open links) and the POST carries the
link's token and a CSRF token tied to the SameSite=Strict cookie. Refusals (forged, expired, reused,
stale links, a date past the kind's maximum) are one page each and change nothing.
"""

from __future__ import annotations

import logging
from datetime import date
from html import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from idlifecycle import sponsors
from idlifecycle.access._job import AccessJob
from idlifecycle.access.records import utcnow
from idlifecycle.access.service import Client
from idlifecycle.access.tokens import ExtendClaims, LinkRefused, Signer, new_cookie_value
from idlifecycle.errors import UserError
from idlifecycle.extra_people import ExtraPerson
from idlifecycle.web.pages import CSRF_COOKIE, Worker, client_of, form_of, guarded, page, table, with_cookie

log = logging.getLogger(__name__)


def _signer(job: AccessJob) -> Signer:
    return Signer(job.secrets["approval_signing_key"])


def _checked(job: AccessJob, token: str, client: Client) -> tuple[ExtendClaims, ExtraPerson]:
    try:
        return sponsors.check_link(job, _signer(job), token, utcnow())
    except LinkRefused as refused:
        _refused(job, refused, client)
        raise


def _refused(job: AccessJob, refused: LinkRefused, client: Client) -> None:
    """A link that is ours but may not be used is audited; a forged one only logged, since anyone can send
    those and one audit row each would let them flood the log."""
    if "forged" in refused.reason:
        log.warning("extend link refused (%s) from %s", refused.reason, client.address)
        return
    job.store.audit("extend-link-refused", {"reason": refused.reason, "client": client.address,
                                            "user_agent": client.user_agent[:200]}, actor="web")


def extend_body(job: AccessJob, token: str, client: Client, cookie: str) -> str:
    claims, person = _checked(job, token, client)
    latest = sponsors.latest_end(person, job.config.mapping)
    csrf = _signer(job).csrf_token(cookie, claims.nonce)
    rows = [("Person", f"{person.first} {person.last} ({person.person_id})"), ("Kind", person.kind),
            ("Sponsor", person.sponsor), ("Started", f"{person.start:%d %b %Y}"),
            ("Access ends", f"{person.end:%d %b %Y}")]
    if latest is not None:
        rows.append(("Latest end date allowed", f"{latest:%d %b %Y}"))
    limit = f' max="{latest.isoformat()}"' if latest is not None else ""
    return (
        "<p>Opening this page has changed nothing. Choose the new end date and press Extend.</p>"
        + table(rows)
        + '<form method="post" action="/extend">'
        f'<input type="hidden" name="t" value="{escape(token, quote=True)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">'
        f'<label>New end date<input name="end" type="date" required min="{person.end.isoformat()}"{limit}></label>'
        '<p><button class="approve" type="submit">Extend</button></p></form>'
    )


def extend_now(job: AccessJob, form: dict[str, str], cookie: str | None, client: Client) -> str:
    token = form.get("t", "")
    claims, _ = _checked(job, token, client)
    if not _signer(job).csrf_ok(cookie, claims.nonce, form.get("csrf")):
        refused = LinkRefused("extend-csrf", 403, "This form did not come from the extend page in this browser. "
                              "Open the link from the email again.")
        _refused(job, refused, client)
        raise refused
    try:
        new_end = date.fromisoformat(form.get("end", "").strip())
    except ValueError:
        raise UserError("Give the new end date as a date (YYYY-MM-DD).") from None
    before, after = sponsors.extend_by_link(job, _signer(job), token, new_end, utcnow(), client.address)
    return (f'<p class="notice">{escape(before.first)} {escape(before.last)}\'s access now ends on '
            f"{after:%d %b %Y} (it was {before.end:%d %b %Y}). The IT team's records show you extended it.</p>")


class ExtendRoutes:
    """The extend page's routes, on the app's worker thread and with its cookie setting."""

    def __init__(self, worker: Worker, secure_cookies: bool) -> None:
        self.worker = worker
        self.secure_cookies = secure_cookies

    async def extend_page(self, request: Request) -> Response:
        token = request.query_params.get("t", "")
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE) or new_cookie_value()
        body = await self.worker.run_job(lambda job: extend_body(job, token, client, cookie))
        return with_cookie(page("Extend access", body), cookie, self.secure_cookies)

    async def extend(self, request: Request) -> Response:
        form = await form_of(request)
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE)
        body = await self.worker.run_job(lambda job: extend_now(job, form, cookie, client))
        return page("Access extended", body)

    def route_table(self) -> list[Route]:
        return [Route("/extend", guarded(self.extend_page), methods=["GET"]),
                Route("/extend", guarded(self.extend), methods=["POST"])]
