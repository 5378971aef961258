"""What every page of the web app shares: the job's worker thread, the page frame and its security
headers, forms read with limits, the CSRF cookie, and routes whose refusals become pages (app.py, extend.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import unicodedata
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from html import escape
from typing import TypeVar
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from idlifecycle.access._job import AccessJob
from idlifecycle.access.records import utcnow
from idlifecycle.access.service import Access, Client
from idlifecycle.access.tokens import LinkRefused
from idlifecycle.errors import UserError

T = TypeVar("T")
log = logging.getLogger("idlifecycle.web.app")
CSRF_COOKIE = "idl_csrf"
MAX_BODY = 16 * 1024
MAX_FIELDS = 20
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
class Worker:
    """One thread that owns the job: the store's SQLite connection may not cross threads."""

    def __init__(self, job_factory: Callable[[], AccessJob]) -> None:
        self._factory = job_factory
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idlifecycle-web")
        self._local = threading.local()

    def _job(self) -> AccessJob:
        job: AccessJob | None = getattr(self._local, "job", None)
        if job is None:
            job = self._local.job = self._factory()
        return job

    def _access(self) -> Access:
        access: Access | None = getattr(self._local, "access", None)
        if access is None:
            access = Access(self._job())
            self._local.access = access
        return access

    async def run(self, fn: Callable[[Access], T]) -> T:
        def job() -> T:
            access = self._access()
            access.flush_refusals(utcnow())  # a minute's grouped refusals are written once it is over
            return fn(access)

        return await asyncio.wrap_future(self._pool.submit(job))

    async def run_job(self, fn: Callable[[AccessJob], T]) -> T:
        """`fn` on the job alone, for pages that work without an [access] table (the extend page)."""
        return await asyncio.wrap_future(self._pool.submit(lambda: fn(self._job())))

    def close(self) -> None:
        def close_store() -> None:
            access: Access | None = getattr(self._local, "access", None)
            if access is not None:
                access.flush_refusals()
            job: AccessJob | None = getattr(self._local, "job", None)
            if job is not None:
                job.store.close()

        self._pool.submit(close_store).result()
        self._pool.shutdown()


def page(title: str, body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html><html lang=\"en-GB\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>",
        status_code=status, headers=headers,
    )


def failed_page() -> HTMLResponse:
    """An internal error, said without its details (they go to the log), with the security headers set
    here as well: Starlette answers an unhandled error outside every middleware."""
    return page("Something went wrong", '<p class="notice refused">The service could not finish this. The '
                "IT team can see why in its log; try again later.</p>", 500, headers=dict(SECURITY_HEADERS))


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
    """An urlencoded form (the only kind our pages send), capped in size and fields, without control
    characters (a NUL in an address once reached the mailer as a 500)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise UserError(f"The form is larger than {MAX_BODY // 1024} KB; shorten the reason and send it again.")
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise UserError(f"The form has more than {MAX_FIELDS} fields; send it from the page itself.") from None
    form = {k: v[0] for k, v in fields.items()}
    for name, value in form.items():
        if any(unicodedata.category(c) == "Cc" and c not in "\r\n\t" for c in name + value):
            raise UserError(f"The field {name[:40]!r} holds a control character; type it again without it.")
    return form


def with_cookie(response: Response, value: str, secure: bool) -> Response:
    response.set_cookie(CSRF_COOKIE, value, max_age=3600, httponly=True, samesite="strict", secure=secure)
    return response


def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A route whose refusals and bad input become our pages, and whose failures a logged 500."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except LinkRefused as refused:
            return refused_page(refused)
        except UserError as error:
            return page("That did not work", f'<p class="notice refused">{escape(str(error))}</p>', 400)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return failed_page()
    return wrapped


