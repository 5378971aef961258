"""The shares registry, desired share-group membership, signed links and safe email headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from idlifecycle.access import desired_share_groups
from idlifecycle.access.records import AccessRecords
from idlifecycle.access.service import Access
from idlifecycle.access.shares import load_registry
from idlifecycle.access.tokens import LinkRefused, Signer
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.job import load_job
from idlifecycle.model import Action, Kind, Person
from idlifecycle.notify import Mailer, clean_header_text

REPO = Path(__file__).resolve().parents[2]
KEY = "k" * 48


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shares.toml"
    path.write_text(text)
    return path


def test_the_example_registry_shipped_with_idlifecycle_loads() -> None:
    registry = load_registry(REPO / "mappings" / "shares.toml")
    sen = registry.shares["sen-records"]
    assert sen.restricted and sen.groups["entra"] == "SG-SEN-Restricted"
    assert registry.share_of_group("ad", "share-sen-restricted") is sen


@pytest.mark.parametrize(("text", "key", "words"), [
    ('[shares.sen]\ntitle = "SEN"\nclassification = "secret"\nowner = "SENCo"\ngroups = { ad = "S" }\n',
     "shares.sen.classification", "restricted"),
    ('[shares.sen]\ntitle = "SEN"\nclassification = "restricted"\nowner = "SENCo"\ngroups = {}\n',
     "shares.sen.groups", "at least one directory"),
    ('[shares.sen]\ntitle = "SEN"\nclassification = "restricted"\nowner = "x"\ngroups = { ad = "S" }\n'
     'max_grant_days = 0\n', "shares.sen.max_grant_days", "greater than or equal to 1"),
    ('[shares.sen]\ntitle = "SEN"\nclassification = "restricted"\nowner = "x"\ngroups = { ad = "S" }\n'
     'baseline = "all-staff"\n', "shares.sen.baseline", "restricted share's baseline"),
    ('[shares.a]\ntitle = "A"\nclassification = "protected"\nowner = "x"\ngroups = { ad = "S" }\n'
     '[shares.b]\ntitle = "B"\nclassification = "public"\nowner = "x"\ngroups = { ad = "s" }\n',
     "shares.b.groups.ad", "already the access group of share 'a'"),
    ('[shares.sen]\ntitle = "SEN"\nclassification = "restricted"\nowner = "x"\ngroups = { ad = "S" }\n'
     'colour = "red"\n', "shares.sen.colour", "Extra inputs"),
    ("shares = 3\n", "shares", "at least one share"),
    ("[shares.sen\n", "(syntax)", ""),
])
def test_a_mistake_in_the_registry_names_the_file_and_the_key(tmp_path: Path, text: str, key: str,
                                                              words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_registry(path)
    assert raised.value.file == str(path)
    assert raised.value.key == key
    assert words in str(raised.value)


def test_a_missing_registry_file_is_blamed_on_the_job_files_access_shares(tmp_path: Path) -> None:
    job_path = school_job(tmp_path, '[access]\nshares = "nope.toml"\nsiro_email = "s@x.org"\nsiro_name = "S"\n')
    job = load_job(job_path)
    try:
        with pytest.raises(ConfigError) as raised:
            desired_share_groups(job, [])
    finally:
        job.close()
    assert (raised.value.file, raised.value.key) == (str(job_path), "access.shares")
    assert "nope.toml does not exist" in str(raised.value)


def school_job(tmp_path: Path, access: str = "") -> Path:
    (tmp_path / "ad.toml").write_text('name = "ad"\ntype = "ad"\n')
    (tmp_path / "entra.toml").write_text('name = "entra"\ntype = "entra"\n')
    (tmp_path / "mapping.toml").write_text('[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\n')
    (tmp_path / "staff.csv").write_text("Staff Code,Forename,Surname\nA,Ann,Ash\n")
    access = access or (f'[access]\nshares = "{REPO}/mappings/shares.toml"\n'
                        'siro_email = "siro@school.example.org"\nsiro_name = "The SIRO"\n')
    job = tmp_path / "job.toml"
    job.write_text(f"""
