"""Issuing and delivering passwords: one per person per run, never one of the last N, slips and emails."""

from __future__ import annotations

import shutil
import stat
import subprocess
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.model import Action, Change, Kind, Person
from idlifecycle.passwords.delivery import remove_old_slips
from idlifecycle.passwords.history import PasswordHistory, verify_password
from idlifecycle.passwords.issuer import PasswordIssuer
from idlifecycle.passwords.policy import ad_rules, entra_rules, google_rules
from idlifecycle.passwords.settings import PasswordSettings, parse_settings
from idlifecycle.store import Store

TODAY = date(2027, 1, 5)
AMELIA = Person("P100", Kind.PUPIL, "Amelia", "Smith", year_group="3", registration_group="3B")
BEN = Person("P101", Kind.PUPIL, "Ben", "Øster", year_group="3", registration_group="3B")
CARA = Person("P102", Kind.PUPIL, "Cara", "Jones", year_group="R", registration_group="RW")
DAN = Person("S200", Kind.STAFF, "Dan", "Evans", roles=("Teacher",))
RULES = {"ad": ad_rules({"min_length": 7}), "entra": entra_rules(), "google": google_rules()}


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, to: list[str], subject: str, text: str, html: str | None = None) -> None:
        self.sent.append({"to": to, "subject": subject, "text": text})


def school(tmp_path: Path, **extra: Any) -> PasswordSettings:
    data: dict[str, Any] = {
        "school_name": "Oakfield Primary School",
        "slips": {"folder": "slips", "days": 14},
        "line_managers": {"fallback": "office@oakfield.example", "roles": {"Teacher": "head@oakfield.example"}},
        "staff": {"min_length": 12, "style": "random", "delivery": "email", "history": 3},
        "pupil": {"min_length": 10, "style": "memorable", "delivery": "slips", "history": 3},
        **extra,
    }
    return parse_settings(data, source="passwords.toml", base_dir=tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


def issuer(settings: PasswordSettings, store: Store, today: date = TODAY) -> PasswordIssuer:
    # A cheaper scrypt cost keeps the test quick; the hashing and checking code is the same.
    return PasswordIssuer(settings, store, RULES, today, history=PasswordHistory(store, cost=2**10))


def test_a_reset_never_reissues_one_of_the_last_n_passwords(tmp_path: Path, store: Store) -> None:
    # One word and one symbol leave 90 possible passwords, so without the history check a repeat
    # inside the last 8 would be all but certain over 60 resets.
    (tmp_path / "words.txt").write_text("kite\n")
    settings = school(tmp_path, words_file="words.txt",
                      pupil={"min_length": 8, "style": "memorable", "symbols": "!", "history": 8})
    issued: list[str] = []
    for _ in range(60):
        password = issuer(settings, store).issue(AMELIA, "asmith", ["ad", "entra"])
        assert password not in issued[-8:]
        issued.append(password)
    assert len(set(issued)) < len(issued), "older passwords may come back: only the last 8 are refused"
    assert PasswordHistory(store).count("P100") == 8


def test_history_keeps_only_salted_scrypt_hashes(store: Store, tmp_path: Path) -> None:
    password = issuer(school(tmp_path), store).issue(DAN, "devans", ["entra"])
    rows = [tuple(r) for r in store.db.execute("SELECT * FROM password_history")]
    assert len(rows) == 1 and rows[0][3].startswith("scrypt$")
    assert password not in repr(rows)
    other = issuer(school(tmp_path), store).issue(CARA, "cjones", ["entra"])
    hashes = [r[0] for r in store.db.execute("SELECT hash FROM password_history")]
    assert hashes[0].split("$")[4] != hashes[1].split("$")[4], "each hash has its own salt"
    assert other != password


def test_one_password_per_person_per_run_in_every_directory(store: Store, tmp_path: Path) -> None:
    changes = [Change(d, Action.CREATE, "P100", "asmith", "joined 3B") for d in ("ad", "entra", "google")]
    password_for = issuer(school(tmp_path), store).password_for({"P100": AMELIA}, changes)
    assert len({password_for(c) for c in changes}) == 1
    assert PasswordHistory(store).count("P100") == 1


def test_asking_again_for_a_directory_whose_rules_the_password_breaks_is_a_bug(store: Store, tmp_path: Path) -> None:
    settings = school(tmp_path, staff={"min_length": 8, "length": 8, "style": "random", "delivery": "email"})
    issuing = issuer(settings, store)
    issuing.issue(DAN, "devans", ["google"])
    issuing.rules["strict"] = ad_rules({"min_length": 20})
    with pytest.raises(RuntimeError, match="pass all directories the first time"):
        issuing.issue(DAN, "devans", ["strict"])


def pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) is not installed")
    return subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout


