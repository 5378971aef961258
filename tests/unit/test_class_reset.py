"""Teachers reset their own pupils' passwords (passwords/class_reset.py): who may reset whom, one test per
refusal, the audit, the hand-over, the rate limit kept in SQLite.

A real job (SQLite store, MIS CSV feed whose staff report has a tutor group column) over two test-double
directories (tests/doubles.py, each a directory in a SQLite file), as tests/unit/test_passwords_reset.py.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.errors import ConfigError, UserError
from idlifecycle.job import Job, open_job
from idlifecycle.model import Kind, Person, Plan
from idlifecycle.passwords.class_reset import (
    ClassResetOutcome,
    ClassResetSettings,
    Teacher,
    class_lists,
    may_reset,
    refusal,
    reset_pupils,
    slips_html,
    slips_text,
    teacher_of,
)
from idlifecycle.passwords.history import PasswordHistory
from idlifecycle.reports.class_resets_sheet import class_resets_sheet
from idlifecycle.reports.summary import run_summary
from idlifecycle.run_report import RunReport
from tests import jobfiles
from tests.doubles import FileDirectory
from tests.e2e.school import write_pupils
from tests.factories import ROOT, account

TODAY = date(2026, 11, 23)
FROM = "192.0.2.10"
PASSWORDS = {"school_name": "Oakfield Academy", "pupil": {"min_length": 10, "style": "memorable"},
             "staff": {"min_length": 12, "delivery": "email"}, "line_managers": {"fallback": "office@example.org"}}
"""Pupils 000001 and 000006 are in 8A (write_pupils), 000002 in 9A, 000003 in 10A."""


@dataclass(frozen=True)
class SignedIn:
    """What the web sign-in will hand over (`idlifecycle.web.signin.SignedIn`), as far as a reset reads it."""

    username: str
    name: str


JANE = SignedIn("jdoe@staff.example.sch.uk", "Jane Doe")
"""Teaches 8A: the staff report's tutor group column."""
AL = SignedIn("abell", "Al Bell")
"""Teaches 9A through the job's [teaching] table."""
OLU = SignedIn("OFF", "Olu Fisher")
"""The office: a password admin."""


def school(tmp: Path, sections: dict[str, Any] | None = None) -> Path:
    write_pupils(tmp / "pupils.csv", 6)
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([
            ["Staff Code", "Forename", "Surname", "Role", "Start Date", "End Date", "Tutor Group"],
            ["JDO", "Jane", "Doe", "Teacher", "01/09/2019", "", "8A"],
            ["ABE", "Al", "Bell", "Teacher", "01/09/2019", "", ""],
            ["OFF", "Olu", "Fisher", "Office Manager", "01/09/2019", "", ""]])
    (tmp / "connectors").mkdir(exist_ok=True)
    for name in ("ad", "google"):
        jobfiles.write_connector(tmp / "connectors" / f"{name}.toml", name, "tests.doubles:FileDirectory",
                                 {"path": str(tmp / f"{name}.sqlite")})
    tables = {"passwords": PASSWORDS, "teaching": {"9A": ["abell"]},
              "class_resets": {"password_admins": ["off"], "per_hour": 4}, **(sections or {})}
    return jobfiles.write_job(tmp / "job.toml", connectors=["connectors/ad.toml", "connectors/google.toml"],
                              mappings=[ROOT / "mappings" / "school.toml"], guards={}, sections=tables)


def directory(tmp: Path, name: str) -> FileDirectory:
    return FileDirectory(name, tmp / f"{name}.sqlite")


def seed(tmp: Path) -> None:
    for name in ("ad", "google"):
        for i in range(1, 7):
            directory(tmp, name).put(account(f"{name}-p{i}", f"20pnumber{i}", anchor=f"{i:06d}", directory=name))
        for code, username in (("JDO", "jdoe"), ("ABE", "abell"), ("OFF", "ofisher")):
            directory(tmp, name).put(account(f"{name}-{code}", username, anchor=code, directory=name,
                                             domain="staff.example.sch.uk", container="Staff"))


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    seed(tmp_path)
    with open_job(school(tmp_path), today=TODAY) as opened:
        yield opened


