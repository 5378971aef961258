"""People outside the MIS (supply staff, governors, volunteers …): the extra-people file, read and appended to.

The file ([job] extra_people, e.g. mappings/extra-people.toml) is the one source of truth: a reviewable
text file beside the mappings, in the school's configuration backup, that `idlifecycle people add`
appends to. Each `[[person]]` has a kind ([extra.<kind>] in the mapping), a sponsor (a member of staff on
the feed), a start and a required end date (`people add` holds it to the kind's `max_days` after the
start; the access review flags an entry past it). They become Person values with `extra_kind` and
`sponsor` set and `leave_date` = end date, so the planner provisions them and disables them at the end
date like any leaver.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from idlifecycle.errors import UserError
from idlifecycle.mapping import MappingRules, Status, status
from idlifecycle.model import Kind, Person

ID_PREFIX = "X-"
"""MIS ids are admission numbers, staff codes and sourcedIds; none the feeds accept starts "X-" and eight
hex digits, and a clash is refused anyway (`merge`)."""
_ID = re.compile(r"^X-[0-9A-F]{8}$")
_FIELDS = frozenset({"id", "kind", "first", "last", "sponsor", "start", "end", "added_by", "added_at"})
HEADER = ("# People outside the MIS, kept by `idlifecycle people add` (edit with care: each run reads it).\n"
          "# kind names an [extra.<kind>] table of the mapping; end is required.\n")


@dataclass(frozen=True)
class ExtraPerson:
    person_id: str
    kind: str
    first: str
    last: str
    sponsor: str
    start: date
    end: date
    added_by: str = ""
    source: str = ""

    def to_person(self, base: Kind) -> Person:
        return Person(person_id=self.person_id, kind=base, legal_first_name=self.first, last_name=self.last,
                      start_date=self.start, leave_date=self.end, source=self.source,
                      extra_kind=self.kind, sponsor=self.sponsor)


def check_dates(kind: str, start: date, end: date | None, rules: MappingRules, *, maximum: bool = True) -> None:
    """Refuses an end date that is missing, before the start or (with `maximum`) past the kind's maximum length."""
    if kind not in rules.extra:
        known = ", ".join(sorted(rules.extra)) or "none are configured ([extra.<kind>] in the mapping)"
        raise UserError(f"unknown kind of extra person {kind!r}; known kinds: {known}")
    if end is None:
        raise UserError(f"an end date is required for a {kind} (--end YYYY-MM-DD): nobody outside the MIS is "
                        "given an account without one")
    if end < start:
        raise UserError(f"the end date {end} is before the start {start}")
    max_days = rules.extra[kind].max_days
    if maximum and max_days is not None and (end - start).days > max_days:
        raise UserError(f"the end date {end} is {(end - start).days} days after the start; a {kind} may be given "
                        f"at most {max_days} days (max_days in [extra.{kind}])")


def check_sponsor(sponsor: str, feed: Iterable[Person], rules: MappingRules, today: date) -> None:
    """The sponsor must be a current member of staff in the MIS feed (not another extra person)."""
    for person in feed:
        if person.person_id == sponsor and person.extra_kind is None:
            if person.kind is not Kind.STAFF:
                raise UserError(f"sponsor {sponsor} is not a member of staff")
            if status(person, rules.kinds[Kind.STAFF], today) is Status.LEFT:
                raise UserError(f"sponsor {sponsor} has left (left on {person.leave_date})")
            return
    raise UserError(f"sponsor {sponsor} is not on the staff feed; a sponsor is a current member of staff "
                    "(their MIS staff id)")


def _entry(raw: Mapping[str, Any], where: str, rules: MappingRules) -> ExtraPerson:
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}")
    for name in ("id", "kind", "first", "last", "sponsor"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise UserError(f"{where}: {name} is required (text)")
    for name in ("start", "end"):
        if name in raw and (not isinstance(raw[name], date) or isinstance(raw[name], datetime)):
            raise UserError(f"{where}: {name} must be a date like 2026-09-01")
    if "start" not in raw:
        raise UserError(f"{where}: start is required")
    if not _ID.match(raw["id"]):
        raise UserError(f"{where}: id {raw['id']!r} is not an extra person's id (X- and eight hex digits)")
    try:
        # The maximum is held at `people add`; an entry past it (a hand edit, max_days lowered since) still
        # ends on its end date, and the access review lists it under Exceptions for someone to decide.
        check_dates(raw["kind"], raw["start"], raw.get("end"), rules, maximum=False)
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    return ExtraPerson(person_id=raw["id"], kind=raw["kind"], first=raw["first"].strip(), last=raw["last"].strip(),
                       sponsor=raw["sponsor"].strip(), start=raw["start"], end=raw["end"],
                       added_by=str(raw.get("added_by", "")), source=where)


def read_extra_people(path: Path, rules: MappingRules) -> list[ExtraPerson]:
    """Every entry of the file, checked; a missing file is nobody. One bad entry stops the run: a typo must
    not quietly leave someone's account open past their end date."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not readable TOML: {error}") from None
    return read_text(text, str(path), rules)


def read_text(text: str, path: str, rules: MappingRules) -> list[ExtraPerson]:
    """The entries of an extra-people file's text, checked as `read_extra_people` does."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not readable TOML: {error}") from None
    entries = data.get("person", [])
    if set(data) - {"person"} or not isinstance(entries, list):
        raise UserError(f"{path}: only [[person]] entries belong in this file")
    people = [_entry(raw, f"{path}: person {n}", rules) for n, raw in enumerate(entries, start=1)]
    ids = [p.person_id for p in people]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"{path}: id {twice[0]} is given to two people")
    return people


