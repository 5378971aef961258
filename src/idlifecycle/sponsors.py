"""An extra person's sponsor, told before the end date and able to extend it (issue 17).

Each night the sponsor of everyone whose end date is `warn_days_before_end` days away or nearer gets one
email per end date (`extra_end_warnings`, keyed by person and end date, so an extended end date gets its
own warning). The email carries an extend link: signed with the approval key but under its own purpose
(`Signer.mint_extend`), so an approval link can never extend and an extend link never approve, and single
use through its nonce's row in `extend_links`. `extend` is the one way an end date moves, for the web page
and for `idlifecycle people extend`: the kind's maximum, the file rewritten atomically, the audit entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from typing import Any, Protocol

from idlifecycle import extra_people
from idlifecycle.access.tokens import ExtendClaims, LinkRefused, Signer
from idlifecycle.errors import UserError
from idlifecycle.extra_people import ExtraPerson
from idlifecycle.mapping import MappingRules
from idlifecycle.model import Person
from idlifecycle.notify import Mailer, valid_email
from idlifecycle.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS extra_end_warnings (
    person_id TEXT NOT NULL, end_date TEXT NOT NULL, sent_to TEXT NOT NULL, sent_at TEXT NOT NULL,
    PRIMARY KEY (person_id, end_date)
);
CREATE TABLE IF NOT EXISTS extend_links (
    nonce TEXT PRIMARY KEY, person_id TEXT NOT NULL, sponsor TEXT NOT NULL, end_date TEXT NOT NULL,
    issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT
);
"""


class SponsorJob(Protocol):
    """What this module reads from `idlifecycle.job.Job` (and the web app's AccessJob)."""

    @property
    def config(self) -> Any: ...

    @property
    def store(self) -> Store: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...

    @property
    def today(self) -> date: ...

    def section(self, name: str) -> Mapping[str, Any]: ...


def due(people: Sequence[ExtraPerson], rules: MappingRules, today: date,
        warned: set[tuple[str, date]]) -> list[ExtraPerson]:
    """Who should have a warning sent tonight: end date within their kind's `warn_days_before_end` (and not
    today or past: the account goes tonight), not already warned about this end date."""
    return [p for p in people
            if 0 < (p.end - today).days <= rules.extra[p.kind].warn_days_before_end
            and (p.person_id, p.end) not in warned]


def latest_end(person: ExtraPerson, rules: MappingRules) -> date | None:
    limit = rules.extra[person.kind].max_days
    return None if limit is None else person.start + timedelta(days=limit)


def link_expiry(end: date) -> datetime:
    """An extend link works until the start of the end date (the night it is disabled)."""
    return datetime.combine(end, time(0, 0), UTC)


@dataclass(frozen=True)
class Warning:
    person: ExtraPerson
    to: str
    url: str


def warning_email(w: Warning, sponsor_name: str, fallback: bool, rules: MappingRules) -> tuple[str, str, str]:
    """(subject, text, html) of the warning to the sponsor (or, `fallback`, the job's summary address)."""
    p = w.person
    latest = latest_end(p, rules)
    lines = [f"Dear {sponsor_name}," if not fallback else
             f"The sponsor {p.sponsor} has no email address on the MIS feed, so this comes to you.",
             f"The accounts of {p.first} {p.last} ({p.kind}, sponsored by {p.sponsor}) will be disabled on "
             f"{p.end:%d %b %Y}.",
             "If they still need access, extend the end date with the link below"
             + (f" (at the latest to {latest:%d %b %Y})." if latest else ".")
             + f" The link works once, until {p.end:%d %b %Y} 00:00 UTC. If they no longer need access, do nothing."]
    if not w.url:
        lines[-1] = "To extend the end date, ask the IT team (`idlifecycle people extend`)."
    text = "\n\n".join(lines) + (f"\n\nExtend the end date:\n{w.url}\n" if w.url else "\n")
    html = "".join(f"<p>{escape(x)}</p>" for x in lines)
    if w.url:
        html += f'<p><a href="{escape(w.url, quote=True)}">Extend the end date</a></p>'
    subject = f"{p.first} {p.last}'s access ends on {p.end:%d %b %Y}"
    return subject, text, f'<!DOCTYPE html><html><body style="font-family:sans-serif">{html}</body></html>'


