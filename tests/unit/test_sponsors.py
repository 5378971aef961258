"""The pure parts of telling sponsors and extending end dates: who is due a warning, the extend token's
purpose, the one-line rewrite of the extra-people file (the night, the mail, the page and the CLI are in
tests/integration/test_extra_people_extend.py)."""

from __future__ import annotations

import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from idlifecycle import extra_people, sponsors
from idlifecycle.access.tokens import LinkRefused, Signer
from idlifecycle.errors import UserError
from tests.factories import school_rules
from tests.unit.test_extra_people import ENTRY, rose

RULES = school_rules()
KEY = "k" * 40


def test_a_sponsor_is_due_a_warning_within_the_kinds_days_once_per_end_date() -> None:
    supply = rose(end=date(2026, 10, 23))  # [extra.supply]: the default 7 days
    governor = rose(person_id="X-00000002", kind="governor", end=date(2026, 10, 23))  # 30 days in school.toml
    assert RULES.extra["supply"].warn_days_before_end == 7
    assert sponsors.due([supply, governor], RULES, date(2026, 9, 22), set()) == []
    assert sponsors.due([supply, governor], RULES, date(2026, 9, 23), set()) == [governor]
    assert sponsors.due([supply, governor], RULES, date(2026, 10, 16), set()) == [supply, governor]
    assert sponsors.due([supply], RULES, date(2026, 10, 16), {(supply.person_id, supply.end)}) == []
    # Extended: the new end date has not been warned about, so it is due again in its own week.
    later = rose(end=date(2026, 11, 6))
    assert sponsors.due([later], RULES, date(2026, 10, 30), {(supply.person_id, supply.end)}) == [later]
    # On the end date the account goes tonight: a warning then would be too late to act on.
    assert sponsors.due([supply], RULES, date(2026, 10, 23), set()) == []


def test_an_extend_token_and_an_approval_token_never_stand_in_for_each_other() -> None:
    signer = Signer(KEY)
    expires = datetime(2026, 10, 23, tzinfo=UTC)
    token, claims = signer.mint_extend("X-0A1B2C3D", "S001", date(2026, 10, 23), expires)
    assert signer.verify_extend(token) == claims
    approval, _ = signer.mint(7, "siro@example.org", expires)
    with pytest.raises(LinkRefused) as refused:
        signer.verify_extend(approval)
    assert refused.value.reason == "extend-forged"
    with pytest.raises(LinkRefused):
        signer.verify(token)
    # The same payload under the other prefix: the keys differ, so the signature does not hold either way.
    with pytest.raises(LinkRefused) as refused:
        signer.verify("v1." + token.split(".", 1)[1])
    assert refused.value.reason == "forged-or-altered"
    with pytest.raises(LinkRefused) as refused:
        signer.verify_extend("x1." + approval.split(".", 1)[1])
    assert refused.value.reason == "extend-forged-or-altered"
    with pytest.raises(LinkRefused):
        Signer("x" * 40).verify_extend(token)  # another school's key


def test_the_end_line_is_rewritten_and_every_other_line_kept(tmp_path: Path) -> None:
    path = tmp_path / "extra-people.toml"
    other = ENTRY.replace("X-0A1B2C3D", "X-00000002").replace("Rose", "Sam")
    text = "# kept: a comment\n" + ENTRY.replace("end = 2026-10-23", "end = 2026-10-23  # half term") + other
    path.write_text(text, encoding="utf-8")
    extra_people.set_end(path, "X-0A1B2C3D", date(2026, 12, 1), RULES)
    after = path.read_text(encoding="utf-8")
    assert after == text.replace("end = 2026-10-23  # half term", "end = 2026-12-01  # half term")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    people = {p.person_id: p.end for p in extra_people.read_extra_people(path, RULES)}
    assert people == {"X-0A1B2C3D": date(2026, 12, 1), "X-00000002": date(2026, 10, 23)}
    with pytest.raises(UserError, match="could not be found exactly once"):
        extra_people.with_end(after, "X-FFFFFFFF", date(2026, 12, 1))


def test_the_warning_names_the_person_the_end_date_and_the_latest_date_allowed() -> None:
    person = rose()
    warning = sponsors.Warning(person, "jane@example.org", "https://idl.example/extend?t=x1.a.b")
    subject, text, html = sponsors.warning_email(warning, "Jane Doe", False, RULES)
    assert subject == "Rose Tyler's access ends on 23 Oct 2026"
    assert text.startswith("Dear Jane Doe,")
    assert f"at the latest to {person.start + timedelta(days=95):%d %b %Y}" in text
    assert "https://idl.example/extend?t=x1.a.b" in text and 'href="https://idl.example/extend?t=x1.a.b"' in html
    _, fallback, _ = sponsors.warning_email(warning, "", True, RULES)
    assert fallback.startswith("The sponsor S001 has no email address on the MIS feed")