def reset(job: Job, actor: SignedIn, *pupils: str, group: str | None = None) -> ClassResetOutcome:
    with job.open_connectors() as connectors:
        return reset_pupils(job, connectors, actor, pupils=pupils, group=group, from_address=FROM)


def password_writes(tmp: Path) -> list[tuple[str, str, str]]:
    return [w for name in ("ad", "google") for w in directory(tmp, name).writes() if w[1] == "set-password"]


def events(job: Job, event: str) -> list[dict[str, Any]]:
    return [e.data for e in job.store.audit_entries() if e.event == event]


def sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


# --- what it does ---------------------------------------------------------------------------------

def test_a_teacher_resets_a_pupil_of_her_tutor_group_in_every_directory_with_one_password(tmp_path: Path,
                                                                                          job: Job) -> None:
    outcome = reset(job, JANE, "000001")

    [slip] = outcome.slips
    assert (slip.pupil.person_id, slip.username, slip.set_in, outcome.failed) == (
        "000001", "20pnumber1", ("ad", "google"), ())
    for name in ("ad", "google"):
        assert directory(tmp_path, name).current_password_hash(f"{name}-p1") == sha(slip.password)
        assert next(a for a in directory(tmp_path, name).accounts() if a.key == f"{name}-p1").must_change_password
    assert len(password_writes(tmp_path)) == 2, "nobody else's"
    assert directory(tmp_path, "ad").password_hashes("ad-p6") == []
    assert PasswordHistory(job.store).count("000001") == 1, "the night's issuer: its history has it"
    [done] = events(job, "class-reset")
    assert done == {"teacher": "JDO", "teacher_name": "Jane Doe", "pupil_id": "000001", "username": "20pnumber1",
                    "directories": ["ad", "google"], "from": FROM, "operator": ""}
    [delivered] = events(job, "password-delivered")
    assert (delivered["method"], delivered["to"]) == ("shown", f"{JANE.username} ({FROM})")
    assert job.store.owed_passwords() == [], "shown to the teacher: owed no more, the night sets no other"
    audit_text = str([e.data for e in job.store.audit_entries()])
    assert slip.password not in audit_text and slip.password not in repr(outcome)
    assert [(r.teacher, r.pupil_id, r.from_address) for r in job.store.class_resets()] == [("JDO", "000001", FROM)]


def test_a_whole_group_is_reset_at_once_and_the_slips_name_each_pupil(job: Job) -> None:
    outcome = reset(job, JANE, group="8A")
    assert [s.pupil.person_id for s in outcome.slips] == ["000001", "000006"]
    assert len({s.password for s in outcome.slips}) == 2
    text = slips_text(outcome, "Oakfield Academy")
    assert all(f"Password: {s.password}" in text and f"Username: {s.username}" in text for s in outcome.slips)
    html = slips_html(outcome, "Oakfield Academy")
    assert html.count('class="slip"') == 2 and "<script" not in html and "http" not in html


def test_the_teaching_table_gives_a_teacher_a_group_by_username(job: Job) -> None:
    assert [s.pupil.person_id for s in reset(job, AL, group="9A").slips] == ["000002"]


def test_a_password_admin_may_reset_any_managed_pupil(job: Job) -> None:
    assert [s.pupil.person_id for s in reset(job, OLU, "000003", "000002").slips] == ["000002", "000003"]


def test_the_policy_band_decides_change_at_next_sign_in(tmp_path: Path) -> None:
    seed(tmp_path)
    young = {**PASSWORDS, "pupil": {**PASSWORDS["pupil"], "bands": {"7-8": {"change_at_sign_in": False}}}}
    with open_job(school(tmp_path, {"passwords": young}), today=TODAY) as job:
        [slip] = reset(job, JANE, "000001").slips
        assert not slip.change_at_sign_in  # the directories' flag: tests/integration/test_class_reset_entra.py
        assert "choose your own" not in slips_text(reset(job, JANE, "000006"), "Oakfield").lower()


