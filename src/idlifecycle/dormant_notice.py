"""Telling someone of a dormant disable (issue 17), and noticing a hand re-enable of one.

After a night's changes are applied, each dormant disable nobody has been told of yet (the store's
`dormant_disables`, written by the recorder as the disable landed) is told once: an extra person's sponsor
gets one email for all of that person's accounts (to `[report] summary_to` when the sponsor has no email
on the feed, as the end-date warnings do); everyone else's goes in the run summary's "Disabled as dormant".
A disable is marked told only once its mail is sent or its line is in the summary, so a mail that fails
is tried again the next night.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from idlifecycle import sponsors
from idlifecycle.errors import UserError
from idlifecycle.model import Person, Snapshot
from idlifecycle.notify import Mailer

log = logging.getLogger("idlifecycle")


def note_enabled_again(job: sponsors.SponsorJob, snapshots: Mapping[str, Snapshot], actor: str) -> None:
    """Dormant-disabled accounts found enabled tonight (an admin's hand): their grace starts today, audited."""
    for directory, snapshot in snapshots.items():
        enabled = {a.key for a in snapshot.accounts if a.enabled}
        with job.store.transaction():
            for person_id, username in job.store.note_enabled_again(directory, enabled, job.today):
                job.store.audit("dormant-enabled-again", {"directory": directory, "person_id": person_id,
                                                          "username": username, "seen_on": str(job.today)},
                                actor=actor)


def _mail(person: Person, sponsor: Person | None, lines: Sequence[str], fallback: bool) -> tuple[str, str]:
    name = f"{person.first_name} {person.last_name}"
    greeting = (f"The sponsor {person.sponsor} has no email address on the MIS feed, so this comes to you."
                if fallback or sponsor is None else
                f"Dear {sponsor.first_name} {sponsor.last_name},")
    text = (f"{greeting}\n\nThe accounts of {name} ({person.extra_kind}, sponsored by {person.sponsor}) have been "
            "disabled because nobody has signed in to them for a long time:\n\n"
            + "".join(f"  - {line}\n" for line in lines)
            + "\nIf they still need access, ask the IT team to enable the account again; they then have time to "
              "sign in before it is checked again.\n")
    return f"{name}'s accounts were disabled as dormant", text


def tell(job: sponsors.SponsorJob, feed: Sequence[Person], actor: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the summary's "Disabled as dormant" lines, notes on sponsor mails that went elsewhere or not at all)."""
    untold = job.store.dormant_untold()
    if not untold:
        return (), ()
    by_id = {p.person_id: p for p in feed}
    listed: list[str] = []
    notes: list[str] = []
    by_person: dict[str, list[str]] = {}
    for directory, person_id, username, reason in untold:
        person = by_id.get(person_id)
        if person is not None and person.extra_kind is not None:
            by_person.setdefault(person_id, []).append(f"{username} in {directory}: {reason}")
        else:
            listed.append(f"{username}, {directory}, {reason}")
            job.store.mark_dormant_told(person_id)
    mailer = Mailer.from_job(job) if by_person else None
    for person_id, lines in by_person.items():
        notes += _tell_sponsor(job, mailer, by_id[person_id], by_id.get(by_id[person_id].sponsor or ""), lines,
                               actor)
    return tuple(listed), tuple(notes)


def _tell_sponsor(job: sponsors.SponsorJob, mailer: Mailer | None, person: Person, sponsor: Person | None,
                  lines: list[str], actor: str) -> list[str]:
    who = f"{person.display_name or person.person_id} ({person.person_id})"
    if mailer is None:
        return [f"the sponsor {person.sponsor} of {who} was not told of a dormant disable: the job has no [mail] table"]
    to, fallback = sponsors.sponsor_recipients(sponsor, sponsors.summary_addresses(job))
    if not to:
        return [f"the sponsor {person.sponsor} of {who} has no email on the feed and [report] summary_to is empty: "
                "nobody was told of the dormant disable"]
    subject, text = _mail(person, sponsor, lines, fallback)
    try:
        mailer.send(to, subject, text)
    except UserError as error:
        log.warning(json.dumps({"event": "dormant-notice-not-sent", "person_id": person.person_id,
                                "reason": str(error)}))
        return [f"the sponsor of {who} was not told of the dormant disable: {error}"]
    with job.store.transaction():
        job.store.mark_dormant_told(person.person_id)
        job.store.audit("dormant-disable-told", {"person_id": person.person_id, "sponsor": person.sponsor,
                                                 "to": to, "accounts": lines}, actor=actor)
    return [f"the sponsor {person.sponsor} of {who} has no email on the feed: the dormant-disable notice went to "
            f"{', '.join(to)}"] if fallback else []


def kept_until(today: date, days: int) -> date:
    """The last day `people keep-active --days N` keeps a person's accounts from a dormant disable."""
    if days < 1 or days > 366:
        raise UserError(f"--days must be between 1 and 366, not {days}")
    return today + timedelta(days=days)
