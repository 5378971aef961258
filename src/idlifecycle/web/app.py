"""The approval web app (ASGI): the SIRO's decision page, the staff request form, the sponsor's extend page,
the teacher's class reset page (`class_reset.py`) and a health check.

GET never changes a request or a grant (mail scanners open links); decisions are POSTs carrying
the link's token and a CSRF token tied to a SameSite=Strict cookie. Every page is built here with
every value escaped, and sent with a strict Content-Security-Policy and no third-party assets;
error pages (400, 404, 429, 500) carry the same headers. All work on the job (its SQLite store,
connectors) runs on one worker thread, as the store requires.

The request form is open to anyone who can reach it, so it is throttled (token buckets per
address and for the whole form, `FormLimits`, set by `[web.limits]`), answers the same for a person
the MIS knows and one it does not, and sends mail only for known ones, after the answer has gone.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from html import escape
from importlib.resources import files
from typing import TypeVar
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idlifecycle.access._job import AccessJob
from idlifecycle.access.messages import request_rows, when
from idlifecycle.access.service import Access, Client, Decision
from idlifecycle.access.shares import WebLimits, web_settings
from idlifecycle.access.tokens import LinkRefused, new_cookie_value
from idlifecycle.errors import UserError
from idlifecycle.notify import valid_email
from idlifecycle.web.class_reset import ClassResetRoutes
from idlifecycle.web.extend import ExtendRoutes
from idlifecycle.web.pages import (
    CSRF_COOKIE,
    SECURITY_HEADERS,
    Worker,
    client_of,
    failed_page,
    form_of,
    guarded,
    page,
    table,
    with_cookie,
)
from idlifecycle.web.request_form import chosen, request_form_body
from idlifecycle.web.signin import SignedIn, SignIn, session_of, signed_in

T = TypeVar("T")
log = logging.getLogger(__name__)
FORM_ANSWER = ("If this person is known to the school's records, {siro} (SIRO) will be asked to decide, and "
               "you will get an email when it is decided. If you get no email within a day, ask the IT team.")
REQUEST_FORM = "request-form"
STYLE = files("idlifecycle.web").joinpath("static/style.css").read_bytes()


class SecurityHeaders:
    """Adds the security headers to every response, error pages included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class FormLimits:
    """How often the anonymous request form may be sent: a token bucket per client address and one for
    the whole form. A bucket holds `burst` sends and refills at `per_hour`; an empty one answers 429
    with Retry-After. The defaults allow a member of staff a few requests in a row and the school a
    busy morning, but not a script (issue 14: 648 emails in 10 s)."""

    burst_per_address: int = 5
    per_address_per_hour: int = 20
    burst_total: int = 30
    total_per_hour: int = 120
    search_burst_per_account: int = 30
    search_per_account_per_hour: int = 300
    max_addresses: int = 10_000
    """Addresses remembered at once; the fullest (idlest) are forgotten first, so spoofed addresses
    cannot grow memory without bound."""

    @classmethod
    def of(cls, limits: WebLimits) -> FormLimits:
        """The job's `[web.limits]` (defaults as here)."""
        return cls(burst_per_address=limits.form_burst_per_address,
                   per_address_per_hour=limits.form_per_address_per_hour,
                   burst_total=limits.form_burst_total, total_per_hour=limits.form_total_per_hour,
                   search_burst_per_account=limits.search_burst_per_account,
                   search_per_account_per_hour=limits.search_per_account_per_hour)


class TokenBucket:
    def __init__(self, burst: int, per_hour: int, now: float) -> None:
        self.burst = burst
        self.rate = per_hour / 3600
        self.tokens = float(burst)
        self.at = now

    def level(self, now: float) -> float:
        return min(self.burst, self.tokens + (now - self.at) * self.rate)

    def take(self, now: float) -> float:
        """0 when a send is allowed (and counted), else the seconds until one will be."""
        self.tokens = self.level(now)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate else 3600.0