def test_a_second_reset_never_gives_a_previous_password(job: Job) -> None:
    first = reset(job, JANE, "000001").slips[0].password
    second = reset(job, JANE, "000001").slips[0].password
    assert first != second and PasswordHistory(job.store).count("000001") == 2


# --- what it refuses: each refusal audited, nothing set -------------------------------------------

def refused(job: Job, tmp: Path, actor: SignedIn, *pupils: str, group: str | None = None) -> str:
    with pytest.raises(UserError) as raised:
        reset(job, actor, *pupils, group=group)
    assert password_writes(tmp) == [] and job.store.class_resets() == []
    assert events(job, "class-reset-refused"), "audited as refused"
    return str(raised.value)


def test_a_member_of_staff_is_refused(tmp_path: Path, job: Job) -> None:
    assert "Al Bell (ABE) is a member of staff: teachers reset pupils' passwords only" in refused(
        job, tmp_path, OLU, "ABE"), "not even a password admin"
    assert events(job, "class-reset-refused")[0]["pupil_id"] == "ABE"


def test_a_pupil_outside_the_teachers_groups_is_refused(tmp_path: Path, job: Job) -> None:
    message = refused(job, tmp_path, JANE, "000003")
    assert message == ("class reset refused, nothing was set: Pupil Number3 (000003) is not in a group Jane Doe "
                       "teaches")
    assert events(job, "class-reset-refused") == [{"teacher": "JDO", "pupil_id": "000003", "from": FROM,
                                                   "operator": "", "reason": message.split(": ", 1)[1]}]


def test_a_group_the_teacher_does_not_teach_is_refused(tmp_path: Path, job: Job) -> None:
    assert "Jane Doe does not teach '10A' (groups taught: 8A)" in refused(job, tmp_path, JANE, group="10A")


def test_a_privileged_account_is_refused(tmp_path: Path, job: Job) -> None:
    directory(tmp_path, "google").put(account("google-p6", "20pnumber6", anchor="000006", directory="google",
                                              privileged="Super Admin"))
    assert "google 20pnumber6 (Super Admin) is a privileged account" in refused(job, tmp_path, JANE, "000006")


def test_an_unmanaged_pupil_with_no_account_in_scope_is_refused(tmp_path: Path, job: Job) -> None:
    for name in ("ad", "google"):  # the pupil's accounts are outside the managed scope
        directory(tmp_path, name).put(account(f"{name}-p6", "20pnumber6", anchor="000006", directory=name),
                                      in_scope=False)
    assert "Pupil Number6 (000006) has no enabled account this tool manages" in refused(job, tmp_path, JANE,
                                                                                         "000006")


def test_one_refused_pupil_refuses_the_whole_request(tmp_path: Path, job: Job) -> None:
    assert "000003" in refused(job, tmp_path, JANE, "000001", "000003")


def test_someone_not_in_the_feed_or_not_staff_cannot_reset(tmp_path: Path, job: Job) -> None:
    stranger = SignedIn("stranger", "X")
    assert "stranger is not a member of staff in the feed" in refused(job, tmp_path, stranger, "000001")
    assert "20pnumber2 is not a member of staff" in refused(job, tmp_path, SignedIn("20pnumber2", "P"), "000001")


def test_a_pupil_not_on_roll_is_refused(tmp_path: Path, job: Job) -> None:
    assert "000099: not on roll" in refused(job, tmp_path, OLU, "000099")


