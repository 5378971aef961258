"""The teacher's class reset page (issue 18): `/passwords` lists the pupils of the groups the signed-in member
of staff teaches; a button resets one pupil's password, or the whole group's, and the new passwords are shown
once, as slips to print.

Everything that decides is `passwords.class_reset` (who may reset whom, the issuer, the audit, the rate
limit), the same as the IT desk's `passwords reset-class`: this page only asks, as the signed-in person,
from the client's address. It needs staff sign-in (`[web] sign_in`); without it the page says so and does
nothing, since a link-only page cannot know which teacher is asking. GET changes nothing; a reset is a POST
carrying a CSRF token tied to the SameSite=Strict cookie and the signed-in person. The answer with the
passwords is sent no-store (every page is) and the passwords are written nowhere else.
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from idlifecycle.access._job import AccessJob
from idlifecycle.access.tokens import LinkRefused, Signer, new_cookie_value
from idlifecycle.model import Person
from idlifecycle.passwords.class_reset import ClassResetOutcome, class_lists, reset_pupils
from idlifecycle.passwords.issuer import settings_for_job
from idlifecycle.web.pages import CSRF_COOKIE, Worker, client_of, form_of, guarded, page, with_cookie
from idlifecycle.web.signin import SignedIn, SignIn, signed_in

PURPOSE = "class-reset:"
"""What the CSRF token is for, with the signed-in username: a token for one teacher is no use to another."""


def _signer(job: AccessJob) -> Signer:
    return Signer(job.secrets["approval_signing_key"])


def _school(job: AccessJob) -> str:
    return settings_for_job(job).school_name


def lists_body(job: AccessJob, who: SignedIn, address: str, cookie: str) -> str:
    """The groups `who` teaches, each with its pupils and a reset button for each and for the group."""
    with job.open_connectors() as connectors:
        teacher, groups = class_lists(job, connectors, who, from_address=address)
    csrf = escape(_signer(job).csrf_token(cookie, PURPOSE + who.username.lower()), quote=True)
    hidden = f'<input type="hidden" name="csrf" value="{csrf}">'
    if not groups:
        return (f"<p>{escape(_school(job))}</p><p class=\"notice\">{escape(teacher.person.display_name)}: no "
                "pupil on roll is in a group you teach. If that is wrong, ask the IT team to add you to the "
                "group's teachers.</p>")
    sections = []
    for group, pupils in groups.items():
        rows = "".join(_pupil_row(pupil, hidden) for pupil in pupils)
        sections.append(
            f"<section><h2>{escape(group)}</h2><table>{rows}</table>"
            f'<form method="post" action="/passwords">{hidden}'
            f'<input type="hidden" name="group" value="{escape(group, quote=True)}">'
            f'<button class="deny" type="submit">Reset all {len(pupils)} in {escape(group)}</button></form>'
            "</section>")
    return (f"<p>{escape(_school(job))}</p><p>A new password is shown once, here, to write down or print. The "
            "pupil's old password stops working at once.</p>" + "".join(sections))


def _pupil_row(pupil: Person, hidden: str) -> str:
    return (f"<tr><th>{escape(pupil.display_name)}</th><td>"
            f'<form method="post" action="/passwords">{hidden}'
            f'<input type="hidden" name="pupil" value="{escape(pupil.person_id, quote=True)}">'
            f'<button class="approve" type="submit" aria-label="Reset the password of {escape(pupil.display_name)}">'
            "Reset password</button></form></td></tr>")


def reset_now(job: AccessJob, who: SignedIn, form: dict[str, str], cookie: str | None, address: str) -> str:
    """The reset the form asked for, as `who`; the slips, shown once."""
    if not _signer(job).csrf_ok(cookie, PURPOSE + who.username.lower(), form.get("csrf")):
        job.store.audit("class-reset-refused", {"teacher": who.username, "pupil_id": form.get("pupil", "")[:64],
                                                "reason": "the form did not come from the class reset page",
                                                "from": address, "operator": ""}, actor=who.username)
        raise LinkRefused("class-reset-csrf", 403, "This form did not come from the password page in this browser. "
                                                   "Open the password page again.")
    group = form.get("group", "").strip() or None
    pupils = [form["pupil"].strip()] if form.get("pupil", "").strip() and group is None else []
    with job.lock(), job.open_connectors() as connectors:
        outcome = reset_pupils(job, connectors, who, pupils=pupils, group=group, from_address=address)
    return slips_body(outcome, _school(job))


def slips_body(outcome: ClassResetOutcome, school: str) -> str:
    slips = "".join(
        f'<section class="slip"><h2>{escape(school)}</h2><p>{escape(slip.pupil.display_name)}'
        f"{' (' + escape(slip.pupil.registration_group) + ')' if slip.pupil.registration_group else ''}</p>"
        f'<p>Username: <b class="username">{escape(slip.username)}</b></p>'
        f'<p>Password: <b class="password">{escape(slip.password)}</b></p>'
        f"<p>{'Choose your own password when you sign in.' if slip.change_at_sign_in else 'Keep it safe.'}</p>"
        "</section>" for slip in outcome.slips)
    failed = "".join(f'<p class="notice refused">Not set for {escape(line)}</p>' for line in outcome.failed)
    count = len(outcome.slips)
    return (f'<p class="notice">{count} new password{"s" if count != 1 else ""}, shown this once: print this page '
            "(Ctrl+P) or write them down now. They are not kept anywhere.</p>" + failed + slips
            + '<p><a class="button" href="/passwords">Back to my groups</a></p>')


class ClassResetRoutes:
    """`/passwords`, on the app's worker thread, for signed-in staff only."""

    def __init__(self, worker: Worker, secure_cookies: bool, sign_in: SignIn) -> None:
        self.worker, self.secure_cookies, self.sign_in = worker, secure_cookies, sign_in

    async def _who(self, request: Request) -> SignedIn | Response:
        if await self.sign_in.provider() is None:
            return page("Class resets need staff sign-in", '<p class="notice refused">This page resets pupils\' '
                        "passwords for the teacher who is signed in, so it works only with staff sign-in "
                        "(<code>[web] sign_in</code> in the job file). Ask the IT team.</p>", 404)
        who = signed_in(request)
        return who if who is not None else self.sign_in.sign_in_redirect("/passwords")

    async def lists(self, request: Request) -> Response:
        who = await self._who(request)
        if isinstance(who, Response):
            return who
        cookie = request.cookies.get(CSRF_COOKIE) or new_cookie_value()
        address = client_of(request).address
        body = await self.worker.run_job(lambda job: lists_body(job, who, address, cookie))
        return with_cookie(page("Reset a pupil's password", self.sign_in.bar(request) + body), cookie,
                           self.secure_cookies)

    async def reset(self, request: Request) -> Response:
        who = await self._who(request)
        if isinstance(who, Response):
            if await self.sign_in.provider() is None:
                return who
            raise LinkRefused("not-signed-in", 403, "Sign in first: open the password page again.")
        form = await form_of(request)
        cookie = request.cookies.get(CSRF_COOKIE)
        address = client_of(request).address
        body = await self.worker.run_job(lambda job: reset_now(job, who, form, cookie, address))
        return page("New passwords", self.sign_in.bar(request) + body)

    def route_table(self) -> list[Route]:
        return [Route("/passwords", guarded(self.lists), methods=["GET"]),
                Route("/passwords", guarded(self.reset), methods=["POST"])]
