"""Dormant accounts through the nightly job (issue 17), against the Graph emulator and a real SMTP server
(aiosmtpd): a teacher who never signs in is disabled as dormant and listed in the run summary mailed to
`[report] summary_to`; a supply teacher's sponsor is emailed once; the teacher enabled again by hand is kept
for dormant_days and then disabled again; `people keep-active` brings him back and is audited.

The emulator stamps createdDateTime with the real clock, so the nights are counted from today.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from idlifecycle.cli import main
from idlifecycle.reports.summary import run_summary
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.access_support import SMTP_PASSWORD, Mailbox, Received, mailbox, smtp_mail_table
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET
from tests.integration.test_entra_job import by_anchor, night, seed
from tests.integration.test_extra_people_extend import SPONSOR_EMAIL, audit, write_sponsors
from tests.integration.test_extra_people_job import supply_school

__all__ = ["mailbox"]
SUMMARY_TO = "it@school.example.org"
TODAY = datetime.now(UTC).date()


def day(n: int) -> date:
    return TODAY + timedelta(days=n)


def school(tmp: Path, emulator: GraphEmulator, mailbox: Mailbox) -> Path:
    job = supply_school(tmp, emulator)
    write_sponsors(tmp)
    mapping = (tmp / "mapping.toml").read_text(encoding="utf-8")
    mapping = mapping.replace("[staff]\n", "[staff]\ndormant_days = 30\n", 1)
    mapping = mapping.replace("[extra.supply]\n", "[extra.supply]\ndormant_days = 30\n", 1)
    (tmp / "mapping.toml").write_text(mapping, encoding="utf-8")
    (tmp / "entra.toml").write_text((tmp / "entra.toml").read_text(encoding="utf-8")
                                    + "sign_in_activity = true\n", encoding="utf-8")
    with job.open("a", encoding="utf-8") as out:
        out.write(smtp_mail_table(mailbox) + f"""