def test_the_rate_limit_counts_per_teacher_in_the_store_across_restarts(tmp_path: Path, job: Job) -> None:
    reset(job, OLU, "000001", "000002", "000003")
    with open_job(tmp_path / "job.toml", today=TODAY) as again:  # a new process: the count is in SQLite
        with pytest.raises(UserError, match=r"has had 3 pupils' passwords reset in the last hour and asked for 2 "
                                            r"more; the limit is 4 an hour \(class_resets.per_hour\)"):
            reset(again, OLU, "000004", "000005")
        assert events(again, "class-reset-refused")[-1]["teacher"] == "OFF"
        assert len(reset(again, JANE, "000001", "000006").slips) == 2, "another teacher has their own count"


def test_a_bad_class_resets_table_is_one_clear_error(tmp_path: Path) -> None:
    seed(tmp_path)
    with (open_job(school(tmp_path, {"class_resets": {"per_hour": 0}}), today=TODAY) as job,
          pytest.raises(ConfigError, match=r"job.toml: class_resets.per_hour: must be a whole number")):
        reset(job, JANE, "000001")
    with (open_job(school(tmp_path, {"teaching": {"8B": "JDO"}}), today=TODAY) as job,
          pytest.raises(ConfigError, match=r"teaching.8B: must be a list of staff usernames or staff ids")):
        reset(job, JANE, "000001")


# --- the pure rules ---------------------------------------------------------------------------------

def person(pid: str, kind: Kind = Kind.PUPIL, reg: str | None = "8A", classes: tuple[str, ...] = (),
           teaches: tuple[str, ...] = ()) -> Person:
    return Person(pid, kind, "A", pid, year_group="8" if kind is Kind.PUPIL else None, registration_group=reg,
                  classes=classes, teaches=teaches)


ACCOUNTS = (account("k1", "p1", anchor="P1"),)


def test_who_may_reset_whom() -> None:
    settings = ClassResetSettings(password_admins=frozenset({"off"}), teaching={"9A": frozenset({"abell"})})
    maths = teacher_of(person("JDO", Kind.STAFF, None, teaches=("Year 7 Maths (c1)",)), frozenset({"jdo"}), settings)
    tutor = teacher_of(person("ABE", Kind.STAFF, None), frozenset({"abe", "abell"}), settings)
    office = teacher_of(person("OFF", Kind.STAFF, None), frozenset({"off"}), settings)
    in_set = person("P1", classes=("Year 7 Maths (c1)",))
    in_9a = person("P2", reg="9A")
    assert may_reset(maths, in_set, ACCOUNTS) and not may_reset(maths, in_9a, ACCOUNTS)
    assert may_reset(tutor, in_9a, ACCOUNTS) and not may_reset(tutor, in_set, ACCOUNTS)
    assert may_reset(office, in_set, ACCOUNTS) and may_reset(office, in_9a, ACCOUNTS)
    assert not may_reset(maths, person("P3", classes=("Year 7 Maths (c2)",)), ACCOUNTS), "the other set"


def test_each_refusal_has_its_reason() -> None:
    teacher = Teacher(person("JDO", Kind.STAFF, None), frozenset({"jdo"}), frozenset({"8A"}))
    admin = Teacher(teacher.person, teacher.names, frozenset(), admin=True)
    pupil = person("P1")
    admin_account = (account("k1", "p1", anchor="P1", privileged="member of Domain Admins"),)
    assert refusal(admin, person("S1", Kind.STAFF, None), ACCOUNTS) == "A S1 (S1) is a member of staff: teachers " \
                                                                       "reset pupils' passwords only"
    assert refusal(teacher, person("P2", reg="9A"), ACCOUNTS) == "A P2 (P2) is not in a group A JDO teaches"
    assert refusal(teacher, pupil, ACCOUNTS, admin_account) == (
        "A P1 (P1): ad p1 (member of Domain Admins) is a privileged account; its password is set by hand in the "
        "directory")
    assert refusal(teacher, pupil, ()) == "A P1 (P1) has no enabled account this tool manages"
    assert refusal(teacher, person("P9", reg="9A"), (), admin_account) == "A P9 (P9) is not in a group A JDO " \
                                                                           "teaches", "nothing told of admin roles"
    assert refusal(teacher, pupil, ACCOUNTS) is None


