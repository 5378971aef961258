"""The request form: what it asks, and, with staff sign-in, the person chosen from a search of the roll.

With sign-in the requester is the signed-in member of staff, and the person the request is for is found
by name among the people the feed has on roll (`search`), never typed as an MIS id: a typo cannot ask for
the wrong person, and nobody needs to know an admission number. Each result is offered as an opaque,
random reference that only this session was shown (`Session.choices`); the server maps it back, so a
forged or another session's reference names nobody and is refused (audited, capped). Searches are
limited per signed-in account (`[web.limits] search_*`), so the roll cannot be dumped by script.

Without sign-in (link-only) the form keeps the typed MIS id and never lists names: an anonymous search
would tell anyone with the address who is on the school's roll.
"""

from __future__ import annotations

import secrets
import unicodedata
from html import escape

from idlifecycle.access.service import Access, Client
from idlifecycle.access.tokens import LinkRefused
from idlifecycle.errors import UserError
from idlifecycle.model import Kind, Person
from idlifecycle.web.sessions import Session
from idlifecycle.web.signin import SignedIn

MAX_RESULTS = 20
MAX_CHOICES = 200
"""References one session remembers; the oldest are forgotten first (a session cannot grow memory)."""
MIN_QUERY = 2
MAX_QUERY = 100


def _folded(text: str) -> str:
    """Without case or accents, so "sian" finds Siân."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _words(text: str) -> list[str]:
    return _folded(text).split()


def search(access: Access, query: str) -> tuple[list[Person], bool]:
    """People on roll whose name (or registration group) holds every word of `query`, by name; and whether
    there were more than `MAX_RESULTS` (then the page asks for more of the name)."""
    words = _words(query[:MAX_QUERY])
    if sum(len(w) for w in words) < MIN_QUERY:
        raise UserError(f"Type at least {MIN_QUERY} letters of the person's name.")
    today = access.job.today
    found = [p for p in access.people().values()
             if (p.leave_date is None or p.leave_date >= today)
             and all(w in _folded(f"{p.display_name} {p.registration_group or ''}") for w in words)]
    found.sort(key=lambda p: (p.display_name.casefold(), p.registration_group or "", p.person_id))
    return found[:MAX_RESULTS], len(found) > MAX_RESULTS


def offer(session: Session[SignedIn], person_id: str) -> str:
    """A new opaque reference to `person_id`, good in this session only."""
    reference = secrets.token_urlsafe(16)
    session.choices[reference] = person_id
    while len(session.choices) > MAX_CHOICES:
        del session.choices[next(iter(session.choices))]
    return reference


def chosen(access: Access, session: Session[SignedIn], reference: str, address: str) -> str:
    """The person id behind a reference this session was shown; refused (and audited, capped) otherwise."""
    person_id = session.choices.get(reference)
    if person_id is None:
        refused = LinkRefused("request-person-reference", 403, "Choose the person from the search on the request "
                              "page (a page left open since the last sign-in is out of date: search again).")
        access.refused(refused, Client(address))
        raise refused
    return person_id


def _describe(person: Person) -> str:
    kind = "pupil" if person.kind is Kind.PUPIL else "staff"
    group = f", {person.registration_group}" if person.registration_group else ""
    return f"{person.display_name} ({kind}{group})"


def search_body(access: Access, session: Session[SignedIn], query: str) -> tuple[str, str]:
    """The search box, and for a query its results as the choices of the request form below it."""
    box = ('<form method="get" action="/request" role="search"><label>Who is the access for? Search by name'
           f'<input name="q" value="{escape(query[:MAX_QUERY], quote=True)}" minlength="{MIN_QUERY}" '
           f'maxlength="{MAX_QUERY}" autocomplete="off" required></label>'
           '<p><button type="submit">Search</button></p></form>')
    if not query.strip():
        return box, ""
    people, more = search(access, query)
    if not people:
        return box, '<p class="notice refused">Nobody on roll matches that name. Check the spelling.</p>'
    choices = "".join(
        f'<label class="choice"><input type="radio" name="person" value="{offer(session, p.person_id)}" '
        f'required{" checked" if len(people) == 1 else ""}> {escape(_describe(p))}</label>' for p in people)
    note = (f'<p class="notice">More than {MAX_RESULTS} people match: only the first {MAX_RESULTS} are shown. '
            "Type more of the name.</p>" if more else "")
    return box, f"<fieldset><legend>Person</legend>{note}{choices}</fieldset>"


def request_form_body(access: Access, csrf: str, message: str = "", session: Session[SignedIn] | None = None,
                      query: str = "") -> str:
    """The request form; with staff sign-in (`session`) the requester is who signed in, shown, not asked for,
    and the person is chosen from a search; without it the person's MIS id is typed."""
    who = session.who if session is not None else None
    options = "".join(
        f'<option value="{escape(s.name, quote=True)}">{escape(s.title)} ({escape(s.classification)}, '
        f"up to {s.max_grant_days} days)</option>"
        for s in sorted(access.registry.shares.values(), key=lambda s: s.title) if s.classification != "public"
    )
    box, person = ("", '<label>Person (MIS id)<input name="person" required></label>')
    if session is not None:
        box, person = search_body(access, session, query)
        if not person:
            person = "<p>Search for the person above first.</p>"
    return (
        (f'<p class="notice refused">{escape(message)}</p>' if message else "")
        + f"<p>Requests go to {escape(access.settings.siro_name)} (SIRO) for approval by email.</p>"
        + box
        + '<form method="post" action="/request">'
        f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">'
        + (f"<p>Requested by {escape(who.name)} ({escape(who.username)})</p>" if who is not None else
           '<label>Your school email<input name="requester" type="email" required></label>')
        + person
        + f'<label>Share<select name="share">{options}</select></label>'
        '<label>Why is access needed?<textarea name="reason" rows="4" maxlength="1000" required></textarea></label>'
        '<label>For how many days<input name="days" type="number" min="1" value="7" required></label>'
        '<p><button class="approve" type="submit">Send to the SIRO</button></p></form>'
    )
