"""Google delegated admins' role names on the access review's Privileged roles sheet, through the real client
against the emulator: with `read_admin_roles` and the rolemanagement.readonly scope authorised, each delegated
admin is listed once per role by its Admin console name; with the scope refused (unauthorized_client at
sign-in), the sheet says so in the role cell and the review is still written; without the option, no role
is read and no scope asked for. Read back from the written workbook with openpyxl."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import openpyxl

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.connectors.google import SCOPES
from idlifecycle.connectors.google.roles import ROLES_SCOPE
from idlifecycle.passwords.generator import throwaway
from idlifecycle.reports.access_review import PRIVILEGED, ReportOptions, ReviewInput, build_review
from idlifecycle.reports.workbook import write_xlsx
from idlifecycle.sandbox.launch import GoogleSandbox
from tests.integration.google_fixtures import ADMIN, DOMAINS, ROOT, MemoryCursors, Tenant, tenant_fixture

__all__ = ["tenant_fixture"]
DOMAIN = DOMAINS["staff"]


def _roles_on_the_sheet(tenant: Tenant, tmp_path: Path, **options: object) -> set[tuple[str, str]]:
    connector = tenant.connector(**options)
    try:
        snapshot = connector.snapshot()
        holders = list(connector.privileged_roles())
    finally:
        connector.close()
    path = tmp_path / "review.xlsx"
    review = ReviewInput(date(2026, 9, 3), [], {"google": snapshot}, {"google": holders}, [], [], ReportOptions())
    write_xlsx(build_review(review), path)
    rows = list(openpyxl.load_workbook(path)[PRIVILEGED].iter_rows(values_only=True))
    header = rows[0]
    return {(r["Username"], r["Role"]) for r in (dict(zip(header, row, strict=True)) for row in rows[1:])}


def _helpers(tenant: Tenant) -> None:
    directory = tenant.emulator.directory
    directory.add_orgunit_path(f"{ROOT}/Staff")
    for login in ("helper", "office"):
        user = directory.add_user(f"{login}@{DOMAIN}", login.title(), "Admin", "correct-horse-battery",
                                  org_unit=f"{ROOT}/Staff")
        user["isDelegatedAdmin"] = True
    roles = tenant.emulator.admin_roles
    roles.assign("_HELP_DESK_ADMIN_ROLE", f"helper@{DOMAIN}")
    roles.assign("_GROUPS_ADMIN_ROLE", f"helper@{DOMAIN}")
    roles.add_role("Office password resets", "resets passwords in Staff")
    roles.assign("Office password resets", f"office@{DOMAIN}", org_unit_id=directory.orgunits[
        f"{ROOT}/Staff".lower()]["orgUnitId"])
    roles.assign("_SEED_ADMIN_ROLE", ADMIN)


def test_each_delegated_admin_is_listed_with_the_names_of_their_roles(tenant: Tenant, tmp_path: Path) -> None:
    _helpers(tenant)
    tenant.emulator.add_service_account(tenant.key, [*SCOPES, ROLES_SCOPE])
    assert _roles_on_the_sheet(tenant, tmp_path, read_admin_roles=True) == {
        (ADMIN, "super admin"),
        (f"helper@{DOMAIN}", "delegated admin: Groups Administrator"),
        (f"helper@{DOMAIN}", "delegated admin: Help Desk Administrator"),
        (f"office@{DOMAIN}", "delegated admin: Office password resets (one org unit)"),
    }


def test_a_refused_scope_is_said_on_the_sheet_and_the_review_goes_on(tenant: Tenant, tmp_path: Path) -> None:
    _helpers(tenant)  # only the connector's own scopes are authorised (the fixture's)
    refused = (f"delegated admin (role names not read: Google refused the scope {ROLES_SCOPE} for client ID "
               f"{tenant.key['client_id']}; add it to the client ID's domain-wide delegation)")
    assert _roles_on_the_sheet(tenant, tmp_path, read_admin_roles=True) == {
        (ADMIN, "super admin"), (f"helper@{DOMAIN}", refused), (f"office@{DOMAIN}", refused)}


def test_without_read_admin_roles_no_role_is_read(tenant: Tenant, tmp_path: Path) -> None:
    _helpers(tenant)
    assert _roles_on_the_sheet(tenant, tmp_path) == {
        (ADMIN, "super admin"), (f"helper@{DOMAIN}", "delegated admin"), (f"office@{DOMAIN}", "delegated admin")}


def test_the_sandbox_tenant_authorises_the_roles_scope_when_the_connector_reads_roles(tmp_path: Path) -> None:
    """The demo's delegation holds every scope its options ask for: read_admin_roles reads, not "not read"."""
    context = ConnectorContext(
        name="google", type="google-sandbox", source="connectors/google-sandbox.toml", cursors=MemoryCursors(),
        state_dir=tmp_path / "state", password_generator=throwaway,
        options={"admin": f"it.admin@{DOMAIN}", "domains": {"staff": DOMAIN}, "org_unit_root": "/School",
                 "read_admin_roles": True})
    with GoogleSandbox.from_config(context) as google:
        assert [(h.username, h.role) for h in google.privileged_roles()] == [(f"it.admin@{DOMAIN}", "super admin")]
        assert google.role_names is not None and google.role_names.by_user() == {}