# --- where the SIRO and the network manager see them ------------------------------------------------

def test_the_run_summary_lists_the_resets_since_the_last_run(job: Job) -> None:
    reset(job, JANE, "000001")
    first = job.store.start_run("nightly")
    reset(job, OLU, "000002")  # made while the night ran: in the next night's summary too
    second = job.store.start_run("nightly")
    assert [r.pupil_id for r in job.store.class_resets_before_run("nightly", first)] == ["000001", "000002"]
    assert [r.pupil_id for r in job.store.class_resets_before_run("nightly", second)] == ["000002"]
    _, text = run_summary("nightly", RunReport(second, "ok", Plan((), {})),
                          job.store.class_resets_before_run("nightly", second))
    assert "Passwords reset by teachers since the last run" in text
    assert re.search(r"UTC: OFF reset 000002 \(20pnumber2\), set in ad, google, from 192\.0\.2\.10\n", text)
    assert "000001" not in text


def test_the_access_review_lists_who_reset_whom_and_the_refusals(tmp_path: Path, job: Job) -> None:
    done = reset(job, JANE, "000001")
    with pytest.raises(UserError):
        reset(job, JANE, "000003")
    sheet = class_resets_sheet(job.store.audit_entries())
    [table] = sheet.tables
    assert sheet.name == "Password resets"
    assert [row[1:] for row in table.rows] == [
        [JANE.username, "JDO", "000001", "20pnumber1", "set in ad, google", FROM, ""],
        [JANE.username, "JDO", "000003", "", "refused: Pupil Number3 (000003) is not in a group Jane Doe teaches",
         FROM, ""]]
    assert done.slips[0].password not in str(table.rows)


def test_the_page_lists_only_the_teachers_own_groups(job: Job) -> None:
    with job.open_connectors() as connectors:
        teacher, groups = class_lists(job, connectors, JANE, from_address=FROM)
        assert teacher.person.person_id == "JDO"
        assert {g: [p.person_id for p in ps] for g, ps in groups.items()} == {"8A": ["000001", "000006"]}
        _, every = class_lists(job, connectors, OLU, from_address=FROM)
        assert sorted(every) == ["10A", "11A", "7A", "8A", "9A"], "a password admin sees every registration group"
        with pytest.raises(UserError, match="20pnumber2 is not a member of staff"):
            class_lists(job, connectors, SignedIn("20pnumber2", "P"), from_address=FROM)


def test_a_username_that_names_two_people_is_refused(tmp_path: Path, job: Job) -> None:
    # A pupil account whose username is a member of staff's id: neither is taken for the other.
    directory(tmp_path, "ad").put(account("ad-p5", "jdo", anchor="000005", directory="ad"))
    assert "JDO names more than one person (000005, JDO)" in refused(job, tmp_path, SignedIn("JDO", "J"), "000001")


def test_members_of_a_password_admin_group_may_reset_any_managed_pupil(tmp_path: Path) -> None:
    seed(tmp_path)
    directory(tmp_path, "google").put_group("IT Technicians", members=("google-ABE",))
    admins = {"class_resets": {"password_admin_groups": ["IT Technicians"]}}
    with open_job(school(tmp_path, admins), today=TODAY) as job:
        assert [s.pupil.person_id for s in reset(job, AL, "000003").slips] == ["000003"], "Al is in the group"
        with pytest.raises(UserError, match="is not in a group Jane Doe teaches"):
            reset(job, JANE, "000003")
    typo = {"class_resets": {"password_admin_groups": ["IT Technicans"]}}
    with (open_job(school(tmp_path, typo), today=TODAY) as job,
          pytest.raises(ConfigError, match=r"class_resets.password_admin_groups: no directory holds a group named "
                                           r"'it technicans'")):
        reset(job, JANE, "000001")