[job]
state_dir = "state"
connectors = ["ad.toml", "entra.toml"]
mappings = ["mapping.toml"]
[[job.feeds]]
format = "mis-csv"
path = "staff.csv"
kind = "staff"
{access}
""")
    return job


def person(pid: str, kind: Kind = Kind.STAFF, roles: tuple[str, ...] = ()) -> Person:
    return Person(pid, kind, "First", "Last", roles=roles)


def test_desired_membership_is_the_baseline_and_the_unexpired_grants(tmp_path: Path) -> None:
    job = load_job(school_job(tmp_path))
    try:
        people = [person("SENCO1", roles=("SENCo",)), person("T1", roles=("Teacher",)), person("T2"),
                  person("P1", Kind.PUPIL)]
        records = AccessRecords(job.store)
        now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        for pid, expires in (("T1", now + timedelta(days=3)), ("T2", now - timedelta(minutes=1))):
            asked = records.add_request("sen-records", pid, "x", "reason", 7, "office@x", now - timedelta(days=7))
            records.add_grant(asked, "siro@school.example.org", now - timedelta(days=7), expires)
        groups = desired_share_groups(job, people, now=now)
    finally:
        job.close()
    assert groups.desired["SENCO1"]["ad"] >= {"Share-SEN-Restricted", "Share-Staff", "Share-Curriculum"}
    assert "Share-SEN-Restricted" in groups.desired["T1"]["ad"]
    assert "SG-SEN-Restricted" in groups.desired["T1"]["entra"]
    assert "Share-SEN-Restricted" not in groups.desired["T2"]["ad"]  # expired a minute ago
    assert groups.desired["P1"]["google"] == frozenset({"curriculum"})
    assert groups.restricted["ad"] == frozenset({"Share-SEN-Restricted", "Share-Safeguarding", "Share-HR"})
    assert groups.restricted["google"] == frozenset({"sen-restricted"})
    assert "Share-Staff" in groups.managed["ad"] and "Share-Staff" not in groups.restricted["ad"]


def test_a_bad_access_table_names_the_job_file_and_key(tmp_path: Path) -> None:
    job_path = school_job(tmp_path, '[access]\nshares = "x.toml"\nsiro_email = "not an address"\nsiro_name = "S"\n')
    job = load_job(job_path)
    try:
        with pytest.raises(ConfigError) as raised:
            desired_share_groups(job, [])
    finally:
        job.close()
    assert raised.value.file == str(job_path) and raised.value.key == "access.siro_email"


def test_a_signed_link_verifies_and_any_change_to_it_is_refused() -> None:
    signer = Signer(KEY)
    token, claims = signer.mint(7, "SIRO@school.example.org", datetime(2030, 1, 1, tzinfo=UTC))
    assert signer.verify(token) == claims and claims.approver == "siro@school.example.org"
    version, payload, signature = token.split(".")
    # The last character changed to another one (a fixed "A" left one signature in sixteen unchanged).
    other = "B" if signature[-1] == "A" else "A"
    for bad in (f"{version}.{payload}x.{signature}", f"{version}.{payload}.{signature[:-1]}{other}",
                f"v2.{payload}.{signature}", "garbage", ""):
        with pytest.raises(LinkRefused) as refused:
            signer.verify(bad)
        assert refused.value.status in (400, 403)
    with pytest.raises(LinkRefused, match="forged-or-altered"):
        Signer("another-key-" + "z" * 40).verify(token)


def test_csrf_token_is_bound_to_the_cookie_and_the_link() -> None:
    signer = Signer(KEY)
    field = signer.csrf_token("cookie-1", "nonce-1")
    assert signer.csrf_ok("cookie-1", "nonce-1", field)
    assert not signer.csrf_ok("cookie-2", "nonce-1", field)
    assert not signer.csrf_ok("cookie-1", "nonce-2", field)
    assert not signer.csrf_ok(None, "nonce-1", field)
    assert not signer.csrf_ok("cookie-1", "nonce-1", None)
    assert signer.csrf_token("cookie-1", "nonce-1") != Signer("x" * 48).csrf_token("cookie-1", "nonce-1")


def test_a_short_signing_key_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(UserError, match="at least 32 characters"):
        Signer("short")


def mailer() -> Mailer:
    return Mailer.from_config({"from_address": "idl@school.example.org", "from_name": "IT\r\nBcc: a@evil.example",
                               "smtp_host": "127.0.0.1"}, {})


def test_names_and_subjects_with_line_breaks_stay_on_one_header_line() -> None:
    message = mailer().build(["siro@school.example.org"], "Access\r\nBcc: thief@evil.example", "text", "<p>x</p>",
                             to_names={"siro@school.example.org": "Zoë O'Brien\nBcc: thief@evil.example"})
    head = message.as_bytes().split(b"\r\n\r\n", 1)[0].decode()
    assert [line for line in head.split("\r\n") if line.lower().startswith("bcc")] == []
    assert message["Bcc"] is None
    assert str(message["To"].addresses[0].display_name) == "Zoë O'Brien Bcc: thief@evil.example"
    assert message.get_body(("html",)) is not None and message.get_body(("plain",)) is not None


def test_an_address_with_a_display_name_or_line_break_is_refused() -> None:
    for bad in ("Eve <eve@evil.example>", "siro@school.example.org\r\nBcc: x@evil.example", "a,b@x.org"):
        with pytest.raises(UserError, match="not an email address"):
            mailer().build([bad], "s", "t")


def test_clean_header_text_removes_every_control_character() -> None:
    assert clean_header_text("a\r\nb\x00c\u2028d\te") == "a b c d e"


def test_mail_settings_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"mail\.smtp_port"):
        Mailer.from_config({"from_address": "a@b.org", "smtp_host": "h", "smtp_port": 0}, {}, source="job.toml")
    with pytest.raises(ConfigError, match=r"mail\.graph_tenant_id: is required"):
        Mailer.from_config({"from_address": "a@b.org", "transport": "graph"}, {}, source="job.toml")
    with pytest.raises(UserError, match="smtp_password"):
        from idlifecycle.config import Secrets

        Mailer.from_config({"from_address": "a@b.org", "smtp_host": "h", "smtp_username": "u"}, Secrets(),
                           source="job.toml")


def test_an_approval_the_directories_cannot_take_now_is_left_to_the_nightly_run(tmp_path: Path) -> None:
    job = load_job(school_job(tmp_path))  # its ad.toml names no server: the connector cannot be built
    try:
        access = Access(job)
        notes = access.apply(access.share("sen-records"), "A", Action.ADD_MEMBER, "siro@school.example.org",
                             "grant #1")
        deferred = [e.data for e in job.store.audit_entries() if e.event == "access-apply-deferred"]
    finally:
        job.close()
    assert len(notes) == 1 and notes[0].startswith("could not change the directories now (")
    assert notes[0].endswith("; the nightly run will")
    assert deferred and deferred[0]["person_id"] == "A" and deferred[0]["action"] == "add-member"
