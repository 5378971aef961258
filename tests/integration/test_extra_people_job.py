"""A supply teacher the MIS does not know: added with `people add`, provisioned by the nightly job in the Graph
emulator with the [extra.supply] rules, kept out of the feed's counts, and disabled on the end date.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.cli import main
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, STAFF
from tests.integration.test_entra_job import AMY, by_anchor, members, night, seed, write_school

SUPPLY = f"""
[extra.supply]
base = "staff"
username = "{{first_initial}}{{surname}}"
domain = "{STAFF}"
groups = ["All Staff", "Supply Staff"]
attributes = {{ jobTitle = "Supply Teacher", employeeType = "supply" }}
max_days = 95
"""


def supply_school(tmp: Path, emulator: GraphEmulator) -> Path:
    job = write_school(tmp, emulator, [AMY])
    with (tmp / "mapping.toml").open("a", encoding="utf-8") as mapping:
        mapping.write(SUPPLY)
    text = job.read_text(encoding="utf-8")
    job.write_text(text.replace("[job]\n", '[job]\nextra_people = "extra-people.toml"\n', 1), encoding="utf-8")
    return job


def people_add(job: Path, *args: str, today: str = "2026-09-01") -> int:
    return main(["--today", today, "people", "add", "--job", str(job), "--kind", "supply", "--first", "Rose",
                 "--last", "Tyler", *args])


def test_a_supply_teacher_is_added_provisioned_and_disabled_on_her_end_date(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job = supply_school(tmp_path, emulator)
    extra_file = tmp_path / "extra-people.toml"

    # Refused, one line each, nothing written: no end date, too long for a supply, a sponsor not on the staff feed.
    assert people_add(job, "--sponsor", "JDO", "--start", "2026-09-07") == 1
    assert capsys.readouterr().err.strip() == ("idlifecycle: an end date is required for a supply (--end YYYY-MM-DD):"
                                               " nobody outside the MIS is given an account without one")
    assert people_add(job, "--sponsor", "JDO", "--start", "2026-09-07", "--end", "2027-01-07") == 1
    assert "at most 95 days" in capsys.readouterr().err
    assert people_add(job, "--sponsor", "000201", "--start", "2026-09-07", "--end", "2026-10-23") == 1
    assert capsys.readouterr().err.strip() == "idlifecycle: sponsor 000201 is not a member of staff"
    assert people_add(job, "--sponsor", "NOPE", "--start", "2026-09-07", "--end", "2026-10-23") == 1
    assert "not on the staff feed" in capsys.readouterr().err
    assert not extra_file.exists()

    assert people_add(job, "--sponsor", "JDO", "--start", "2026-09-07", "--end", "2026-10-23") == 0
    assert "accounts follow on the next sync" in capsys.readouterr().out
    assert stat.S_IMODE(extra_file.stat().st_mode) == 0o600
    assert main(["--today", "2026-09-01", "people", "list", "--job", str(job)]) == 0
    listed = capsys.readouterr().out
    assert "supply" in listed and "Rose Tyler" in listed and "sponsor JDO" in listed and "2026-10-23" in listed

    # Before her start date (create_days_before_start defaults to 0 for extra kinds) she has no account.
    report, snap = night(job, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    assert not [a for a in snap.accounts if (a.anchor or "").startswith("X-")]

    # Her first day: her account is made with the supply rules; the feed still counts its own two people.
    report, snap = night(job, date(2026, 9, 7))
    assert report.status == "ok", report.failures
    assert report.plan.people_count == 2
    rose = next(a for anchor, a in by_anchor(snap).items() if anchor.startswith("X-"))
    assert rose.enabled and rose.login == f"rtyler@{STAFF}"
    assert rose.attributes.get("employeeType") == "supply"
    assert rose.key in members(snap, "Supply Staff") and rose.key in members(snap, "All Staff")

    # The day before her end date nothing changes; on it her account is disabled, like a leaver's.
    report, snap = night(job, date(2026, 10, 22))
    assert by_anchor(snap)[rose.anchor or ""].enabled
    report, snap = night(job, date(2026, 10, 23))
    assert report.status == "ok", report.failures
    assert not by_anchor(snap)[rose.anchor or ""].enabled
    assert by_anchor(snap)["JDO"].enabled
