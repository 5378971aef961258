"""The approval web app (ASGI): the SIRO's decision page, the staff request form and a health check.

GET never changes a request or a grant (mail scanners open links); decisions are POSTs carrying
the link's token and a CSRF token tied to a SameSite=Strict cookie. Every page is built here with
every value escaped, and sent with a strict Content-Security-Policy and no third-party assets.
All work on the job (its SQLite store, connectors) runs on one worker thread, as the store requires.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from html import escape
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idlifecycle.access._job import AccessJob
from idlifecycle.access.messages import request_rows, when
from idlifecycle.access.service import Access, Client
from idlifecycle.access.shares import web_settings
from idlifecycle.access.tokens import LinkRefused, new_cookie_value
from idlifecycle.errors import UserError
from idlifecycle.notify import valid_email

T = TypeVar("T")
CSRF_COOKIE = "idl_csrf"
MAX_BODY = 16 * 1024
REQUEST_FORM = "request-form"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
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


class Worker:
    """One thread that owns the job: the store's SQLite connection may not cross threads."""

    def __init__(self, job_factory: Callable[[], AccessJob]) -> None:
        self._factory = job_factory
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idlifecycle-web")
        self._local = threading.local()

    def _access(self) -> Access:
        access: Access | None = getattr(self._local, "access", None)
        if access is None:
            access = Access(self._factory())
            self._local.access = access
        return access

    async def run(self, fn: Callable[[Access], T]) -> T:
        return await asyncio.wrap_future(self._pool.submit(lambda: fn(self._access())))

    def close(self) -> None:
        def close_store() -> None:
            access: Access | None = getattr(self._local, "access", None)
            if access is not None:
                access.job.store.close()

        self._pool.submit(close_store).result()
        self._pool.shutdown()


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html><html lang=\"en-GB\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


def refused_page(refused: LinkRefused) -> HTMLResponse:
    return page("This link cannot be used",
                f'<p class="notice refused">{escape(refused.message)}</p>'
                "<p>Nothing has been changed. This attempt has been recorded.</p>", refused.status)


def table(rows: list[tuple[str, str]]) -> str:
    reason = ' class="reason"'
    cells = "".join(
        f"<tr><th>{escape(k)}</th><td{reason if k == 'Reason' else ''}>{escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def client_of(request: Request) -> Client:
    return Client(request.client.host if request.client else "", request.headers.get("user-agent", ""))


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind our pages send), capped in size."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in fields.items()}


def with_cookie(response: Response, value: str, secure: bool) -> Response:
    response.set_cookie(CSRF_COOKIE, value, max_age=3600, httponly=True, samesite="strict", secure=secure)
    return response


