"""A user whose primary group is nested in a protected group is privileged, against a real Samba DC.

A primary group is not listed in the group's `member` nor the user's `memberOf`: only `primaryGroupID`
(a RID) says it, so walking `memberOf` alone misses an account whose primary group is, say, "IT Tier 0",
itself a member of Domain Admins (or, one level further, of Administrators)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ldap3
import pytest
from ldap3.protocol.formatters.formatters import format_sid

from idlifecycle.connectors.ad import ADConnector
from idlifecycle.store import Store
from tests.integration.samba import DomainController, samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["samba_dc", "samba_template"]


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    opened = Store(tmp_path / "state.db")
    yield opened
    opened.close()


def _ok(conn: ldap3.Connection, done: bool) -> None:
    assert done, conn.result


def _one(conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict[str, Any]:
    _ok(conn, conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes))
    return dict(conn.response[0]["raw_attributes"])


def _give_primary_group(dc: DomainController, sam: str, group: str, parent_group_dn: str) -> None:
    """A user in the managed OU whose primary group is `group`, a group nested in `parent_group_dn`."""
    conn = dc.connection()
    user_dn, group_dn = f"CN={sam},{dc.managed_dn}", f"CN={group},{dc.managed_dn}"
    _ok(conn, conn.add(group_dn, ["top", "group"], {"sAMAccountName": group}))
    _ok(conn, conn.modify(parent_group_dn, {"member": [(ldap3.MODIFY_ADD, [group_dn])]}))
    _ok(conn, conn.add(user_dn, ["top", "person", "organizationalPerson", "user"], {
        "sAMAccountName": sam, "userPrincipalName": f"{sam}@test.example.com", "givenName": "Pat",
        "sn": "Rimary", "displayName": f"Pat Rimary ({sam})", "userAccountControl": 512,
        "unicodePwd": '"Pr1mary-Of-The-Domain!"'.encode("utf-16-le")}))
    # AD wants the user in the group before it can be the primary one; the link then leaves `member`.
    _ok(conn, conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [user_dn])]}))
    rid = format_sid(_one(conn, group_dn, ["objectSid"])["objectSid"][0]).rsplit("-", 1)[1]
    _ok(conn, conn.modify(user_dn, {"primaryGroupID": [(ldap3.MODIFY_REPLACE, [rid])]}))
    if user_dn.lower() in (m.decode().lower() for m in _one(conn, group_dn, ["member"]).get("member", [])):
        _ok(conn, conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [user_dn])]}))
    user = _one(conn, user_dn, ["memberOf", "primaryGroupID"])
    conn.unbind()
    assert user["primaryGroupID"] == [rid.encode()]
    # The old primary group (Domain Users) becomes an ordinary membership; the new one is not listed.
    assert group_dn.lower() not in (m.decode().lower() for m in user.get("memberOf", [])), \
        "only primaryGroupID ties the user to the group"


@pytest.mark.parametrize(("sam", "group", "parent", "role"), [
    ("ptier0", "IT Tier 0", "CN=Domain Admins,CN=Users", "Domain Admins"),
    ("ptier1", "IT Tier 1", "CN=Administrators,CN=Builtin", "Administrators"),
])
def test_a_primary_group_nested_in_a_protected_group_makes_the_account_privileged(
        samba_dc: DomainController, store: Store, sam: str, group: str, parent: str, role: str) -> None:
    _give_primary_group(samba_dc, sam, group, f"{parent},{samba_dc.domain_dn}")
    ad = ADConnector.from_config(samba_dc.connector_context(store))
    try:
        [account] = [a for a in ad.snapshot().accounts if a.username == sam]
        assert account.privileged == f"member of {role}"
        assert ad.privileged_reason(account.key) == f"member of {role}"
        # And the access review's Privileged roles sheet lists the account under the role.
        assert (role, sam) in {(h.role, h.username) for h in ad.privileged_roles()}
        # AD cannot tell whether an admin has a second factor, and the sheet says so rather than guess.
        assert {h.second_factor for h in ad.privileged_roles()} == {"unknown — AD does not record a second factor"}
    finally:
        ad.close()
