"""Getting a new password to its owner: slip sheets for class teachers, email to line managers.

Slips are one PDF per registration group (one cut-out slip per pupil), written 0600 into a
0700 folder and deleted `slip_days` after the day they were written. The file names carry the
date and the group, never a name or a password.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

from anyascii import anyascii
from fpdf import FPDF

from idlifecycle.model import Person

log = logging.getLogger(__name__)

NO_GROUP = "No registration group"
_SLIP_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})_.+\.pdf$")


class Mailer(Protocol):
    def send(self, to: list[str], subject: str, text: str, html: str | None = None) -> None: ...


@dataclass(frozen=True)
class Issued:
    """One password issued in this run, waiting to be delivered."""

    person: Person
    username: str
    password: str = field(repr=False)
    directories: tuple[str, ...]


def _latin1(text: str) -> str:
    # The PDF's built-in fonts cover Latin-1 only; other letters are written in their closest ASCII.
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return str(anyascii(text))
    return text


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9 ._-]+", "-", anyascii(text)).strip(" .-") or "group"


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def slip_sheet(group: str, issued: Sequence[Issued], today: date, school_name: str) -> bytes:
    """A PDF of cut-out slips, five to a page, for one registration group."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=False)
    pdf.set_title(f"New passwords: {_latin1(group)}")
    per_page = 5
    for index, item in enumerate(sorted(issued, key=lambda i: (i.person.last_name, i.person.first_name))):
        if index % per_page == 0:
            pdf.add_page()
            pdf.set_font("Helvetica", "B", 11)
            pdf.cell(0, 8, _latin1(f"{school_name} - {group} - new passwords - {today:%d/%m/%Y}"),
                     new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "", 8)
            pdf.cell(0, 5, "Cut along the lines. Give each pupil only their own slip. Shred any left over.",
                     new_x="LMARGIN", new_y="NEXT")
        top = 25 + (index % per_page) * 53
        pdf.set_draw_color(150)
        pdf.set_dash_pattern(dash=2, gap=2)
        pdf.line(10, top, 200, top)
        pdf.set_dash_pattern()
        pdf.set_xy(14, top + 5)
        pdf.set_font("Helvetica", "B", 14)
        pdf.cell(0, 8, _latin1(item.person.display_name), new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(14)
        pdf.set_font("Helvetica", "", 12)
        pdf.cell(0, 8, f"Username:  {item.username}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(14)
        pdf.set_font("Courier", "B", 16)
        pdf.cell(0, 10, f"Password:  {item.password}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(14)
        pdf.set_font("Helvetica", "", 9)
        pdf.cell(0, 6, "You will choose a new password when you first sign in. Keep it secret.",
                 new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def write_slips(folder: Path, issued: Iterable[Issued], today: date, school_name: str,
                group_of: str | None = None) -> list[Path]:
    """One PDF per registration group (or all under `group_of`); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    groups: dict[str, list[Issued]] = defaultdict(list)
    for item in issued:
        groups[group_of or item.person.registration_group or NO_GROUP].append(item)
    written: list[Path] = []
    for group, items in sorted(groups.items()):
        stem = f"{today.isoformat()}_{_safe_filename(group)}"
        path = folder / f"{stem}.pdf"
        counter = 2
        while path.exists():
            path = folder / f"{stem}-{counter}.pdf"
            counter += 1
        _write_private(path, slip_sheet(group, items, today, school_name))
        written.append(path)
        log.info("password slips for %s (%d) written to %s", group, len(items), path)
    return written


def remove_old_slips(folder: Path, today: date, keep_days: int) -> list[Path]:
    """Delete slip sheets written more than `keep_days` ago (by the date in their name)."""
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    cutoff = today - timedelta(days=keep_days)
    for path in sorted(folder.iterdir()):
        match = _SLIP_NAME.match(path.name)
        if match and date.fromisoformat(match.group(1)) < cutoff:
            path.unlink()
            removed.append(path)
            log.info("removed password slips %s (older than %d days)", path.name, keep_days)
    return removed


def email_line_manager(mailer: Mailer, to: str, item: Issued, school_name: str) -> None:
    person = item.person
    text = (
        f"A new password has been set for {person.display_name} ({item.username}).\n\n"
        f"Username: {item.username}\n"
        f"Password: {item.password}\n\n"
        f"Please give it to {person.first_name} in person or by phone, not by forwarding this email, "
        f"then delete this message. They will be asked to choose their own password when they first "
        f"sign in.\n\n{school_name} IT\n"
    )
    mailer.send([to], f"New password for {person.display_name} ({item.username})", text)
    log.info("new password for %s emailed to their line manager %s", item.username, to)