class SearchThrottle:
    """The request form's person search: a token bucket per signed-in account. Used from the event loop only."""

    def __init__(self, burst: int, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.per_hour, self.clock = burst, per_hour, clock
        self._accounts: dict[str, TokenBucket] = {}

    def wait(self, account: str) -> float:
        """0 when `account` may search now (counted), else the seconds until it may."""
        now = self.clock()
        bucket = self._accounts.setdefault(account, TokenBucket(self.burst, self.per_hour, now))
        return bucket.take(now)


def _client_key(address: str) -> str:
    """The bucket of an address: an IPv6 client is its /64, which one home or one attacker holds whole."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class FormThrottle:
    """The form's buckets. Used from the event loop only, so no lock."""

    def __init__(self, limits: FormLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.total = TokenBucket(limits.burst_total, limits.total_per_hour, clock())
        self.addresses: dict[str, TokenBucket] = {}

    def wait(self, address: str) -> float:
        """0 when `address` may send the form now, else the seconds to wait (Retry-After)."""
        now = self.clock()
        address = _client_key(address)
        bucket = self.addresses.get(address)
        if bucket is None:
            if len(self.addresses) >= self.limits.max_addresses:
                self._forget(now)
            bucket = self.addresses[address] = TokenBucket(self.limits.burst_per_address,
                                                           self.limits.per_address_per_hour, now)
        wait = bucket.take(now)
        if wait:
            return wait
        wait = self.total.take(now)
        if wait:
            bucket.tokens += 1  # this address did not get to send: give its token back
        return wait

    def _forget(self, now: float) -> None:
        fullest = sorted(self.addresses, key=lambda a: -self.addresses[a].level(now))
        for address in fullest[: max(1, len(fullest) // 10)]:
            del self.addresses[address]


def error_page(request: Request, error: Exception) -> Response:
    """Starlette's 404, 405 and the like as our page, so they look like the service and not a framework."""
    status = int(getattr(error, "status_code", 500))
    if status >= 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return failed_page()
    return page("That did not work", f'<p class="notice refused">{escape(str(getattr(error, "detail", "")))}'
                "</p>", status)


def approval_body(access: Access, token: str, client: Client, cookie: str, who: SignedIn | None = None) -> str:
    """The SIRO's page for the request behind `token`: its details and the approve/deny form. With staff
    sign-in, `who` is the signed-in person, refused (and audited) unless the SIRO or a deputy."""
    claims, access_request = access.check_link(token, client)
    deputy = who is not None and access.may_decide(who.username, claims.request_id, client)
    share = access.share(access_request.share)
    csrf = access.signer.csrf_token(cookie, claims.nonce)
    greeting = (f"{escape(who.name)}, please decide this request as deputy for {escape(access.settings.siro_name)}"
                " (SIRO)" if who is not None and deputy
                else f"Dear {escape(access.settings.siro_name)}, please decide this request")
    return (
        f"<p>{greeting}. Opening this page has changed nothing.</p>"
        + table(request_rows(access_request, share, access.person_kind(access_request.person_id)))
        + f"<p>This link works once, until {escape(when(claims.expires))}.</p>"
        '<form method="post" action="/approve">'
        f'<input type="hidden" name="t" value="{escape(token, quote=True)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">'
        '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
        '<button class="deny" type="submit" name="decision" value="deny">Deny</button>'
        "</form>"
    )


def decision_body(result: Decision) -> str:
    who = escape(result.request.person_name)
    lines = "".join(f"<li>{escape(n)}</li>" for n in result.notes)
    if result.grant is not None:
        summary = (f"<p class=\"notice\">Approved: {who} has access to {escape(result.share.title)} until "
                   f"{escape(when(result.grant.expires_at))} (grant #{result.grant.grant_id}).</p>")
    else:
        summary = (f"<p class=\"notice\">Denied: {who} has not been given access to "
                   f"{escape(result.share.title)}.</p>")
    return summary + (f"<ul>{lines}</ul>" if lines else "") + "<p>The requester has been told by email.</p>"


def form_open(access: Access) -> None:
    if not access.settings.requester_domains:
        raise UserError("The request form is turned off: ask the IT team to make the request.")


def too_many_requests(wait: float, title: str = "Too many requests",
                      what: str = "The request form has been sent too often.") -> HTMLResponse:
    minutes = math.ceil(wait / 60)
    return page(title, f'<p class="notice refused">{escape(what)} '
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.</p>", 429,
                headers={"retry-after": str(math.ceil(wait))})


@dataclass(frozen=True)
class FormRequest:
    """A request form that passed its checks: what is asked, by whom, and the SIRO who will decide."""

    siro: str
    share: str
    person: str
    reason: str
    days: int
    requester: str


def checked_form(access: Access, form: dict[str, str], cookie: str | None, client: Client,
                 who: SignedIn | None = None) -> FormRequest:
    """The sent request form, refused (and the refusal recorded) unless it came from our page in this
    browser, from a school address, for a share and length the registry allows. With staff sign-in the
    requester is the signed-in member of staff, whatever the form says."""
    form_open(access)
    if not access.signer.csrf_ok(cookie, REQUEST_FORM, form.get("csrf")):
        refused = LinkRefused("csrf", 403, "This form did not come from the request page in this browser.")
        access.refused(refused, client)
        raise refused
    requester = who.username if who is not None else form.get("requester", "").strip().lower()
    domain = requester.rpartition("@")[2]
    if who is None and (not valid_email(requester)
                        or domain not in {d.lower() for d in access.settings.requester_domains}):
        raise UserError("Use your school email address.")
    try:
        days = int(form.get("days", ""))
    except ValueError:
        raise UserError("Give the number of days as a whole number.") from None
    share, reason = access.check_request(form.get("share", ""), form.get("reason", ""), days)
    return FormRequest(access.settings.siro_name, share.name, form.get("person", "").strip(), reason, days,
                       requester)


class Routes:
    """The app's routes, sharing the job's worker thread, the form's throttle and the cookie setting."""

    def __init__(self, worker: Worker, throttle: FormThrottle, secure_cookies: bool, sign_in: SignIn,
                 searches: SearchThrottle) -> None:
        self.worker = worker
        self.throttle = throttle
        self.searches = searches
        self.secure_cookies = secure_cookies
        self.sign_in = sign_in

    async def healthz(self, request: Request) -> Response:
        await self.worker.run(lambda access: access.job.store.db.execute("SELECT 1").fetchone())
        return JSONResponse({"status": "ok"})

    async def style(self, request: Request) -> Response:
        return Response(STYLE, media_type="text/css")

    async def approval_page(self, request: Request) -> Response:
        token = request.query_params.get("t", "")
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE) or new_cookie_value()
        who = signed_in(request)
        if who is None and await self.sign_in.provider() is not None:
            # The link's token waits server-side in the sign-in under way, never in the identity provider's URL.
            return self.sign_in.sign_in_redirect(f"/approve?t={quote(token, safe='')}")
        body = await self.worker.run(lambda access: approval_body(access, token, client, cookie, who))
        return with_cookie(page("Access request", self.sign_in.bar(request) + body), cookie, self.secure_cookies)

    async def decide(self, request: Request) -> Response:
        form = await form_of(request)
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE)
        who = signed_in(request)
        if who is None and await self.sign_in.provider() is not None:
            raise LinkRefused("not-signed-in", 403, "Sign in first: open the link from the email again.")
        result = await self.worker.run(lambda access: access.decide(
            form.get("t", ""), form.get("decision", ""), cookie, form.get("csrf"), client,
            signed_in_as=who.username if who is not None else None))
        return page(f"Request #{result.request.request_id} {result.decision}",
                    self.sign_in.bar(request) + decision_body(result))

    async def request_page(self, request: Request) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE) or new_cookie_value()
        session = session_of(request)  # one look: who is signed in and the session their choices are kept in
        who = session.who if session is not None else None
        if who is None and await self.sign_in.provider() is not None:
            return self.sign_in.sign_in_redirect("/request")

        query = request.query_params.get("q", "")
        if query.strip() and who is not None:
            wait = self.searches.wait(who.username.lower())
            if wait:
                return too_many_requests(wait, "Too many searches", "You have searched very often.")

        def view(access: Access) -> str:
            form_open(access)
            return request_form_body(access, access.signer.csrf_token(cookie, REQUEST_FORM), session=session,
                                     query=query)

        body = await self.worker.run(view)
        return with_cookie(page("Ask for access to a share", self.sign_in.bar(request) + body), cookie,
                           self.secure_cookies)

    async def submit_request(self, request: Request) -> Response:
        client = client_of(request)
        wait = self.throttle.wait(client.address)
        if wait:
            return too_many_requests(wait)
        session = session_of(request)
        who = session.who if session is not None else None
        if who is None and await self.sign_in.provider() is not None:
            raise LinkRefused("not-signed-in", 403, "Sign in first: open the request page again.")
        form = await form_of(request)
        cookie = request.cookies.get(CSRF_COOKIE)

        def check(access: Access) -> FormRequest:
            asked = checked_form(access, form, cookie, client, who)
            if session is None:
                return asked  # link-only: the typed MIS id, answered alike whether known or not
            return replace(asked, person=chosen(access, session, form.get("person", ""), client.address))

        asked = await self.worker.run(check)

        async def ask_after_answering() -> None:
            # After the answer has gone, so a known and an unknown id also take the same time to answer.
            try:
                await self.worker.run(lambda access: access.request_if_known(
                    asked.share, asked.person, asked.reason, asked.days, asked.requester, client))
            except Exception:
                log.exception("the request for %s to %s from %s could not be sent", asked.person[:64], asked.share,
                              asked.requester)

        response = page("Request received", f'<p class="notice">{escape(FORM_ANSWER.format(siro=asked.siro))}</p>')
        response.background = BackgroundTask(ask_after_answering)
        return response

    def route_table(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz),
            Route("/static/style.css", self.style),
            Route("/approve", guarded(self.approval_page), methods=["GET"]),
            Route("/approve", guarded(self.decide), methods=["POST"]),
            Route("/request", guarded(self.request_page), methods=["GET"]),
            Route("/request", guarded(self.submit_request), methods=["POST"]),
        ]


