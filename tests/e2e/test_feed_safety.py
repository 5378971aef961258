"""A school's bad export never disables someone on roll (issue 11), through the real command line.

Each test makes a good night first, then the export goes wrong the way real ones do, and checks the
directory (the SQLite test double), the output, the audit log and the exit code.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.e2e.school import PUPIL_HEADER, write_job, write_pupils
from tests.e2e.test_cli import idl, school
from tests.factories import ROOT

SAMPLE = ROOT / "src" / "idlifecycle" / "sandbox" / "sample_school"


def directory(tmp: Path) -> FileDirectory:
    return FileDirectory("ad", tmp / "directory.sqlite")


def by_anchor(tmp: Path) -> dict[str, tuple[bool, str, frozenset[str]]]:
    """anchor -> (enabled, container, groups) of every managed account."""
    found = directory(tmp)
    groups: dict[str, set[str]] = {}
    for name in {g.name for g in found.snapshot().groups}:
        for key in found.members(name):
            groups.setdefault(key, set()).add(name)
    return {a.anchor or "": (a.enabled, a.container, frozenset(groups.get(a.key, ()))) for a in found.accounts()}


def rewrite(path: Path, change) -> None:
    """Rewrites a CSV row by row through `change(header, rows) -> (header, rows)`."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    header, body = change(rows[0], rows[1:])
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body])


def audit_events(tmp: Path) -> list[str]:
    store = Store(tmp / "state" / "idlifecycle.db")
    try:
        return [entry.event for entry in store.audit_entries()]
    finally:
        store.close()


SURNAME = PUPIL_HEADER.index("Legal Surname")
ADNO = PUPIL_HEADER.index("Adno")


def blank_surname(header, rows):
    rows[4][SURNAME] = ""
    return header, rows


def duplicate_adno(header, rows):
    return header, [*rows, [rows[4][ADNO], "", "Someone", "", "Else", "8", "8A", "01/09/2020", ""]]


@pytest.mark.parametrize("corrupt", [blank_surname, duplicate_adno], ids=["blank surname", "duplicate Adno"])
def test_a_typo_holds_the_pupil_who_keeps_their_account_and_it_is_shown_everywhere(tmp_path, corrupt):
    school(tmp_path, pupils=100)  # one bad row in 100 is under the 2 % that stops the whole run
    assert idl(tmp_path, "sync").returncode == 0
    before = by_anchor(tmp_path)
    assert before["000005"][0] and "Reg 7A" in before["000005"][2]
    username = next(a.username for a in directory(tmp_path).accounts() if a.anchor == "000005")
    rewrite(tmp_path / "pupils.csv", corrupt)

    planned = idl(tmp_path, "plan", "--out", "plan.json")
    assert planned.returncode == 3, planned.stderr
    assert "Refused feed rows (" in planned.stdout and "pupils.csv:6: " in planned.stdout
    assert "Held (1): nothing is created, changed, disabled or removed for them this run" in planned.stdout
    assert f"000005: left as they are (ad {username})" in planned.stdout
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["held"][0].startswith("000005: left as they are")
    assert any(row.startswith(f"{tmp_path / 'pupils.csv'}:6: ") for row in saved["rejected_rows"])
    assert not [c for c in saved["changes"] if c["person_id"] == "000005"]

    synced = idl(tmp_path, "--log-format", "json", "sync")
    assert synced.returncode == 3, synced.stderr
    assert by_anchor(tmp_path) == before, "the held pupil (and everyone else) is exactly as before"
    events = [json.loads(line) for line in synced.stderr.splitlines() if line.startswith("{")]
    refused = [e for e in events if e.get("event") == "feed-row-refused"]
    assert refused and all(e["person_id"] == "000005" for e in refused)
    assert {"feed-rows-refused", "people-held"} <= set(audit_events(tmp_path))

    write_pupils(tmp_path / "pupils.csv", 100)  # the office fixes the MIS
    assert idl(tmp_path, "sync").returncode == 0
    assert by_anchor(tmp_path) == before