def test_pupil_slips_are_one_private_pdf_per_registration_group(store: Store, tmp_path: Path) -> None:
    issuing = issuer(school(tmp_path), store)
    passwords = {p.person_id: issuing.issue(p, u, ["ad", "entra"])
                 for p, u in ((AMELIA, "asmith"), (BEN, "boster"), (CARA, "cjones"))}
    report = issuing.deliver(None)
    names = sorted(p.name for p in report.slips)
    assert names == ["2027-01-05_3B.pdf", "2027-01-05_RW.pdf"]
    folder = tmp_path / "slips"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in report.slips)
    class_3b = pdf_text(folder / "2027-01-05_3B.pdf")
    assert passwords["P100"] in class_3b and passwords["P101"] in class_3b
    assert "Ben Oster" in class_3b or "Ben Øster" in class_3b
    assert passwords["P102"] not in class_3b
    events = [e for e in store.audit_entries() if e.event == "password-delivered"]
    assert {e.data["username"] for e in events} == {"asmith", "boster", "cjones"}
    assert not any(pw in str(e.data) for e in events for pw in passwords.values())


def test_staff_password_is_emailed_to_the_line_manager(store: Store, tmp_path: Path) -> None:
    issuing = issuer(school(tmp_path), store)
    password = issuing.issue(DAN, "devans", ["entra"])
    mailer = RecordingMailer()
    report = issuing.deliver(mailer)
    assert report.emailed == ["devans"] and report.slips == []
    assert mailer.sent[0]["to"] == ["head@oakfield.example"]
    assert password in mailer.sent[0]["text"] and password not in mailer.sent[0]["subject"]


def test_without_mail_settings_staff_passwords_go_on_a_slip_sheet(store: Store, tmp_path: Path) -> None:
    issuing = issuer(school(tmp_path), store)
    password = issuing.issue(DAN, "devans", ["entra"])
    report = issuing.deliver(None)
    assert [p.name for p in report.slips] == ["2027-01-05_Staff - to hand out.pdf"]
    assert password in pdf_text(report.slips[0])


def test_a_password_no_directory_accepted_is_not_delivered(store: Store, tmp_path: Path) -> None:
    issuing = issuer(school(tmp_path), store)
    issuing.issue(AMELIA, "asmith", ["ad"])
    issuing.issue(CARA, "cjones", ["ad"])
    report = issuing.deliver(None, applied={"P102"})
    assert report.not_set == ["asmith"]
    assert [p.name for p in report.slips] == ["2027-01-05_RW.pdf"]


def test_slip_sheets_are_removed_after_the_configured_days(store: Store, tmp_path: Path) -> None:
    first = issuer(school(tmp_path), store, today=date(2027, 1, 5))
    first.issue(AMELIA, "asmith", ["ad"])
    old = first.deliver(None).slips[0]
    (tmp_path / "slips" / "notes.txt").write_text("not ours")
    assert remove_old_slips(tmp_path / "slips", date(2027, 1, 19), 14) == []
    later = issuer(school(tmp_path), store, today=date(2027, 1, 20))
    report = later.deliver(None)
    assert report.removed == [old] and not old.exists()
    assert (tmp_path / "slips" / "notes.txt").exists()


def test_two_deliveries_on_one_day_do_not_overwrite_each_other(store: Store, tmp_path: Path) -> None:
    for _ in range(2):
        issuing = issuer(school(tmp_path), store)
        issuing.issue(AMELIA, "asmith", ["ad"])
        issuing.deliver(None)
    assert sorted(p.name for p in (tmp_path / "slips").iterdir()) == ["2027-01-05_3B-2.pdf", "2027-01-05_3B.pdf"]


class WatchedHistory(PasswordHistory):
    """The real history, noting which thread hashes each new password (the slow part of issuing one)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, cost=2**10)
        self.hashed_on: list[str] = []

    def hashed(self, password: str) -> str:
        self.hashed_on.append(threading.current_thread().name)
        return super().hashed(password)


def test_a_plans_passwords_are_drawn_ahead_and_recorded_once_each_only_when_asked_for(
        store: Store, tmp_path: Path) -> None:
    people = {p.person_id: p for p in (AMELIA, BEN, CARA)}
    usernames = {"P100": "asmith", "P101": "boster", "P102": "cjones"}
    changes = [Change(d, Action.CREATE, pid, usernames[pid], "joined") for d in ("entra", "google") for pid in people]
    history = WatchedHistory(store)
    issuing = PasswordIssuer(school(tmp_path), store, RULES, TODAY, history=history)
    give = issuing.password_for(people, changes)
    deadline = time.monotonic() + 10
    while len(history.hashed_on) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(history.hashed_on) == 3 and threading.current_thread().name not in history.hashed_on
    assert store.db.execute("SELECT COUNT(*) FROM password_history").fetchone()[0] == 0, "recorded before asked"
    given = {c.directory + c.person_id: give(c) for c in changes}
    assert all(given["entra" + pid] == given["google" + pid] for pid in people)
    for pid in people:
        [stored] = [r[0] for r in store.db.execute("SELECT hash FROM password_history WHERE person_id=?", (pid,))]
        assert verify_password(given["entra" + pid], stored), "the history holds the password handed out"
    assert len(history.hashed_on) == 3, "each drawn once"
    assert len(set(given.values())) == 3