[report]
summary_to = ["{SUMMARY_TO}"]
""")
    return job


@pytest.fixture
def job(make_emulator: Callable[..., GraphEmulator], tmp_path: Path, mailbox: Mailbox,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, GraphEmulator]]:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("IDLIFECYCLE_SMTP_PASSWORD", SMTP_PASSWORD)
    emulator = make_emulator({**seed(), "premium": True})
    yield school(tmp_path, emulator, mailbox), emulator


def users(emulator: GraphEmulator) -> dict[str, dict[str, object]]:
    return {str(u["userPrincipalName"]).split("@")[0]: u for u in emulator.directory.state["users"].values()}


def jane_signs_in(emulator: GraphEmulator, on: date) -> None:
    users(emulator)["jdoe"]["signInActivity"] = {"lastSignInDateTime": f"{on.isoformat()}T08:00:00Z"}


def sponsor_mails(mailbox: Mailbox) -> list[Received]:
    return [m for m in mailbox.messages if SPONSOR_EMAIL in m.recipients and "disabled as dormant" in
            str(m.message["Subject"])]


def summaries_listing(mailbox: Mailbox, line: str) -> list[Received]:
    return [m for m in mailbox.messages if SUMMARY_TO in m.recipients and line in m.text]


def test_dormant_disables_are_told_kept_for_a_hand_re_enable_and_exempted_by_keep_active(
        job: tuple[Path, GraphEmulator], mailbox: Mailbox, capsys: pytest.CaptureFixture[str]) -> None:
    job_file, emulator = job
    assert main(["--today", TODAY.isoformat(), "people", "add", "--job", str(job_file), "--kind", "supply",
                 "--first", "Rose", "--last", "Tyler", "--sponsor", "JDO", "--start", TODAY.isoformat(),
                 "--end", day(90).isoformat()]) == 0
    report, snap = night(job_file, TODAY)
    assert report.status == "ok", report.failures
    karl = users(emulator)["ksmith"]
    assert karl["accountEnabled"] is True and users(emulator)["rtyler"]["accountEnabled"] is True

    jane_signs_in(emulator, day(31))
    report, _ = night(job_file, day(31))  # nobody signed in to Karl's or Rose's new accounts for 30 days
    never = f"never signed in, created {TODAY.isoformat()}"
    assert report.status == "ok", report.failures
    assert report.dormant_disabled == (f"ksmith, entra, {never}",)
    assert users(emulator)["ksmith"]["accountEnabled"] is False
    assert users(emulator)["rtyler"]["accountEnabled"] is False and users(emulator)["jdoe"]["accountEnabled"] is True
    _, text = run_summary("job", report)
    assert f"Disabled as dormant (no sign-in for the kind's dormant_days; `idlifecycle people keep-active` " \
           f"exempts):\n  - ksmith, entra, {never}\n" in text
    assert len(summaries_listing(mailbox, f"  - ksmith, entra, {never}")) == 1  # the summary mail carried it
    [told] = sponsor_mails(mailbox)
    assert told.message["Subject"] == "Rose Tyler's accounts were disabled as dormant"
    assert "Dear Jane Doe," in told.text and f"rtyler in entra: {never}" in told.text
    assert "rtyler" not in "".join(report.dormant_disabled)

    # An admin enables Karl by hand in the portal; he still never signs in.
    emulator.directory.update_user(str(karl["id"]), {"accountEnabled": True})
    for n in (32, 61):  # dormant_days from the first night it was seen enabled again: kept
        jane_signs_in(emulator, day(n))
        report, _ = night(job_file, day(n))
        assert report.status in ("ok", "nothing-to-do"), report.failures
        assert users(emulator)["ksmith"]["accountEnabled"] is True, n
        assert f"entra: ksmith is dormant ({never}) but left enabled until {day(61).isoformat()} (enabled again " \
               "by hand after a dormant disable)" in report.plan.notes
    assert [(e["username"], e["seen_on"]) for e in audit(job_file, "dormant-enabled-again")] == [
        ("ksmith", day(32).isoformat())]
    assert len(sponsor_mails(mailbox)) == 1  # Rose's sponsor was told once, not each night she stays disabled

    jane_signs_in(emulator, day(62))
    report, _ = night(job_file, day(62))  # the grace is over and he has not signed in: disabled again, and said
    assert users(emulator)["ksmith"]["accountEnabled"] is False
    assert report.dormant_disabled == (f"ksmith, entra, {never}",)

    capsys.readouterr()
    assert main(["--today", day(62).isoformat(), "people", "keep-active", "KSM", "--days", "60",
                 "--job", str(job_file)]) == 1
    assert capsys.readouterr().err.strip().startswith("idlifecycle: say why with --why")
    assert main(["--today", day(62).isoformat(), "people", "keep-active", "NOBODY", "--days", "60", "--why", "x",
                 "--job", str(job_file)]) == 1
    assert "no one with id 'NOBODY'" in capsys.readouterr().err
    assert main(["--today", day(62).isoformat(), "people", "keep-active", "KSM", "--days", "60",
                 "--why", "secondment, back in spring", "--job", str(job_file)]) == 0
    assert f"KSM: accounts not disabled as dormant until {day(122).isoformat()}" in capsys.readouterr().out
    [kept] = audit(job_file, "dormant-keep-active")
    assert (kept["person_id"], kept["until"], kept["why"]) == ("KSM", day(122).isoformat(),
                                                               "secondment, back in spring")
    for n in (63, 100):
        jane_signs_in(emulator, day(n))
        report, snap = night(job_file, day(n))
        assert report.status in ("ok", "nothing-to-do"), report.failures
        assert by_anchor(snap)["KSM"].enabled, n  # enabled again by the first sync after keep-active
    assert users(emulator)["rtyler"]["accountEnabled"] is False
    assert len(sponsor_mails(mailbox)) == 1