def create_app(job_factory: Callable[[], AccessJob], *, secure_cookies: bool = True,
               form_limits: FormLimits | None = None) -> Starlette:
    """The ASGI app; `job_factory` builds the job on the worker thread (e.g. `lambda: load_job(path)`)."""
    worker = Worker(job_factory)
    sign_in = SignIn(worker, secure_cookies)
    limits = form_limits or FormLimits()
    routes = Routes(worker, FormThrottle(limits), secure_cookies, sign_in,
                    SearchThrottle(limits.search_burst_per_account, limits.search_per_account_per_hour))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sign_in.close()
        worker.close()

    app = Starlette(
        routes=(routes.route_table() + ExtendRoutes(worker, secure_cookies).route_table()
                + ClassResetRoutes(worker, secure_cookies, sign_in).route_table() + sign_in.route_table()),
        lifespan=lifespan,
        exception_handlers={Exception: error_page, 404: error_page, 405: error_page},
    )
    app.state.sign_in = sign_in  # what `signin.signed_in(request)` reads
    app.add_middleware(SecurityHeaders)
    return app


def app_for_job(job_factory: Callable[[], AccessJob], job: AccessJob) -> Starlette:
    """The app with cookies marked Secure when the public address is https."""
    settings = web_settings(job)
    return create_app(job_factory, secure_cookies=settings.secure, form_limits=FormLimits.of(settings.limits))
