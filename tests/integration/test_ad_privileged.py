"""Admin accounts and restricted groups against a real Samba DC: a staff row never takes over a Domain
Admin, no reset or change reaches a privileged account, and a restricted share's group loses everything
the SIRO did not approve, wherever in the domain it lives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest

from idlifecycle.access.service import Access
from idlifecycle.cli import main
from idlifecycle.connectors.ad import ADConnector
from idlifecycle.errors import GuardTripped, UserError
from idlifecycle.job import Job, load_job, run_sync
from idlifecycle.model import Action, Change, Outcome
from idlifecycle.passwords.reset import reset_password
from idlifecycle.store import Store
from tests.integration.access_support import (
    Mailbox,
    mailbox,
    school_secrets,
    write_school,
)
from tests.integration.samba import DomainController, samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template"]

SEN_GROUP = "Share-SEN-Restricted"
STAFF_CSV = """Staff Code,Forename,Surname,Role,Start Date,End Date
HCA,Helen,Carter,Head Teacher,01/09/2015,
SEV,Siân,Evans,SENCo,01/09/2018,
ITA,Ian,Tadmin,Network Manager,01/09/2021,
"""
MAPPING = """[staff]
username = "{first_initial}{surname}"
domain = "test.example.com"
container = "Staff"
groups = ["All Staff"]
licences = []
match = ["login"]
"""


@pytest.fixture(scope="module")
def school_job(samba_dc: DomainController, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("privileged")
    job_path = write_school(root, samba_dc.connector_options(), mailbox, "http://127.0.0.1:9", staff_csv=STAFF_CSV)
    (root / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        for name, value in school_secrets(samba_dc.admin_password).items():
            env.setenv(name, value)
        yield job_path


def entry(dc: DomainController, search_filter: str, attributes: list[str]) -> tuple[str, dict[str, Any]]:
    conn = dc.connection()
    conn.search(dc.domain_dn, search_filter, attributes=attributes)
    [(dn, raw)] = [(e["dn"], e["raw_attributes"]) for e in conn.response if e["type"] == "searchResEntry"]
    conn.unbind()
    return dn, raw


def key_of(dc: DomainController, sam: str) -> str:
    return str(uuid.UUID(bytes_le=entry(dc, f"(sAMAccountName={sam})", ["objectGUID"])[1]["objectGUID"][0]))


def modify_group(dc: DomainController, group_dn: str, member_dn: str) -> None:
    conn = dc.connection()
    assert conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]}), conn.result
    conn.unbind()


def with_job(job_path: Path) -> Job:
    return load_job(job_path)


def test_a_staff_row_never_takes_over_an_unanchored_domain_admin(samba_dc: DomainController, school_job: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dc = samba_dc
    admin_dn = f"CN=itadmin,{dc.managed_dn}"
    conn = dc.connection()
    assert conn.add(admin_dn, ["top", "person", "organizationalPerson", "user"], {
        "sAMAccountName": "itadmin", "userPrincipalName": "itadmin@test.example.com", "givenName": "Ian",
        "sn": "Tadmin", "displayName": "IT Admin", "userAccountControl": 512,
        "unicodePwd": '"Adm1n-Of-The-Domain!"'.encode("utf-16-le")}), conn.result
    conn.unbind()
    modify_group(dc, f"CN=Domain Admins,CN=Users,{dc.domain_dn}", admin_dn)
    admin_key = key_of(dc, "itadmin")
    attributes = ["uSNChanged", "employeeID", "memberOf", "userPrincipalName", "pwdLastSet", "userAccountControl"]
    before = entry(dc, "(sAMAccountName=itadmin)", attributes)

    job = with_job(school_job)
    try:
        report = run_sync(job)
    finally:
        job.close()

    assert report.status == "ok", report.failures
    assert not [c for c in report.plan.changes if c.target == admin_key]
    [note] = [n for n in report.plan.notes if "itadmin" in n]
    assert "privileged, not managed" in note and "member of Domain Admins" in note and "Ian Tadmin" in note
    assert entry(dc, "(sAMAccountName=itadmin)", attributes) == before, "not adopted, renamed, moved or grouped"
    ian = next(c for c in report.plan.changes if c.action is Action.CREATE and c.person_id == "ITA")
    assert ian.username != "itadmin"

    # Helen's own account is put, through a nested group, into Backup Operators (BUILTIN, found by SID).
    helpers = f"CN=Backup Helpers,{dc.managed_dn}"
    conn = dc.connection()
    assert conn.add(helpers, ["top", "group"], {"sAMAccountName": "Backup Helpers"}), conn.result
    conn.unbind()
    helen_dn = entry(dc, "(employeeID=HCA)", ["cn"])[0]
    modify_group(dc, helpers, helen_dn)
    modify_group(dc, f"CN=Backup Operators,CN=Builtin,{dc.domain_dn}", helpers)
    helen_key = key_of(dc, entry(dc, "(employeeID=HCA)", ["sAMAccountName"])[1]["sAMAccountName"][0].decode())
    helen_before = entry(dc, "(employeeID=HCA)", attributes)

    job = with_job(school_job)
    try:
        with job.open_connectors() as connectors, pytest.raises(UserError) as refused:
            reset_password(job, connectors, "HCA", actor="office", mailer=None)
        assert "privileged account" in str(refused.value) and "Backup Operators" in str(refused.value)
        assert [e.data["person_id"] for e in job.store.audit_entries()
                if e.event == "password-reset-refused"] == ["HCA"]
        # The last line: a change sent straight to the executor (a saved plan, a script) is refused too.
        with job.open_connectors() as connectors:
            [result] = job.apply_changes([Change("ad", Action.SET_PASSWORD, "HCA", "hcarter", "by hand",
                                                 target=helen_key, after={"must_change_password": True})],
                                         connectors, actor="office")
        assert result.outcome is Outcome.FAILED and "privileged account (member of Backup Operators)" in result.detail
        failed = [e.data for e in job.store.audit_entries() if e.event == "change-failed"]
        assert failed[-1]["target"] == helen_key and "privileged" in failed[-1]["detail"]
        # An approved grant gives her no group either.
        access = Access(job)
        notes = access.apply(access.share("sen-records"), "HCA", Action.ADD_MEMBER, "siro@school.example.org",
                             "grant #1 approved")
        assert any("refused: " in n and "privileged account (member of Backup Operators)" in n for n in notes), notes
        assert [e.data["person_id"] for e in job.store.audit_entries() if e.event == "access-apply-refused"] == ["HCA"]
    finally:
        job.close()
    capsys.readouterr()  # the night's change lines, when an earlier test left a log handler on stderr
    assert main(["--config", str(school_job), "passwords", "reset", "HCA"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "never sets passwords of privileged accounts" in err[0], err
    assert entry(dc, "(employeeID=HCA)", attributes) == helen_before


def test_a_restricted_group_loses_domain_users_outside_accounts_groups_and_contacts(
        samba_dc: DomainController, school_job: Path) -> None:
    dc = samba_dc
    job = with_job(school_job)
    try:
        run_sync(job)  # the staff's accounts and the share's group, SENCo in it (when the test runs alone)
    finally:
        job.close()
    group_dn = entry(dc, f"(&(objectClass=group)(cn={SEN_GROUP}))", ["cn"])[0]
    conn = dc.connection()
    outsider = f"CN=Old Office PC User,CN=Users,{dc.domain_dn}"
    elsewhere = f"CN=Office Helpers,CN=Users,{dc.domain_dn}"
    contact = f"CN=Visiting Auditor,{dc.managed_dn}"
    assert conn.add(outsider, ["top", "person", "organizationalPerson", "user"],
                    {"sAMAccountName": "officepc", "userAccountControl": 514}), conn.result
    assert conn.add(elsewhere, ["top", "group"], {"sAMAccountName": "Office Helpers"}), conn.result
    assert conn.add(contact, ["top", "person", "organizationalPerson", "contact"], {"displayName": "Auditor"}), \
        conn.result
    conn.unbind()
    planted = [f"CN=Domain Users,CN=Users,{dc.domain_dn}", outsider, elsewhere, contact]
    for member in planted:
        modify_group(dc, group_dn, member)

    job_text = school_job.read_text()
    school_job.write_text(job_text.replace("max_destructive = 5", "max_destructive = 3"))
    job = with_job(school_job)
    try:
        with pytest.raises(GuardTripped, match="4 destructive changes exceed the limit of 3"):
            run_sync(job)
    finally:
        job.close()
        school_job.write_text(job_text)
    job = with_job(school_job)
    try:
        report = run_sync(job)
        audit = [e.data for e in job.store.audit_entries() if e.event == "security-incident"]
    finally:
        job.close()

    assert report.status == "ok", report.failures
    members = entry(dc, f"(&(objectClass=group)(cn={SEN_GROUP}))", ["member"])[1].get("member", [])
    names = {m.decode().split(",", 1)[0].lower() for m in members}
    assert names == {"cn=sevans"}, names
    assert {i["username"] for i in audit} == {"Domain Users", "Old Office PC User", "Office Helpers",
                                              "Visiting Auditor"}
    assert all(i["state"] == "removed" for i in audit)
    assert sum(1 for line in report.incidents if line.startswith("SECURITY INCIDENT")) == 4


def test_a_create_that_meets_a_privileged_account_with_its_name_and_anchor_is_a_conflict(
        samba_dc: DomainController) -> None:
    """A saved plan applied after someone made `badmin` (anchored to the same person) a Domain Admin."""
    dc = samba_dc
    admin_dn = f"CN=badmin,{dc.managed_dn}"
    conn = dc.connection()
    assert conn.add(admin_dn, ["top", "person", "organizationalPerson", "user"], {
        "sAMAccountName": "badmin", "userPrincipalName": "badmin@test.example.com", "employeeID": "BAD",
        "userAccountControl": 514}), conn.result
    conn.unbind()
    modify_group(dc, f"CN=Domain Admins,CN=Users,{dc.domain_dn}", admin_dn)
    store = Store(dc.root / "conflict-state.db")
    try:
        with ADConnector.from_config(dc.connector_context(store)) as ad:
            create = Change("ad", Action.CREATE, "BAD", "badmin", "new staff", after={
                "username": "badmin", "login": "badmin@test.example.com", "given_name": "Bea", "surname": "Admin",
                "display_name": "Bea Admin", "container": "", "attributes": {}, "enabled": True, "anchor": "BAD"})
            [result] = list(ad.apply([create]))
    finally:
        store.close()
    assert result.outcome is Outcome.FAILED and result.key is None
    assert "privileged account (member of Domain Admins)" in result.detail