def create_app(job_factory: Callable[[], AccessJob], *, secure_cookies: bool = True) -> Starlette:
    """The ASGI app; `job_factory` builds the job on the worker thread (e.g. `lambda: load_job(path)`)."""
    worker = Worker(job_factory)

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except LinkRefused as refused:
                return refused_page(refused)
            except UserError as error:
                return page("That did not work", f'<p class="notice refused">{escape(str(error))}</p>', 400)
        return wrapped

    async def healthz(request: Request) -> Response:
        await worker.run(lambda access: access.job.store.db.execute("SELECT 1").fetchone())
        return JSONResponse({"status": "ok"})

    async def style(request: Request) -> Response:
        return Response(STYLE, media_type="text/css")

    async def approval_page(request: Request) -> Response:
        token = request.query_params.get("t", "")
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE) or new_cookie_value()

        def view(access: Access) -> str:
            claims, access_request = access.check_link(token, client)
            share = access.share(access_request.share)
            csrf = access.signer.csrf_token(cookie, claims.nonce)
            return (
                f"<p>Dear {escape(access.settings.siro_name)}, please decide this request. Opening this page "
                "has changed nothing.</p>"
                + table(request_rows(access_request, share))
                + f"<p>This link works once, until {escape(when(claims.expires))}.</p>"
                '<form method="post" action="/approve">'
                f'<input type="hidden" name="t" value="{escape(token, quote=True)}">'
                f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">'
                '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
                '<button class="deny" type="submit" name="decision" value="deny">Deny</button>'
                "</form>"
            )

        body = await worker.run(view)
        return with_cookie(page("Access request", body), cookie, secure_cookies)

    async def decide(request: Request) -> Response:
        form = await form_of(request)
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE)
        result = await worker.run(lambda access: access.decide(
            form.get("t", ""), form.get("decision", ""), cookie, form.get("csrf"), client))
        who = escape(result.request.person_name)
        lines = "".join(f"<li>{escape(n)}</li>" for n in result.notes)
        if result.grant is not None:
            summary = (f"<p class=\"notice\">Approved: {who} has access to {escape(result.share.title)} until "
                       f"{escape(when(result.grant.expires_at))} (grant #{result.grant.grant_id}).</p>")
        else:
            summary = (f"<p class=\"notice\">Denied: {who} has not been given access to "
                       f"{escape(result.share.title)}.</p>")
        body = summary + (f"<ul>{lines}</ul>" if lines else "") + "<p>The requester has been told by email.</p>"
        return page(f"Request #{result.request.request_id} {result.decision}", body)

    def request_form_body(access: Access, csrf: str, message: str = "") -> str:
        options = "".join(
            f'<option value="{escape(s.name, quote=True)}">{escape(s.title)} ({escape(s.classification)}, '
            f"up to {s.max_grant_days} days)</option>"
            for s in sorted(access.registry.shares.values(), key=lambda s: s.title) if s.classification != "public"
        )
        return (
            (f'<p class="notice refused">{escape(message)}</p>' if message else "")
            + f"<p>Requests go to {escape(access.settings.siro_name)} (SIRO) for approval by email.</p>"
            '<form method="post" action="/request">'
            f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">'
            '<label>Your school email<input name="requester" type="email" required></label>'
            f'<label>Share<select name="share">{options}</select></label>'
            '<label>Person (MIS id)<input name="person" required></label>'
            '<label>Why is access needed?<textarea name="reason" rows="4" maxlength="1000" required></textarea></label>'
            '<label>For how many days<input name="days" type="number" min="1" value="7" required></label>'
            '<p><button class="approve" type="submit">Send to the SIRO</button></p></form>'
        )

    def form_open(access: Access) -> None:
        if not access.settings.requester_domains:
            raise UserError("The request form is turned off: ask the IT team to make the request.")

    async def request_page(request: Request) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE) or new_cookie_value()

        def view(access: Access) -> str:
            form_open(access)
            return request_form_body(access, access.signer.csrf_token(cookie, REQUEST_FORM))

        body = await worker.run(view)
        return with_cookie(page("Ask for access to a share", body), cookie, secure_cookies)

    async def submit_request(request: Request) -> Response:
        form = await form_of(request)
        client = client_of(request)
        cookie = request.cookies.get(CSRF_COOKIE)

        def submit(access: Access) -> Any:
            form_open(access)
            if not access.signer.csrf_ok(cookie, REQUEST_FORM, form.get("csrf")):
                refused = LinkRefused("csrf", 403, "This form did not come from the request page in this browser.")
                access.refused(refused, client)
                raise refused
            requester = form.get("requester", "").strip().lower()
            domain = requester.rpartition("@")[2]
            if not valid_email(requester) or domain not in {d.lower() for d in access.settings.requester_domains}:
                raise UserError("Use your school email address.")
            try:
                days = int(form.get("days", ""))
            except ValueError:
                raise UserError("Give the number of days as a whole number.") from None
            return access.request(form.get("share", ""), form.get("person", "").strip(),
                                  form.get("reason", ""), days, requester)

        access_request = await worker.run(submit)
        return page("Request sent", f"<p class=\"notice\">Request #{access_request.request_id} has been sent to "
                                    "the SIRO. You will get an email when it is decided.</p>")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        worker.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/static/style.css", style),
            Route("/approve", guarded(approval_page), methods=["GET"]),
            Route("/approve", guarded(decide), methods=["POST"]),
            Route("/request", guarded(request_page), methods=["GET"]),
            Route("/request", guarded(submit_request), methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders)
    return app


def app_for_job(job_factory: Callable[[], AccessJob], job: AccessJob) -> Starlette:
    """The app with cookies marked Secure when the public address is https."""
    return create_app(job_factory, secure_cookies=web_settings(job).secure)
