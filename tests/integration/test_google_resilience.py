"""The Google connector when Google pushes back: quotas, rate limits, lost answers, refused sign-ins,
and the sandbox tenant the demo keeps between runs."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from idlifecycle.connectors.base import AuthError, ConnectorContext, build_connector
from idlifecycle.connectors.google import SCOPES
from idlifecycle.errors import UserError
from idlifecycle.model import Outcome
from idlifecycle.sandbox.google import Fault, generate_service_account
from tests.integration.google_fixtures import (
    ADMIN,
    CLIENT_EMAIL,
    DOMAINS,
    ROOT,
    MemoryCursors,
    Tenant,
    starter,
    tenant_fixture,  # noqa: F401
)


def _people(tenant: Tenant) -> dict[str, int]:
    counts: dict[str, int] = {}
    for user in tenant.emulator.directory.users.values():
        counts[user["primaryEmail"]] = counts.get(user["primaryEmail"], 0) + 1
    return counts


def test_pacing_spreads_september_starters_under_the_quota_without_rate_limit_errors(tenant: Tenant) -> None:
    tenant.emulator.quota_per_minute = 1200
    with tenant.connector(quota_per_minute=1200, batch_size=20) as google:
        started = time.monotonic()
        results = list(google.apply([starter(f"P{n:03d}", f"pace.n{n:03d}") for n in range(100)]))
        elapsed = time.monotonic() - started
    assert all(r.outcome is Outcome.APPLIED for r in results)
    assert tenant.emulator.stats.rate_limited == 0
    # 104 calls (4 for the org units) at 20 a second: the last batch cannot leave before ~4.2 s.
    assert elapsed >= 3.5
    assert google.calls_sent == 104 and google.pacer.waited >= 3.5


def test_rate_limit_403s_429s_and_5xx_are_retried_until_every_starter_exists_once(tenant: Tenant) -> None:
    emulator = tenant.emulator
    for fault in (Fault(status=403, reason="rateLimitExceeded", message="Rate Limit Exceeded", path="/users", times=3),
                  Fault(status=403, reason="userRateLimitExceeded", message="User Rate Limit Exceeded",
                        path="/users", times=2),
                  Fault(status=429, reason="rateLimitExceeded", message="Quota exceeded for quota metric",
                        path="/users", times=2),
                  Fault(status=503, reason="backendError", path="/users", times=1)):
        emulator.inject(fault)
    with tenant.connector(batch_size=10) as google:
        results = list(google.apply([starter(f"R{n:02d}", f"retry.n{n:02d}") for n in range(20)]))
        assert google.rate_limited == 7
        # A rate limit on a snapshot page is retried too.
        emulator.inject(Fault(status=429, reason="rateLimitExceeded", method="GET", path="/users", times=1))
        assert len(google.snapshot().accounts) == 20
    assert all(r.outcome is Outcome.APPLIED for r in results), [r.detail for r in results]
    assert all(n == 1 for n in _people(tenant).values())


@pytest.mark.parametrize("lost", [1, 2])
def test_a_lost_answer_after_the_starters_were_created_never_duplicates_them(tenant: Tenant, lost: int) -> None:
    # Once lost, httplib2 quietly sends the batch again (Google answers 409 duplicate); twice lost,
    # the connector itself must look the starters up before creating them again.
    tenant.emulator.inject(Fault(action="lose_response", method="POST", path="/admin/directory/v1/users", times=lost))
    with tenant.connector() as google:
        results = list(google.apply([starter(f"L{n:02d}", f"lost.n{n:02d}") for n in range(15)]))
    assert tenant.emulator.stats.faults_fired == lost
    assert all(r.outcome in (Outcome.APPLIED, Outcome.ALREADY) for r in results), [r.detail for r in results]
    assert len(_people(tenant)) == 15 + 1 and all(n == 1 for n in _people(tenant).values())
    assert [r.key for r in results] == [tenant.user(f"lost.n{n:02d}@pupils.school.example")["id"] for n in range(15)]


def test_a_dropped_connection_before_google_acted_is_sent_again(tenant: Tenant) -> None:
    tenant.emulator.inject(Fault(action="drop", method="POST", path="/admin/directory/v1/users", times=3))
    with tenant.connector() as google:
        results = list(google.apply([starter(f"D{n}", f"drop.n{n}") for n in range(5)]))
    assert all(r.outcome is Outcome.APPLIED for r in results), [r.detail for r in results]
    assert len(_people(tenant)) == 5 + 1


def test_quota_exceeded_stops_the_run_cleanly_and_says_what_to_do(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.daily_quota = emulator.stats.calls + 4 + 21  # org unit calls, two batches, one more call
    with tenant.connector(batch_size=10) as google:
        results = list(google.apply([starter(f"Q{n:02d}", f"quota.n{n:02d}") for n in range(60)]))
    outcomes = [r.outcome for r in results]
    assert outcomes == [Outcome.APPLIED] * 21 + [Outcome.FAILED] * 39
    assert all(r.retryable and "quota for this project is used up" in r.detail and "Run again" in r.detail
               for r in results[21:])
    # Nothing more was sent once Google said the quota was gone.
    assert emulator.stats.quota_exceeded == 9
    assert len(_people(tenant)) == 21 + 1


def _refused(tenant: Tenant, **options: object) -> str:
    with tenant.connector(**options) as google, pytest.raises(AuthError) as raised:
        google.snapshot()
    assert isinstance(raised.value, UserError)
    return str(raised.value)


def test_delegation_not_set_up_names_the_client_id_and_scopes_to_authorise(tenant: Tenant) -> None:
    tenant.emulator.add_service_account(tenant.key, [])
    message = _refused(tenant)
    assert message.startswith("connectors/google.toml: Google refused to sign in the service account")
    assert f"add client ID {tenant.key['client_id']}" in message and "Domain-wide delegation" in message
    assert ",".join(SCOPES) in message


def test_a_scope_missing_from_the_delegation_gets_the_same_fix(tenant: Tenant) -> None:
    tenant.emulator.add_service_account(tenant.key, [s for s in SCOPES if not s.endswith(".security")])
    assert "admin.directory.user.security" in _refused(tenant)


def test_impersonating_someone_who_is_not_in_the_domain_names_the_admin_setting(tenant: Tenant) -> None:
    message = _refused(tenant, admin="former.head@school.example")
    assert "admin: former.head@school.example is not a user of this Google Workspace" in message
    assert "set `admin` to the primary email of a super admin" in message


def test_impersonating_a_teacher_without_admin_rights_is_refused_clearly(tenant: Tenant) -> None:
    tenant.emulator.directory.add_user("teacher@school.example", "Tia", "Teacher", "Teacher-pass-1")
    assert "admin: teacher@school.example may not manage users and groups" in _refused(
        tenant, admin="teacher@school.example")


def test_a_deleted_key_is_refused_with_the_secret_to_replace(tenant: Tenant) -> None:
    stale = generate_service_account(tenant.tmp / "old.json", client_email=CLIENT_EMAIL,
                                     token_uri=tenant.emulator.token_uri)
    context = ConnectorContext(name="google", type="google", options=tenant.options(), source="google.toml",
                               cursors=MemoryCursors(), state_dir=tenant.tmp,
                               secrets={"google_service_account": str(tenant.tmp / "old.json")})
    assert stale["client_email"] == CLIENT_EMAIL
    with build_connector(context) as google, pytest.raises(AuthError) as raised:
        google.snapshot()
    assert "its key was refused" in str(raised.value) and "secret google_service_account" in str(raised.value)


def test_a_missing_key_secret_says_where_to_put_it(tenant: Tenant) -> None:
    context = ConnectorContext(name="google", type="google", options=tenant.options(), source="google.toml",
                               cursors=MemoryCursors(), state_dir=tenant.tmp, secrets={})
    with pytest.raises(UserError, match="IDLIFECYCLE_GOOGLE_SERVICE_ACCOUNT or the file google_service_account"):
        build_connector(context)


def test_the_sandbox_tenant_keeps_the_first_runs_pupils_for_the_second(tmp_path: Path) -> None:
    context = ConnectorContext(
        name="google", type="google", source="connectors/google-sandbox.toml", cursors=MemoryCursors(),
        state_dir=tmp_path, options={"sandbox": True, "admin": ADMIN, "domains": DOMAINS, "org_unit_root": ROOT})
    with build_connector(context) as google:
        [created] = google.apply([starter("S1", "first.run")])
        assert created.outcome is Outcome.APPLIED
    key_file = tmp_path / "google-sandbox" / "service_account.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in json.loads(key_file.read_text())["private_key"]
    with build_connector(context) as google:
        [account] = google.snapshot().accounts
    assert (account.key, account.anchor) == (created.key, "S1")