def merge(feed: Sequence[Person], extra: Sequence[ExtraPerson], rules: MappingRules) -> tuple[Person, ...]:
    """The feed's people followed by the extra people; an id both hold stops the run (nothing is done to the
    wrong person)."""
    feed_ids = {p.person_id for p in feed}
    clash = next((e.person_id for e in extra if e.person_id in feed_ids), None)
    if clash is not None:
        raise UserError(f"extra person {clash} has the same id as someone in the MIS feed; nothing was changed")
    return tuple(feed) + tuple(e.to_person(rules.extra_base[e.kind]) for e in extra)


def new_id(taken: Iterable[str]) -> str:
    used = set(taken)
    while True:
        candidate = ID_PREFIX + secrets.token_hex(4).upper()
        if candidate not in used:
            return candidate


def _toml_text(value: str) -> str:
    # A TOML basic string: backslash, quote and control characters escaped (names are plain text).
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped) + '"'


def entry_text(person: ExtraPerson, added_at: datetime) -> str:
    return (f"\n[[person]]\nid = {_toml_text(person.person_id)}\nkind = {_toml_text(person.kind)}\n"
            f"first = {_toml_text(person.first)}\nlast = {_toml_text(person.last)}\n"
            f"sponsor = {_toml_text(person.sponsor)}\nstart = {person.start.isoformat()}\n"
            f"end = {person.end.isoformat()}\nadded_by = {_toml_text(person.added_by)}\n"
            f"added_at = {added_at.strftime('%Y-%m-%dT%H:%M:%SZ')}\n")


@contextmanager
def _editing(path: Path) -> Iterator[None]:
    """Held while the file is read and written back: `people add` and an extend (the web page, `people
    extend`) at the same moment would otherwise each write their own copy and one change would be lost."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def append(path: Path, person: ExtraPerson, added_at: datetime) -> None:
    """Adds one entry, keeping the file's text (comments included); written atomically (`_write`)."""
    with _editing(path):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = HEADER
        _write(path, text + entry_text(person, added_at))


def _write(path: Path, text: str) -> None:
    """Written whole to a 0600 file beside it and renamed over it, so a crash leaves the old file or the new
    one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_TABLE = re.compile(r"^\s*\[")
_END = re.compile(r"^(\s*end\s*=\s*)(\d{4}-\d{2}-\d{2})(.*)$")


def with_end(text: str, person_id: str, end: date) -> str:
    """The file's text with one entry's `end = …` line changed and every other line (comments included) as it
    was; UserError when the entry or its end line cannot be found exactly once."""
    lines = text.splitlines(keepends=True)
    starts = [n for n, line in enumerate(lines) if _TABLE.match(line)] + [len(lines)]
    id_line = re.compile(r'^\s*id\s*=\s*"' + re.escape(person_id) + r'"\s*(#.*)?$')
    blocks = [(a, b) for a, b in pairwise(starts)
              if lines[a].strip().startswith("[[person]]") and any(id_line.match(x) for x in lines[a:b])]
    ends = [n for a, b in blocks for n in range(a, b) if _END.match(lines[n].rstrip("\r\n"))]
    if len(blocks) != 1 or len(ends) != 1:
        raise UserError(f"{person_id}: its entry's end line could not be found exactly once in the "
                        "extra-people file; change it by hand")
    line = lines[ends[0]]
    body = line.rstrip("\r\n")
    match = _END.match(body)
    assert match is not None
    lines[ends[0]] = f"{match.group(1)}{end.isoformat()}{match.group(3)}{line[len(body):]}"
    return "".join(lines)


def set_end(path: Path, person_id: str, end: date, rules: MappingRules) -> None:
    """Changes one entry's end date in the file, atomically, keeping the rest of its text; the new text is
    read back first, so a file that would not say exactly that is never written."""
    with _editing(path):
        text = path.read_text(encoding="utf-8")
        changed = with_end(text, person_id, end)
        before = {p.person_id: p for p in read_text(text, str(path), rules)}
        after = {p.person_id: p for p in read_text(changed, str(path), rules)}
        others_before = {k: v for k, v in before.items() if k != person_id}
        if after.get(person_id) is None or after[person_id].end != end or \
                {k: v for k, v in after.items() if k != person_id} != others_before:
            raise UserError(f"{path}: changing {person_id}'s end date would change more than that; "
                            "change it by hand")
        _write(path, changed)


def review_note(person: Person) -> str:
    """What the access review adds to an extra person's status: who vouches for them and when they end."""
    if person.extra_kind is None or person.leave_date is None:
        return ""
    return f"; outside the MIS, sponsor {person.sponsor}, ends {person.leave_date.strftime('%d/%m/%Y')}"


def past_maximum(person: Person, max_days: Mapping[str, int]) -> str:
    """Why an extra person's end date is further from their start than their kind allows ("" when it is
    not): `people add` refuses that, so someone went round it (a hand edit, or max_days lowered since)."""
    limit = max_days.get(person.extra_kind or "")
    if limit is None or person.start_date is None or person.leave_date is None:
        return ""
    days = (person.leave_date - person.start_date).days
    if days <= limit:
        return ""
    return (f"{person.extra_kind} from {person.start_date.strftime('%d/%m/%Y')} to "
            f"{person.leave_date.strftime('%d/%m/%Y')}: {days} days, over the {limit} a {person.extra_kind} "
            f"may have (sponsor {person.sponsor})")


__all__ = [
    "ExtraPerson", "append", "check_dates", "check_sponsor", "merge", "new_id", "past_maximum", "read_extra_people",
    "read_text", "review_note", "set_end", "with_end",
]