def _base_url(job: SponsorJob) -> str:
    web = job.section("web")
    return str(web.get("public_base_url", "")).rstrip("/") if web else ""


def warn_sponsors(job: SponsorJob, feed: Sequence[Person], *, now: datetime | None = None) -> list[str]:
    """Send tonight's end-date warnings; returns lines for the run report (fallbacks and failures).

    A warning is recorded only once it is sent, so a mail failure is tried again the next night."""
    now = now or datetime.now(UTC)
    rules: MappingRules = job.config.mapping
    path = job.config.extra_people_path
    if path is None:
        return []
    job.store.ensure_schema(SCHEMA)
    warned = {(r[0], date.fromisoformat(r[1]))
              for r in job.store.db.execute("SELECT person_id, end_date FROM extra_end_warnings")}
    todo = due(extra_people.read_extra_people(path, rules), rules, job.today, warned)
    if not todo:
        return []
    mailer = Mailer.from_job(job)
    if mailer is None:
        return [f"{len(todo)} sponsor(s) not told of an end date: the job has no [mail] table"]
    summary_to = summary_addresses(job)
    staff = {p.person_id: p for p in feed if p.extra_kind is None}
    signer = Signer(job.secrets["approval_signing_key"]) if _base_url(job) else None
    lines: list[str] = []
    for person in todo:
        lines += _warn_one(job, mailer, signer, person, staff.get(person.sponsor), summary_to, now)
    return lines


def summary_addresses(job: SponsorJob) -> list[str]:
    return [str(a) for a in job.section("report").get("summary_to", []) if valid_email(str(a))]


def sponsor_recipients(sponsor: Person | None, summary_to: list[str]) -> tuple[list[str], bool]:
    """Who gets a mail meant for a sponsor: their feed email, or (True: a fallback) `[report] summary_to`."""
    email = (sponsor.email or "").lower() if sponsor is not None else ""
    fallback = not valid_email(email)
    return (summary_to if fallback else [email]), fallback


def _warn_one(job: SponsorJob, mailer: Mailer, signer: Signer | None, person: ExtraPerson, sponsor: Person | None,
              summary_to: list[str], now: datetime) -> list[str]:
    to, fallback = sponsor_recipients(sponsor, summary_to)
    who = f"{person.first} {person.last} ({person.person_id})"
    if not to:
        return [f"the sponsor {person.sponsor} of {who} has no email on the feed and [report] summary_to is "
                f"empty: nobody was told that their access ends on {person.end}"]
    url = ""
    if signer is not None:
        expires = link_expiry(person.end)
        token, claims = signer.mint_extend(person.person_id, person.sponsor, person.end, expires)
        job.store.db.execute("INSERT INTO extend_links VALUES (?,?,?,?,?,?,NULL)",
                             (claims.nonce, person.person_id, person.sponsor, person.end.isoformat(),
                              now.isoformat(), expires.isoformat()))
        url = f"{_base_url(job)}/extend?t={token}"
    name = f"{sponsor.preferred_first_name or sponsor.legal_first_name} {sponsor.last_name}" if sponsor else ""
    subject, text, html = warning_email(Warning(person, ",".join(to), url), name, fallback, job.config.mapping)
    try:
        mailer.send(to, subject, text, html)
    except UserError as error:
        return [f"the end-date warning for {who} was not sent: {error}"]
    with job.store.transaction() as db:
        db.execute("INSERT INTO extra_end_warnings VALUES (?,?,?,?)",
                   (person.person_id, person.end.isoformat(), ",".join(to), now.isoformat()))
        job.store.audit("extra-person-end-warned", {"person_id": person.person_id, "end": str(person.end),
                                                    "sponsor": person.sponsor, "to": to, "link": bool(url)})
    if fallback:
        return [f"the sponsor {person.sponsor} of {who} has no email on the feed: the warning that their access "
                f"ends on {person.end} went to {', '.join(to)}"]
    return []


