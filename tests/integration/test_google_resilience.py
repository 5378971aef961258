"""The Google connector when Google pushes back: quotas, rate limits, the concurrency limit, the
propagation delay after a create, every class of documented error, lost answers, refused sign-ins,
and the sandbox tenant the demo keeps between runs."""

from __future__ import annotations

import json
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from idlifecycle.connectors.base import AuthError, ConnectorContext, build_connector
from idlifecycle.connectors.google import SCOPES
from idlifecycle.connectors.google.session import LIMITS, REASONS, Verdict
from idlifecycle.errors import UserError
from idlifecycle.model import Action, Outcome
from idlifecycle.passwords.generator import throwaway
from idlifecycle.sandbox.google import Fault, generate_service_account
from tests.integration.google_fixtures import (
    ADMIN,
    CLIENT_EMAIL,
    DOMAINS,
    ROOT,
    MemoryCursors,
    Tenant,
    change,
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
    with tenant.connector(quota_per_minute=1200, batch_size=20, burst_seconds=0) as google:
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
    # The transport sends each request once (google.transport), so the connector itself looks the
    # starters up before creating them again, and Google's duplicate answer to its own resend (a
    # look-up that propagation still hides) reads as this run's create landing: applied, not "already so".
    tenant.emulator.inject(Fault(action="lose_response", method="POST", path="/admin/directory/v1/users", times=lost))
    with tenant.connector() as google:
        results = list(google.apply([starter(f"L{n:02d}", f"lost.n{n:02d}") for n in range(15)]))
    assert tenant.emulator.stats.faults_fired == lost
    assert all(r.outcome is Outcome.APPLIED for r in results), [(r.outcome, r.detail) for r in results]
    assert len(_people(tenant)) == 15 + 1 and all(n == 1 for n in _people(tenant).values())
    assert [r.key for r in results] == [tenant.user(f"lost.n{n:02d}@pupils.school.example")["id"] for n in range(15)]


def test_a_dropped_connection_before_google_acted_is_sent_again(tenant: Tenant) -> None:
    tenant.emulator.inject(Fault(action="drop", method="POST", path="/admin/directory/v1/users", times=3))
    with tenant.connector() as google:
        results = list(google.apply([starter(f"D{n}", f"drop.n{n}") for n in range(5)]))
    assert all(r.outcome is Outcome.APPLIED for r in results), [r.detail for r in results]
    assert len(_people(tenant)) == 5 + 1


def test_quota_exceeded_is_googles_concurrency_limit_the_run_slows_down_and_nothing_fails(tenant: Tenant) -> None:
    # Directory API, Limits and quotas: 403 quotaExceeded is "the limit of concurrent requests for
    # a certain operation"; retry with back-off. The connector used to stop the whole run on it.
    emulator = tenant.emulator
    emulator.concurrent_limit = 15
    with tenant.connector(batch_size=40) as google:
        results = list(google.apply([starter(f"Q{n:02d}", f"quota.n{n:02d}") for n in range(60)]))
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 60, [r.detail for r in results]
    assert len(_people(tenant)) == 60 + 1 and all(n == 1 for n in _people(tenant).values())
    # The first batch of 40 met the limit once; later batches held no more than Google took at once.
    assert emulator.stats.quota_exceeded == 40 - 15
    assert google.rate_limited == 25


def test_a_used_up_daily_limit_stops_the_run_cleanly_and_says_what_to_do(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.daily_quota = emulator.stats.calls + 4 + 21  # org unit calls, two batches, one more call
    with tenant.connector(batch_size=10) as google:
        results = list(google.apply([starter(f"Q{n:02d}", f"quota.n{n:02d}") for n in range(60)]))
    outcomes = [r.outcome for r in results]
    assert outcomes == [Outcome.APPLIED] * 21 + [Outcome.FAILED] * 39
    assert all(r.retryable and "daily limit for this project is used up" in r.detail and "Run again" in r.detail
               for r in results[21:])
    # Nothing more was sent once Google said the day's limit was gone.
    assert emulator.stats.daily_limit_exceeded == 9
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
                               secrets={"google_service_account": str(tenant.tmp / "old.json")},
                               password_generator=throwaway)
    assert stale["client_email"] == CLIENT_EMAIL
    with build_connector(context) as google, pytest.raises(AuthError) as raised:
        google.snapshot()
    assert "its key was refused" in str(raised.value) and "secret google_service_account" in str(raised.value)


def test_a_missing_key_secret_says_where_to_put_it(tenant: Tenant) -> None:
    context = ConnectorContext(name="google", type="google", options=tenant.options(), source="google.toml",
                               cursors=MemoryCursors(), state_dir=tenant.tmp, secrets={})
    # The contract's one message for a missing secret (ConnectorContext.secret), naming the file too.
    with pytest.raises(UserError) as raised:
        build_connector(context)
    assert str(raised.value) == (
        "google.toml: missing the service-account key (secret 'google_service_account'): set "
        "IDLIFECYCLE_GOOGLE_SERVICE_ACCOUNT or put it in a file named google_service_account in "
        "$IDLIFECYCLE_SECRETS_DIR")


def test_the_sandbox_tenant_keeps_the_first_runs_pupils_for_the_second(tmp_path: Path) -> None:
    context = ConnectorContext(
        name="google", type="google", source="connectors/google-sandbox.toml", cursors=MemoryCursors(),
        state_dir=tmp_path, options={"sandbox": True, "admin": ADMIN, "domains": DOMAINS, "org_unit_root": ROOT},
        password_generator=throwaway)
    with build_connector(context) as google:
        [created] = google.apply([starter("S1", "first.run")])
        assert created.outcome is Outcome.APPLIED
    key_file = tmp_path / "google-sandbox" / "service_account.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in json.loads(key_file.read_text())["private_key"]
    with build_connector(context) as google:
        [account] = google.snapshot().accounts
    assert (account.key, account.anchor) == (created.key, "S1")


# -- Google's propagation delay after a create (users.insert reference; lithnet/googleapps-managementagent#7) --


def test_starters_joined_to_groups_moments_after_their_create_are_applied_not_no_longer_exist(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.directory.replication_window = 1.0
    with tenant.connector() as google:
        groups = list(google.apply([change(Action.CREATE_GROUP, "", group=g) for g in ("Year 7", "Pupils")]))
        created = list(google.apply([starter(f"N{n:02d}", f"new.n{n:02d}") for n in range(10)]))
        # The next phase of the same run: the groups and the starters are seconds old.
        joins = list(google.apply([change(Action.ADD_MEMBER, str(r.key), group=g)
                                   for r in created for g in ("Year 7", "Pupils")]))
    assert all(r.outcome is Outcome.APPLIED for r in [*groups, *created, *joins]), [r.detail for r in joins]
    assert emulator.stats.replication_refusals >= 20 and google.settling_retries >= 20
    assert len(emulator.directory.member_emails("year-7@school.example")) == 10


def test_members_added_to_a_group_created_moments_ago_are_applied(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.directory.replication_window = 1.0
    staff = [emulator.directory.add_user(f"t{n}@school.example", "Tea", f"Cher{n}", "Settled-Long-Ago-1")["id"]
             for n in range(3)]
    with tenant.connector() as google:
        [group] = google.apply([change(Action.CREATE_GROUP, "", group="All Staff")])
        joins = list(google.apply([change(Action.ADD_MEMBER, key, group="All Staff") for key in staff]))
    assert all(r.outcome is Outcome.APPLIED for r in joins), [r.detail for r in joins]
    assert emulator.stats.replication_refusals >= 3
    assert len(emulator.directory.member_emails("all-staff@school.example")) == 3 and group.key


def test_a_starter_changed_straight_after_the_create_waits_out_user_creation_is_not_complete(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.directory.replication_window = 1.0
    with tenant.connector() as google:
        [created] = google.apply([starter("W1", "wren.hall")])
        # e.g. a pupil who joined and left between two runs' feeds: disable = patch + signOut.
        [disabled] = google.apply([change(Action.DISABLE, str(created.key))])
    assert disabled.outcome is Outcome.APPLIED, disabled.detail
    assert tenant.user(str(created.key))["suspended"] and emulator.directory.sign_outs(str(created.key)) == 1
    assert emulator.stats.replication_refusals >= 1


def test_a_404_about_an_account_this_run_did_not_create_is_still_gone(tenant: Tenant) -> None:
    emulator = tenant.emulator
    old = emulator.directory.add_user("old.leaver@pupils.school.example", "Old", "Leaver", "Settled-Long-Ago-1")
    with tenant.connector() as google:
        [group] = google.apply([change(Action.CREATE_GROUP, "", group="Year 9")])
        assert group.outcome is Outcome.APPLIED
        time.sleep(emulator.directory.replication_window)
        emulator.directory.delete_user(old["id"])  # deleted by hand in the Admin console
        started = time.monotonic()
        [join] = google.apply([change(Action.ADD_MEMBER, old["id"], group="Year 9")])
        [gone] = google.apply([change(Action.DELETE, old["id"])])
        elapsed = time.monotonic() - started
    assert join.outcome is Outcome.FAILED and "no Google user" in join.detail
    assert gone.outcome is Outcome.ALREADY
    assert google.settling_retries == 0 and elapsed < 2


def test_an_account_google_is_still_finishing_after_the_wait_fails_for_the_next_run(tenant: Tenant) -> None:
    tenant.emulator.directory.replication_window = 30.0
    with tenant.connector(replication_wait=1) as google:
        [created] = google.apply([starter("S9", "slow.one")])
        [changed] = google.apply([change(Action.REQUIRE_PASSWORD_CHANGE, str(created.key))])
    assert changed.outcome is Outcome.FAILED and changed.retryable
    assert "still finishing" in changed.detail and "the next run tries again" in changed.detail


# -- every documented error reason classified (google.session.REASONS): one per class --


def test_the_error_table_names_a_source_for_every_reason_and_retries_every_limit_the_limits_page_lists() -> None:
    assert all(rule.source.startswith("https://") for rule in REASONS.values())
    assert {r for r, rule in REASONS.items() if rule.source == LIMITS} == {
        "userRateLimitExceeded", "quotaExceeded", "rateLimitExceeded"}
    assert all(REASONS[r].verdict is Verdict.RETRY for r in ("userRateLimitExceeded", "quotaExceeded",
                                                              "rateLimitExceeded", "backendError"))


def test_in_one_batch_a_refused_value_fails_that_change_while_the_concurrency_limit_is_retried(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.concurrent_limit = 3
    emulator.inject(Fault(status=400, reason="invalid", message="Invalid Input: custom_schema",
                          method="POST", path="/users", times=1))
    with tenant.connector(batch_size=6) as google:
        results = list(google.apply([starter(f"V{n}", f"value.n{n}") for n in range(6)]))
    [failed] = [r for r in results if r.outcome is Outcome.FAILED]
    assert "400 invalid: Invalid Input: custom_schema" in failed.detail and not failed.retryable
    assert [r.outcome for r in results].count(Outcome.APPLIED) == 5 and emulator.stats.quota_exceeded >= 1


def test_the_admin_sdk_switched_off_for_the_project_stops_the_run_with_the_fix(tenant: Tenant) -> None:
    tenant.emulator.inject(Fault(status=403, reason="accessNotConfigured", method="GET", path="/users",
                                 message="Admin SDK API has not been used in project 1234 before or it is disabled."))
    with tenant.connector() as google, pytest.raises(AuthError) as raised:
        google.snapshot()
    assert "enable the Admin SDK API" in str(raised.value)


@pytest.mark.parametrize("reason", ["concurrentLimitExceeded", "limitExceeded"])
def test_the_global_domains_other_limits_are_retried_too(tenant: Tenant, reason: str) -> None:
    # Google's global error domain lists these 403s beside the rate limits
    # (https://cloud.google.com/resource-manager/docs/core_errors#FORBIDDEN); they pass with time.
    tenant.emulator.inject(Fault(status=403, reason=reason, message="Limit Exceeded", path="/users", times=2))
    with tenant.connector() as google:
        [result] = google.apply([starter("E1", "limit.once")])
    assert result.outcome is Outcome.APPLIED and len(_people(tenant)) == 2


def test_a_deleted_answer_to_a_delete_is_already_gone(tenant: Tenant) -> None:
    # 410 deleted: "The request failed because the resource associated with the request has been
    # deleted" (https://cloud.google.com/resource-manager/docs/core_errors#GONE).
    old = tenant.emulator.directory.add_user("gone.leaver@pupils.school.example", "Gone", "Leaver", "Settled-Long-1")
    tenant.emulator.inject(Fault(status=410, reason="deleted", message="Resource has been deleted", method="DELETE",
                                 path="/users/", times=1))
    with tenant.connector() as google:
        [result] = google.apply([change(Action.DELETE, old["id"])])
    assert result.outcome is Outcome.ALREADY


@dataclass
class RefusedAfter(Fault):
    """An error answer from the `after`-th matching call on (the first sends go through)."""

    after: int = 1
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        if not super().matches(method, path):
            return False
        self.seen += 1
        return self.seen > self.after


@pytest.mark.parametrize("lost_first", [True, False], ids=["answer-lost-then-refused", "refused-only"])
def test_a_removal_whose_answer_was_lost_and_whose_resend_was_refused_is_unconfirmed(
        tenant: Tenant, lost_first: bool) -> None:
    """The removal landed but its answer was lost; Google refused the resend. Recorded plainly failed, the
    next plan has nothing left to do and no audit entry would ever name the removal that happened: so it
    is unconfirmed, for the next run's look. Refused without an earlier lost answer, it plainly failed."""
    emulator = tenant.emulator
    with tenant.connector() as google:
        [made] = google.apply([starter("U01", "gone.member")])
        [group] = google.apply([change(Action.CREATE_GROUP, "", group="Year 7 pupils")])
        assert group.outcome is Outcome.APPLIED, group.detail
        [added] = google.apply([change(Action.ADD_MEMBER, str(made.key), group="Year 7 pupils")])
        assert added.outcome is Outcome.APPLIED
        if lost_first:
            emulator.inject(Fault(action="lose_response", method="DELETE", path="/members", times=1))
        emulator.inject(RefusedAfter(status=400, reason="invalid", message="Invalid Input: memberKey",
                                     method="DELETE", path="/members", times=1, after=int(lost_first)))
        [removal] = google.apply([change(Action.REMOVE_MEMBER, str(made.key), group="Year 7 pupils")])
    assert removal.outcome is Outcome.FAILED, removal.detail
    assert removal.unconfirmed is lost_first, removal.detail
    members = emulator.directory.member_emails("year-7-pupils@school.example")
    assert members == ([] if lost_first else ["gone.member@pupils.school.example"])