def test_a_renamed_registration_column_stops_the_run_naming_it(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    before = by_anchor(tmp_path)
    rewrite(tmp_path / "pupils.csv",
            lambda header, rows: ([("Registration" if h == "Reg Group" else h) for h in header], rows))
    result = idl(tmp_path, "sync")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "pupils.csv: no column for registration_group, which the mapping needs for pupil accounts" in result.stderr
    assert by_anchor(tmp_path) == before


def test_a_renamed_leaving_date_column_stops_the_run_instead_of_keeping_every_leaver(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    rewrite(tmp_path / "pupils.csv",
            lambda header, rows: ([("Leave Dt" if h == "Leaving Date" else h) for h in header], rows))
    result = idl(tmp_path, "sync")
    assert result.returncode == 1
    assert "no column for leave_date" in result.stderr


def test_a_column_read_on_the_last_good_run_and_gone_now_stops_the_run(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    upn = PUPIL_HEADER.index("UPN")
    rewrite(tmp_path / "pupils.csv",
            lambda header, rows: ([h for i, h in enumerate(header) if i != upn],
                                  [[v for i, v in enumerate(r) if i != upn] for r in rows]))
    result = idl(tmp_path, "sync")
    assert result.returncode == 1
    assert "the column for upn was read on the last good run and is missing now" in result.stderr


def test_an_export_whose_leading_zeros_were_stripped_stops_naming_the_cause(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    before = by_anchor(tmp_path)
    rewrite(tmp_path / "pupils.csv",
            lambda header, rows: (header, [[r[0].lstrip("0"), *r[1:]] for r in rows]))
    result = idl(tmp_path, "sync")
    assert result.returncode == 1
    assert "the export seems to have lost leading zeros: 000001 in the store, 1 in the feed" in result.stderr
    assert by_anchor(tmp_path) == before


def sample_school(tmp: Path) -> None:
    shutil.copy(SAMPLE / "pupils.csv", tmp / "pupils.csv")
    shutil.copy(SAMPLE / "staff.csv", tmp / "staff.csv")
    write_job(tmp)


def test_the_sample_school_losing_its_reception_class_from_the_export_stops_the_run(tmp_path):
    sample_school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    before = by_anchor(tmp_path)
    rewrite(tmp_path / "pupils.csv",
            lambda header, rows: (header, [r for r in rows if r[header.index("Year")] != "Reception"]))
    result = idl(tmp_path, "sync")
    # 25 of 353 accounts: under both the count and the percentage of the destructive guard.
    assert result.returncode == 2, result.stderr
    assert ("year group Reception: 25 on the last good run, none now (0 reached their leaving date, 25 are "
            "missing from the feed)") in result.stderr
    assert by_anchor(tmp_path) == before


def test_the_july_leavers_stop_the_run_on_their_leaving_day_until_a_person_allows_it(tmp_path):
    sample_school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0

    def year_11_leaves(header, rows):
        year, leaving = header.index("Year"), header.index("Leaving Date")
        return header, [[*r[:leaving], "22/11/2026", *r[leaving + 1:]] if r[year] == "Year 11" else r for r in rows]

    rewrite(tmp_path / "pupils.csv", year_11_leaves)
    on_roll = sum(enabled for enabled, _, _ in by_anchor(tmp_path).values())
    stopped = idl(tmp_path, "sync")
    # 25 (the sample's other 5 in Year 11 left earlier) of 353: under both limits of the destructive guard.
    assert stopped.returncode == 2, stopped.stderr
    assert ("year group Year 11: 25 on the last good run, none now (25 reached their leaving date, 0 are missing "
            "from the feed)") in stopped.stderr
    allowed = idl(tmp_path, "sync", "--allow-destructive", "25")
    assert allowed.returncode == 0, allowed.stderr
    assert sum(enabled for enabled, _, _ in by_anchor(tmp_path).values()) == on_roll - 25
    # The next night starts from the allowed run: Year 11 is gone and nothing stops it.
    assert idl(tmp_path, "sync").returncode == 0


def test_a_registration_group_renamed_outside_the_rollover_stops_the_run(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    reg = PUPIL_HEADER.index("Reg Group")
    rewrite(tmp_path / "pupils.csv",
            lambda header, rows: (header, [[*r[:reg], "7Z" if r[reg] == "7A" else r[reg], *r[reg + 1:]]
                                           for r in rows]))
    result = idl(tmp_path, "sync")
    assert result.returncode == 2
    assert "registration group 7A: 8 on the last good run, none now" in result.stderr



def test_a_300_character_registration_group_is_refused_at_feed_time_and_nothing_half_done(tmp_path):
    school(tmp_path, pupils=100)
    reg = PUPIL_HEADER.index("Reg Group")

    def long_reg(header, rows):
        rows[9][reg] = "R" * 300
        return header, rows

    rewrite(tmp_path / "pupils.csv", long_reg)
    checked = idl(tmp_path, "feed", "check")
    assert checked.returncode == 0, checked.stdout
    assert "pupils.csv:11: Reg Group: is 300 characters long; a registration group may have at most 64" \
        in checked.stdout
    synced = idl(tmp_path, "sync")
    assert synced.returncode == 3, synced.stderr
    assert "Traceback" not in synced.stderr
    assert "000010: left as they are (no account yet, none created)" in synced.stdout
    anchors = by_anchor(tmp_path)
    assert "000010" not in anchors and len(anchors) == 101