def extend(job: SponsorJob, person_id: str, new_end: date, actor: str, via: str) -> ExtraPerson:
    """Move an extra person's end date later (the kind's maximum held), in the file and the audit log;
    returns the entry as it was."""
    path = job.config.extra_people_path
    if path is None:
        raise UserError(f"{job.config.path}: [job] extra_people is not set")
    rules: MappingRules = job.config.mapping
    person = find(job, person_id)
    if new_end <= person.end:
        raise UserError(f"the new end date {new_end} is not after the current one, {person.end}")
    if new_end <= job.today:
        raise UserError(f"the new end date {new_end} is not in the future")
    extra_people.check_dates(person.kind, person.start, new_end, rules)
    extra_people.set_end(path, person_id, new_end, rules)
    job.store.audit("extra-person-extended", {"person_id": person_id, "kind": person.kind, "from": str(person.end),
                                              "to": str(new_end), "via": via, "file": str(path)}, actor=actor)
    return person


def find(job: SponsorJob, person_id: str) -> ExtraPerson:
    path = job.config.extra_people_path
    found = next((p for p in ([] if path is None else extra_people.read_extra_people(path, job.config.mapping))
                  if p.person_id == person_id), None)
    if found is None:
        raise UserError(f"no one with id {person_id!r} in the extra-people file")
    return found


def check_link(job: SponsorJob, signer: Signer, token: str, now: datetime) -> tuple[ExtendClaims, ExtraPerson]:
    """The claims of an extend link that may still be used and the person's entry now; LinkRefused otherwise."""
    claims = signer.verify_extend(token)
    job.store.ensure_schema(SCHEMA)
    row = job.store.db.execute("SELECT * FROM extend_links WHERE nonce=?", (claims.nonce,)).fetchone()
    if row is None or row["person_id"] != claims.person_id or row["sponsor"] != claims.sponsor \
            or row["end_date"] != claims.end.isoformat():
        raise LinkRefused("extend-unknown-link", 403, "This extend link is not one this service issued.")
    if row["used_at"] is not None:
        raise LinkRefused("extend-replayed", 409, "This extend link has already been used.")
    if now >= claims.expires:
        raise LinkRefused("extend-expired", 410, "This extend link has expired: the end date has come. Ask the "
                          "IT team (`idlifecycle people extend`).")
    try:
        person = find(job, claims.person_id)
    except UserError:
        raise LinkRefused("extend-gone", 410, "This person is no longer in the list of people outside the "
                          "MIS.") from None
    if person.end != claims.end:
        raise LinkRefused("extend-stale", 409, f"The end date has already been changed (to {person.end:%d %b %Y}) "
                          "since this link was sent.")
    return claims, person


def extend_by_link(job: SponsorJob, signer: Signer, token: str, new_end: date, now: datetime,
                   client: str) -> tuple[ExtraPerson, date]:
    """Spend the link and extend, in one transaction: a refused date leaves the link unspent."""
    claims, _ = check_link(job, signer, token, now)
    with job.store.transaction() as db:
        spent = db.execute("UPDATE extend_links SET used_at=? WHERE nonce=? AND used_at IS NULL",
                           (now.isoformat(), claims.nonce)).rowcount
        if spent != 1:
            raise LinkRefused("extend-replayed", 409, "This extend link has already been used.")
        before = extend(job, claims.person_id, new_end, actor=claims.sponsor, via=f"extend link ({client})")
    return before, new_end
