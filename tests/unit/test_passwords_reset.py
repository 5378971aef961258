"""`passwords reset`: what it refuses (privileged accounts, people not in the feed, no account to reset)
and what it does (one password, set in each directory the person has an enabled account in, delivered).

A real job (its store a SQLite file under tmp_path, its feed two CSVs) over the test-double directory
(tests/doubles.py, a directory in a SQLite file): no HTTP, no emulator.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.connectors.base import Connector, ConnectorError
from idlifecycle.errors import UserError
from idlifecycle.job import Job, open_job
from idlifecycle.model import Account, Action, Change, Result, Snapshot
from idlifecycle.passwords.history import PasswordHistory
from idlifecycle.passwords.owed import privileged_accounts
from idlifecycle.passwords.reset import ResetOutcome, accounts_to_reset, reset_password
from tests import jobfiles
from tests.doubles import FileDirectory
from tests.e2e.school import write_pupils, write_staff
from tests.factories import ROOT, account

TODAY = date(2026, 11, 23)
PUPIL = "000001"
"""Pupil Number1 (write_pupils), Year 8."""
STAFF = "JDO"
PASSWORDS = {
    "school_name": "Oakfield Primary School",
    "line_managers": {"fallback": "office@oakfield.example.sch.uk"},
    "staff": {"min_length": 12, "delivery": "email"},
    "pupil": {"min_length": 10, "style": "memorable", "delivery": "slips"},
}


class RefusingDirectory(FileDirectory):
    """A directory whose password policy turns every new password down (as AD does for a weak one)."""

    def _apply_logged(self, change: Change) -> Result:
        if change.action is Action.SET_PASSWORD:
            raise ConnectorError(f"set-password {change.username}: the password does not meet the domain's policy")
        return super()._apply_logged(change)


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, to: list[str], subject: str, text: str, html: str | None = None) -> None:
        self.sent.append({"to": to, "subject": subject, "text": text})


def school(tmp: Path, refusing: tuple[str, ...] = (), names: tuple[str, ...] = ("ad", "google")) -> Path:
    """Pupils 000001-000003 and Jane Doe in the feed; directories "ad" and "google" (test doubles)."""
    write_pupils(tmp / "pupils.csv", 3)
    write_staff(tmp / "staff.csv", [(STAFF, "Jane", "Doe", "Teacher")])
    (tmp / "connectors").mkdir()
    files = []
    for name in names:
        kind = f"{__name__}:RefusingDirectory" if name in refusing else "tests.doubles:FileDirectory"
        jobfiles.write_connector(tmp / "connectors" / f"{name}.toml", name, kind, {"path": str(tmp / f"{name}.sqlite")})
        files.append(f"connectors/{name}.toml")
    return jobfiles.write_job(tmp / "job.toml", connectors=files, mappings=[ROOT / "mappings" / "school.toml"],
                              guards={}, sections={"passwords": PASSWORDS})


def directory(tmp: Path, name: str) -> FileDirectory:
    return FileDirectory(name, tmp / f"{name}.sqlite")


def seed(tmp: Path, name: str, key: str, username: str, anchor: str | None, **kw: Any) -> str:
    directory(tmp, name).put(account(key, username, anchor=anchor, directory=name, **kw))
    return key


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    with open_job(school(tmp_path), today=TODAY) as opened:
        yield opened


def reset(job: Job, person_id: str, mailer: RecordingMailer | None = None) -> ResetOutcome:
    with job.open_connectors() as connectors:
        return reset_password(job, connectors, person_id, actor="office", mailer=mailer)


def password_writes(tmp: Path) -> dict[str, list[tuple[str, str, str]]]:
    return {name: [w for w in directory(tmp, name).writes() if w[1] == "set-password"] for name in ("ad", "google")}


def events(job: Job, event: str) -> list[dict[str, Any]]:
    return [e.data for e in job.store.audit_entries() if e.event == event]


# --- what it does ---------------------------------------------------------------------------------

def test_one_new_password_is_set_in_every_directory_the_person_has_an_account_in(tmp_path: Path, job: Job) -> None:
    ad = seed(tmp_path, "ad", "ad-1", "20pnumber1", PUPIL)
    google = seed(tmp_path, "google", "g-1", "20pnumber1", PUPIL)
    other = seed(tmp_path, "ad", "ad-2", "20pnumber2", "000002")

    outcome = reset(job, PUPIL)

    assert (outcome.person.person_id, outcome.username, outcome.set_in, outcome.failed) == (
        PUPIL, "20pnumber1", ("ad", "google"), ())
    ad_hash = directory(tmp_path, "ad").current_password_hash(ad)
    assert ad_hash is not None and ad_hash == directory(tmp_path, "google").current_password_hash(google)
    assert directory(tmp_path, "ad").password_hashes(other) == [], "nobody else's password changes"
    assert all(a.must_change_password for d in ("ad", "google") for a in directory(tmp_path, d).accounts()
               if a.anchor == PUPIL), "the person chooses their own at first sign-in"
    # A pupil's password goes on their class's slip sheet; the audit log knows of it but holds no password.
    assert [p.name for p in outcome.delivery.slips] == ["2026-11-23_8A.pdf"]
    delivered = events(job, "password-delivered")
    assert [d["username"] for d in delivered] == ["20pnumber1"]
    assert not any(ad_hash in str(e.data) for e in job.store.audit_entries())


def test_a_staff_password_is_emailed_to_the_line_manager(tmp_path: Path, job: Job) -> None:
    key = seed(tmp_path, "google", "g-9", "jdoe", STAFF, domain="staff.example.sch.uk")
    mailer = RecordingMailer()

    outcome = reset(job, STAFF, mailer)

    assert outcome.set_in == ("google",) and outcome.delivery.emailed == ["jdoe"] and outcome.delivery.slips == []
    [mail] = mailer.sent
    assert mail["to"] == ["office@oakfield.example.sch.uk"]
    [password] = re.findall(r"Password: (\S+)", mail["text"])
    assert hashlib.sha256(password.encode()).hexdigest() == directory(tmp_path, "google").current_password_hash(key)
    assert password not in mail["subject"]


def test_a_second_reset_sets_a_fresh_password_again(tmp_path: Path, job: Job) -> None:
    key = seed(tmp_path, "ad", "ad-1", "20pnumber1", PUPIL)
    reset(job, PUPIL)
    reset(job, PUPIL)
    hashes = directory(tmp_path, "ad").password_hashes(key)
    assert len(hashes) == 2 and hashes[0] != hashes[1], "a second reset is new work, not a replay of the first"


def test_the_username_reported_is_the_one_most_directories_know_the_person_by(tmp_path: Path, job: Job) -> None:
    seed(tmp_path, "ad", "ad-1", "jane.doe", STAFF)
    seed(tmp_path, "google", "g-1", "jdoe", STAFF)
    seed(tmp_path, "google", "g-2", "jdoe", STAFF, container="Staff")
    assert reset(job, STAFF, RecordingMailer()).username == "jdoe"


def test_another_persons_account_of_the_same_name_in_another_directory_is_left_alone(tmp_path: Path,
                                                                                      job: Job) -> None:
    mine = seed(tmp_path, "ad", "ad-1", "jdoe", STAFF)
    theirs = seed(tmp_path, "google", "g-1", "jdoe", "S999")  # a different person (or nobody) in Google
    unanchored = seed(tmp_path, "google", "g-2", "jdoe2", None)

    outcome = reset(job, STAFF, RecordingMailer())

    assert outcome.set_in == ("ad",)
    assert directory(tmp_path, "ad").password_hashes(mine) != []
    assert password_writes(tmp_path)["google"] == []
    assert directory(tmp_path, "google").password_hashes(theirs) == []
    assert directory(tmp_path, "google").password_hashes(unanchored) == []


def test_a_directory_that_refuses_the_password_is_reported_and_the_others_keep_it(tmp_path: Path) -> None:
    ad = seed(tmp_path, "ad", "ad-1", "20pnumber1", PUPIL)
    seed(tmp_path, "google", "g-1", "20pnumber1", PUPIL)
    with open_job(school(tmp_path, refusing=("google",)), today=TODAY) as job:
        outcome = reset(job, PUPIL)
        assert outcome.set_in == ("ad",)
        assert outcome.failed == ("google: set-password 20pnumber1: the password does not meet the domain's policy",)
        assert directory(tmp_path, "ad").password_hashes(ad) != []
        # Set in AD, so it works there: it is delivered.
        assert len(outcome.delivery.slips) == 1 and outcome.delivery.not_set == []


def test_a_password_no_directory_accepted_is_not_delivered(tmp_path: Path) -> None:
    seed(tmp_path, "ad", "ad-1", "20pnumber1", PUPIL)
    seed(tmp_path, "google", "g-1", "20pnumber1", PUPIL)
    with open_job(school(tmp_path, refusing=("ad", "google")), today=TODAY) as job:
        outcome = reset(job, PUPIL)
        assert outcome.set_in == () and [f.split(":")[0] for f in outcome.failed] == ["ad", "google"]
        assert outcome.delivery.slips == [] and outcome.delivery.not_set == ["20pnumber1"]
        assert events(job, "password-delivered") == []


# --- what it refuses ------------------------------------------------------------------------------

def test_a_person_not_in_the_feed_is_refused(tmp_path: Path, job: Job) -> None:
    seed(tmp_path, "ad", "ad-1", "oleaver", "000099")  # still has an account, no longer on roll
    with pytest.raises(UserError, match=r"^000099 is not in the feed; passwords are reset only for current"):
        reset(job, "000099")
    assert password_writes(tmp_path) == {"ad": [], "google": []}


def test_a_privileged_account_is_refused_and_nothing_is_set_anywhere(tmp_path: Path, job: Job) -> None:
    seed(tmp_path, "ad", "ad-1", "jdoe", STAFF, privileged="member of Domain Admins")
    seed(tmp_path, "google", "g-1", "jdoe", STAFF)

    with pytest.raises(UserError) as refused:
        reset(job, STAFF, RecordingMailer())

    message = str(refused.value)
    assert message.startswith("Jane Doe (JDO): refused: ad jdoe (member of Domain Admins) is a privileged account")
    assert "reset it by hand in the directory" in message
    assert password_writes(tmp_path) == {"ad": [], "google": []}, "not even the unprivileged Google account"
    assert events(job, "password-reset-refused") == [
        {"person_id": STAFF, "reason": "privileged account", "accounts": "ad jdoe (member of Domain Admins)"}]
    assert PasswordHistory(job.store).count(STAFF) == 0, "no password was even issued"
    assert events(job, "password-delivered") == []


def test_an_admin_role_on_the_hybrid_entra_account_refuses_the_ad_reset_that_would_sync_to_it(tmp_path: Path) -> None:
    # Entra Connect copies the AD password to the synced Entra account: resetting AD would mail the new
    # password of a Global Administrator. Found by these tests: only the accounts set were checked.
    seed(tmp_path, "ad", "ad-1", "jdoe", STAFF)
    seed(tmp_path, "entra", "e-1", "jdoe", STAFF, synced_from_on_premises=True, privileged="Global Administrator")
    with open_job(school(tmp_path, names=("ad", "entra")), today=TODAY) as job:
        with pytest.raises(UserError, match=r"refused: entra jdoe \(Global Administrator\) is a privileged account"):
            reset(job, STAFF, RecordingMailer())
        assert directory(tmp_path, "ad").password_hashes("ad-1") == []
        assert [e["accounts"] for e in events(job, "password-reset-refused")] == ["entra jdoe (Global Administrator)"]


def test_every_privileged_account_is_named(tmp_path: Path, job: Job) -> None:
    seed(tmp_path, "ad", "ad-1", "jdoe", STAFF, privileged="member of Domain Admins")
    seed(tmp_path, "google", "g-1", "jdoe", STAFF, privileged="Super Admin")
    with pytest.raises(UserError, match=r"ad jdoe \(member of Domain Admins\), google jdoe \(Super Admin\) is a"):
        reset(job, STAFF)


def test_a_person_with_no_enabled_account_is_refused(tmp_path: Path, job: Job) -> None:
    seed(tmp_path, "ad", "ad-1", "20pnumber1", PUPIL, enabled=False)
    with pytest.raises(UserError, match=r"^Pupil Number1 \(000001\) has no enabled account this tool manages$"):
        reset(job, PUPIL)
    assert password_writes(tmp_path) == {"ad": [], "google": []}


def test_a_person_with_no_account_at_all_is_refused(job: Job) -> None:
    with pytest.raises(UserError, match="has no enabled account"):
        reset(job, "000002")


def test_a_disabled_privileged_account_is_not_a_reason_to_refuse(tmp_path: Path, job: Job) -> None:
    # Only enabled accounts are reset, so a disabled admin account is neither touched nor in the way.
    old_admin = seed(tmp_path, "ad", "ad-0", "jdoe-admin", STAFF, enabled=False, privileged="member of Domain Admins")
    seed(tmp_path, "google", "g-1", "jdoe", STAFF)
    assert reset(job, STAFF, RecordingMailer()).set_in == ("google",)
    assert directory(tmp_path, "ad").password_hashes(old_admin) == []


# --- which accounts: accounts_to_reset ------------------------------------------------------------

def snapshot(name: str, *accounts: Account) -> Snapshot:
    return Snapshot(name, accounts, ())


def test_accounts_to_reset_are_the_persons_enabled_accounts_in_directory_order() -> None:
    ad = account("ad-1", "jdoe", anchor=STAFF, directory="ad")
    google = account("g-1", "jdoe", anchor=STAFF, directory="google")
    snapshots = {
        "google": snapshot("google", google, account("g-2", "other", anchor="S2", directory="google")),
        "ad": snapshot("ad", account("ad-2", "jdoe2", anchor=STAFF, directory="ad", enabled=False), ad),
    }
    assert accounts_to_reset(STAFF, snapshots) == [ad, google]
    assert accounts_to_reset("S404", snapshots) == []


def test_a_hybrid_entra_account_is_left_to_ad_whose_password_syncs_to_it() -> None:
    ad = account("ad-1", "jdoe", anchor=STAFF, directory="ad")
    synced = replace(account("e-1", "jdoe", anchor=STAFF, directory="entra"), synced_from_on_premises=True)
    cloud = account("e-2", "jdoe.cloud", anchor=STAFF, directory="entra")
    assert accounts_to_reset(STAFF, {"ad": snapshot("ad", ad), "entra": snapshot("entra", synced, cloud)}) == [
        ad, cloud]


def test_privileged_accounts_are_those_a_reset_would_set_or_sync_to() -> None:
    admin = account("ad-1", "jdoe", anchor=STAFF, directory="ad", privileged="member of Domain Admins")
    old_admin = account("ad-2", "jdoe-old", anchor=STAFF, directory="ad", enabled=False, privileged="Domain Admins")
    synced_off = replace(account("e-1", "jdoe", anchor=STAFF, directory="entra", enabled=False),
                         synced_from_on_premises=True, privileged="User Administrator")
    theirs = account("g-1", "boss", anchor="S2", directory="google", privileged="Super Admin")
    plain = account("g-2", "jdoe", anchor=STAFF, directory="google")
    snapshots = {"ad": snapshot("ad", admin, old_admin), "entra": snapshot("entra", synced_off),
                 "google": snapshot("google", theirs, plain)}
    # A disabled hybrid account still receives the synced password, and has it when enabled again.
    assert privileged_accounts(STAFF, snapshots) == [admin, synced_off]
    assert privileged_accounts("S2", snapshots) == [theirs]


def test_a_directory_that_cannot_be_read_stops_the_reset_with_one_line(tmp_path: Path, job: Job) -> None:
    class Unreachable(FileDirectory):
        def snapshot(self) -> Snapshot:
            raise ConnectorError("connection refused")

    seed(tmp_path, "ad", "ad-1", "20pnumber1", PUPIL)
    connectors: dict[str, Connector] = {"ad": directory(tmp_path, "ad"),
                                        "google": Unreachable("google", tmp_path / "google.sqlite")}
    with pytest.raises(UserError, match=r"^google: could not read the directory: connection refused$"):
        reset_password(job, connectors, PUPIL, actor="office", mailer=None)
    assert password_writes(tmp_path) == {"ad": [], "google": []}
