"""The pure guards of issue 12: the date against the last run, enabling counted, a saved plan still called for."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from idlifecycle.guards import (
    GuardLimits,
    check_run_date,
    counted_by_destructive_guard,
    saved_plan_drift,
    saved_targets_drift,
)
from idlifecycle.model import Action, Change, Group, Snapshot
from tests.factories import account

LAST = date(2026, 11, 23)


def test_a_date_before_the_last_run_or_long_after_it_stops_unless_that_very_date_is_allowed():
    limits = GuardLimits()
    assert check_run_date(LAST, LAST, limits) == []
    assert check_run_date(date(2026, 11, 24), LAST, limits) == []
    assert check_run_date(date(2027, 1, 22), LAST, limits) == []  # 60 days: allowed
    assert check_run_date(date(2020, 1, 1), None, limits) == []  # the first run has nothing to follow
    (before,) = check_run_date(date(2026, 11, 22), LAST, limits)
    assert before.startswith("the run's date 2026-11-22 is before the last run's (2026-11-23)")
    (gap,) = check_run_date(date(2027, 1, 23), LAST, limits)
    assert "is 61 days after the last run's (2026-11-23), more than max_days_between_runs (60)" in gap
    assert check_run_date(date(2026, 11, 22), LAST, limits, allow_date=date(2026, 11, 22)) == []
    assert check_run_date(date(2026, 11, 22), LAST, limits, allow_date=date(2026, 11, 21)) != []
    assert check_run_date(date(2027, 1, 23), LAST, replace(limits, max_days_between_runs=90)) == []


def test_enabling_an_account_is_counted_by_the_destructive_guard_and_other_changes_are_not():
    enable = Change("ad", Action.ENABLE, "1", "u", "back on roll (re-joined)", target="k")
    move = Change("ad", Action.MOVE, "1", "u", "moved", target="k", after={"container": "x"})
    assert counted_by_destructive_guard(enable)
    assert counted_by_destructive_guard(replace(enable, action=Action.DISABLE))
    assert not counted_by_destructive_guard(move)


def leaver(key: str = "k1", pid: str = "1", *, enabled: bool = True, groups: tuple[str, ...] = ("All Pupils",)) \
        -> tuple[list[Change], Snapshot]:
    acct = account(key, f"u{pid}", anchor=pid, enabled=enabled)
    snapshot = Snapshot("ad", (acct,), tuple(Group("ad", f"g-{g}", g, {key: "x"}) for g in groups))
    changes = [Change("ad", Action.REMOVE_MEMBER, pid, f"u{pid}", "left", target=key, group=g,
                      before={"member": True}, after={"member": False}) for g in groups]
    changes.append(Change("ad", Action.DISABLE, pid, f"u{pid}", "left", target=key,
                          before={"enabled": True}, after={"enabled": False}))
    return changes, snapshot


def test_remaining_changes_still_planned_afresh_go_ahead():
    changes, snapshot = leaver()
    assert saved_plan_drift(changes, changes, {"ad": snapshot}) == []


def test_a_change_no_longer_planned_and_not_done_is_refused():
    changes, snapshot = leaver()
    reasons = saved_plan_drift(changes, [], {"ad": snapshot})
    assert reasons == ["ad: remove-member u1 (left) is no longer called for by the feed and the directories; "
                       "make a new plan",
                       "ad: disable u1 (left) is no longer called for by the feed and the directories; "
                       "make a new plan"]


def test_a_change_that_landed_before_the_kill_goes_ahead_unless_something_else_is_now_wanted_for_that_account():
    changes, _ = leaver()
    _, landed = leaver(enabled=False, groups=())
    landed = replace(landed, groups=(Group("ad", "g-All Pupils", "All Pupils", {}),))
    assert saved_plan_drift(changes, [], {"ad": landed}) == []
    enable = Change("ad", Action.ENABLE, "1", "u1", "back on roll (re-joined)", target="k1")
    assert saved_plan_drift(changes, [enable], {"ad": landed}) == [
        "ad: remove-member u1: the feed and the directories now call for enable instead; make a new plan",
        "ad: disable u1: the feed and the directories now call for enable instead; make a new plan"]


def test_a_new_starters_groups_match_the_fresh_plan_once_the_account_exists():
    starter = account("new-key", "26abrown", anchor="9")
    saved = [Change("ad", Action.CREATE, "9", "26abrown", "new pupil on roll", after={"username": "26abrown"}),
             Change("ad", Action.ADD_MEMBER, "9", "26abrown", "new account: member of All Pupils", group="All Pupils")]
    fresh = [Change("ad", Action.ADD_MEMBER, "9", "26abrown", "should be in All Pupils", target="new-key",
                    group="All Pupils")]
    snapshot = Snapshot("ad", (starter,), (Group("ad", "g", "All Pupils", {}),))
    assert saved_plan_drift(saved, fresh, {"ad": snapshot}) == []
    assert saved_plan_drift(saved, [], {"ad": snapshot}) != []


def test_an_access_review_removal_is_refused_once_its_account_is_gone_or_someone_elses():
    changes, snapshot = leaver(groups=("SEN",))
    removal = changes[0]
    assert saved_targets_drift([removal], {"ad": snapshot}) == []
    assert saved_targets_drift([removal], {"ad": replace(snapshot, accounts=())}) == [
        "ad: remove-member u1: the account it was decided for (k1) is no longer in the directory; make a new plan"]
    reused = replace(snapshot, accounts=(account("k1", "u1", anchor="2"),))
    assert saved_targets_drift([removal], {"ad": reused}) == [
        "ad: remove-member u1: the account now belongs to 2, not 1; make a new plan"]
