"""Staff sign in with the school's own identity provider (`[web] sign_in = "entra"`), and who is signed in.

The rest of the web app asks one thing: `signed_in(request)`, a `SignedIn` or None. Only staff of the
managed scope are signed in: the identity provider's `preferred_username` must be the school email (the
feed's) or the login (the username the tool issued at the staff mapping's domain) of a member of staff in
the feed; a pupil, a leaver or an account the school does not manage gets a refusal page, audited.

Sessions (`sessions.py`) are server-side; the cookie holds a random id: HttpOnly, Secure behind TLS,
SameSite=Lax (the identity provider's redirect back is a top-level GET from another site, which a Strict
cookie would not come with), ending `session_minutes` after sign-in or `idle_minutes` after the last
request. A sign-in always makes a new session id (fixation); sign-out (a POST with the session's own CSRF
token) ends it on the server.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any, Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from idlifecycle.access._job import AccessJob
from idlifecycle.access.records import utcnow
from idlifecycle.access.refusals import CappedRefusals
from idlifecycle.access.shares import web_limits, web_settings
from idlifecycle.model import Kind
from idlifecycle.web.entra_signin import EntraSignIn, SignInRefused
from idlifecycle.web.google_signin import GoogleSignIn
from idlifecycle.web.pages import Worker, client_of, form_of, guarded, page
from idlifecycle.web.sessions import PENDING_SECONDS, Session, Sessions

log = logging.getLogger(__name__)
SESSION_COOKIE = "idl_session"
PENDING_COOKIE = "idl_signin"


@dataclass(frozen=True)
class SignedIn:
    subject: str
    username: str
    name: str
    provider: str


class Provider(Protocol):
    """An identity provider's client: `entra_signin.EntraSignIn`, `google_signin.GoogleSignIn`."""

    provider: str

    def begin(self) -> dict[str, Any]: ...

    def finish(self, flow: dict[str, Any], answer: Mapping[str, str]) -> dict[str, Any]: ...


def signed_in(request: Request) -> SignedIn | None:
    """Who is signed in on this request (staff of the managed scope), or None."""
    session = session_of(request)
    return session.who if session is not None else None


def session_of(request: Request) -> Session[SignedIn] | None:
    """The signed-in session of this request, or None."""
    state: SignIn | None = getattr(request.app.state, "sign_in", None)
    return state.sessions.get(request.cookies.get(SESSION_COOKIE)) if state is not None else None


def staff_identity(job: AccessJob, claims: dict[str, Any], provider: str) -> SignedIn | None:
    """The member of staff the identity provider signed in, when the feed has them as staff; else None."""
    address = str(claims.get("preferred_username", "")).strip().lower()
    usernames = job.store.person_usernames()
    for person in job.read_people().people:
        if person.kind is not Kind.STAFF or (person.leave_date is not None and person.leave_date < job.today):
            continue  # pupils, and staff whose last day has passed: not in the managed staff scope
        username = usernames.get(person.person_id)
        login = f"{username}@{job.config.mapping.for_person(person).domain}".lower() if username else ""
        if address and address in ((person.email or "").lower(), login):
            return SignedIn(str(claims["oid"]), address, str(claims.get("name") or person.display_name), provider)
    return None


def safe_next(path: str) -> str:
    """Where to go after sign-in: a path of this app only (never another site: open redirect)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/request"
    return path


class SignIn:
    """The sign-in routes and the sessions, sharing the job's worker thread; the provider is read from the job
    on first use, so a job without sign-in configured serves today's pages unchanged."""

    def __init__(self, worker: Worker, secure_cookies: bool) -> None:
        self.worker = worker
        self.secure_cookies = secure_cookies
        self.sessions: Sessions[SignedIn] = Sessions(lifetime=3600, idle=900)
        self._provider: Provider | None = None
        self._read = False
        self._refusals: CappedRefusals | None = None  # built and used on the worker thread only

    async def provider(self) -> Provider | None:
        """The job's identity provider, or None when `[web] sign_in` is "link-only"."""
        if not self._read:
            self._provider = await self.worker.run_job(self._from_job)
            self._read = True
        return self._provider

    def _from_job(self, job: AccessJob) -> Provider | None:
        settings = web_settings(job)
        self.sessions.lifetime = settings.session_minutes * 60
        self.sessions.idle = settings.idle_minutes * 60
        if settings.sign_in == "google" and settings.google is not None:
            return GoogleSignIn(settings.google, job.secrets["sign_in_client_secret"])
        if settings.sign_in != "entra" or settings.entra is None:
            return None
        ca_file = str(job.resolve_path(settings.entra.ca_file)) if settings.entra.ca_file else None
        return EntraSignIn(settings.entra, job.secrets["sign_in_client_secret"], ca_file)

    def sign_in_redirect(self, next_path: str) -> Response:
        return RedirectResponse(f"/signin?next={quote(next_path, safe='')}", status_code=303)

    async def start(self, request: Request) -> Response:
        provider = await self.provider()
        if provider is None:
            return page("Sign-in is not set up", '<p class="notice refused">This service does not use sign-in.</p>',
                        404)
        try:
            flow = await asyncio.to_thread(provider.begin)
        except SignInRefused as refused:  # the identity provider cannot be reached: say so, not a 500
            log.warning("sign-in could not start: %s", refused.reason)
            return self._refused(refused.message, 503)
        key = self.sessions.pend(flow, safe_next(request.query_params.get("next", "/request")))
        response = RedirectResponse(str(flow["auth_uri"]), status_code=303)
        response.set_cookie(PENDING_COOKIE, key, max_age=PENDING_SECONDS, path="/signin", httponly=True,
                            samesite="lax", secure=self.secure_cookies)
        return response

    async def callback(self, request: Request) -> Response:
        provider = await self.provider()
        pending = self.sessions.take(request.cookies.get(PENDING_COOKIE))
        client = client_of(request)
        if provider is None or pending is None:
            log.warning("sign-in answer without a sign-in under way (replayed or another browser's) from %s",
                        client.address)
            await self._audit_refused("no-sign-in-under-way", client.address)
            return self._refused("This sign-in has already been used or has expired. Sign in again.", 400)
        try:
            claims = await asyncio.to_thread(provider.finish, pending.flow, dict(request.query_params))
        except SignInRefused as refused:
            log.warning("sign-in refused (%s) from %s", refused.reason, client.address)
            await self._audit_refused(refused.reason, client.address)
            return self._refused(refused.message, 403)
        who = await self.worker.run_job(lambda job: self._staff_or_audit(job, claims, provider.provider, client))
        if who is None:
            return self._refused("Only staff of the school can sign in here. If you are staff, ask the IT team.",
                                 403)
        session = self.sessions.start(who, replacing=request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(pending.next_path, status_code=303)
        response.delete_cookie(PENDING_COOKIE, path="/signin")
        response.set_cookie(SESSION_COOKIE, session.session_id, max_age=int(self.sessions.lifetime), httponly=True,
                            samesite="lax", secure=self.secure_cookies)
        return response

    async def _audit_refused(self, reason: str, address: str) -> None:
        """A sign-in answer refused before anyone was identified (a tampered, expired or replayed answer),
        audited capped: whoever sends them needs no account, so they must not be able to flood the audit log."""
        def audit(job: AccessJob) -> None:
            if self._refusals is None:
                limits = web_limits(job)
                self._refusals = CappedRefusals("sign-in-answer-refused", "sign-in-answers-refused",
                                                limits.refused_audit_window_seconds, limits.refused_audit_clients)
            self._refusals.record(job.store, reason, address, {}, utcnow())

        await self.worker.run_job(audit)

    async def close(self) -> None:
        """Write the counts of refused sign-in answers not yet written (when the app stops)."""
        if self._refusals is not None:
            refusals = self._refusals
            await self.worker.run_job(lambda job: refusals.flush(job.store))

    def _staff_or_audit(self, job: AccessJob, claims: dict[str, Any], provider: str, client: Any) -> SignedIn | None:
        if self._refusals is not None:
            self._refusals.flush(job.store, utcnow())  # a window of refused answers that has passed
        who = staff_identity(job, claims, provider)
        username = str(claims.get("preferred_username", ""))[:200]
        if who is None:
            job.store.audit("sign-in-refused", {"username": username, "provider": provider,
                                                "reason": "not staff of the managed scope",
                                                "client": client.address}, actor="web")
        else:
            job.store.audit("signed-in", {"username": who.username, "provider": provider,
                                          "client": client.address}, actor=who.username)
        return who

    async def sign_out(self, request: Request) -> Response:
        form = await form_of(request)
        session_id = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(session_id)
        if session is not None and not hmac.compare_digest(session.csrf, form.get("csrf", "")):
            return page("That did not work", '<p class="notice refused">This form did not come from our page in '
                        "this browser. Nothing has been changed.</p>", 403)
        if session is not None:
            self.sessions.end(session_id)
            who = session.who.username
            await self.worker.run_job(lambda job: job.store.audit("signed-out", {"username": who}, actor=who))
        response = page("Signed out", "<p class=\"notice\">You are signed out of this service. To sign out of "
                        "your school account everywhere, sign out of Microsoft 365 or Google as well.</p>")
        response.delete_cookie(SESSION_COOKIE)
        return response

    def _refused(self, message: str, status: int) -> Response:
        return page("Sign-in did not work", f'<p class="notice refused">{escape(message)}</p>'
                    '<p><a class="button" href="/signin">Sign in again</a></p>', status)

    def bar(self, request: Request) -> str:
        """"Signed in as … [Sign out]" for the top of a page, or nothing."""
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return ""
        return (f'<form class="signed-in" method="post" action="/signout"><span>Signed in as '
                f"{escape(session.who.name)} ({escape(session.who.username)})</span>"
                f'<input type="hidden" name="csrf" value="{escape(session.csrf, quote=True)}">'
                '<button type="submit">Sign out</button></form>')

    def route_table(self) -> list[Route]:
        return [
            Route("/signin", guarded(self.start), methods=["GET"]),
            Route("/signin/callback", guarded(self.callback), methods=["GET"]),
            Route("/signout", guarded(self.sign_out), methods=["POST"]),
        ]
