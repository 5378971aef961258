"""The job of one command: its configuration, store and directories wired together (`open_job`), and the
steps a run is made of (read the feed, snapshot the directories, plan, guard, apply)."""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from idlifecycle import access, checkpoint, extra_people, passwords
from idlifecycle.anchors import is_short_anchor, resolve_anchors
from idlifecycle.config import JobConfig, Secrets, load_job_config
from idlifecycle.connectors.base import Connector, ConnectorContext, build_connector
from idlifecycle.dormant import DormantMark
from idlifecycle.errors import ConfigError, FeedError, GuardTripped, StalePlan, UserError
from idlifecycle.executor import Executor, PasswordFor, fresh_journal_id, saved_plan_journal_id
from idlifecycle.feeds import FeedResult, FeedSpec, check_bad_rows, read_feeds
from idlifecycle.feeds.limits import check_lengths
from idlifecycle.guards import (
    check_plan,
    check_run_date,
    counted_by_destructive_guard,
    saved_plan_drift,
    saved_targets_drift,
    stale_directories,
)
from idlifecycle.job.snapshots import read_snapshots
from idlifecycle.model import Change, Outcome, Person, Plan, Result, RowError, Snapshot
from idlifecycle.passwords.generator import throwaway
from idlifecycle.planner import Held, PlanState, ShareGroupsLike
from idlifecycle.planner import plan as make_plan
from idlifecycle.schools import FeedModel, read_schools
from idlifecycle.shape import (
    column_problems,
    leading_zero_problem,
    lost_leading_zeros,
    names_groups,
    protected_group_rows,
)

ResultHook = Callable[[Change, Result], None]


class Job:
    """One configured job, with its store open: the composition root of a command (see `open_job`).

    The areas (access, passwords, reports, notify) receive it as Protocols of what they read and never
    import this package, so nothing circles back here."""

    def __init__(self, config: JobConfig, *, today: date | None = None, secrets: Secrets | None = None,
                 check_state: bool = True) -> None:
        """Opens the store, keyed with the audit key, once it is shown to be the database the last checkpoint
        describes (`checkpoint.StateMismatch`, exit 2, if not); `check_state=False` only for `state rebuild`."""
        self.config = config
        self.today = today or date.today()
        self.secrets = secrets if secrets is not None else Secrets()
        self.store = checkpoint.open_checked_store(config, checkpoint.audit_key(config, self.secrets),
                                                   check=check_state)
        self.feed_person_ids: set[str] = set()
        """The ids in the feed this job last read (rows refused included), for resolving short anchors."""

    def close(self) -> None:
        """Every command ends here: a checkpoint of what it recorded is kept outside the database."""
        try:
            checkpoint.record(self.config, self.store)
        finally:
            self.store.close()

    def section(self, name: str) -> Mapping[str, Any]:
        return self.config.sections.get(name, {})

    def resolve_path(self, value: str) -> Path:
        return self.config.resolve(value)

    def config_error(self, key: str, message: str) -> ConfigError:
        return ConfigError(str(self.config.path), key, message)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Two runs of the same job never overlap: the second stops with a clear message.

        What was done holding it (a run, an approval from the long-running web server) is checkpointed as
        the lock is released, so the next run can tell a database rolled back to before it.
        """
        with job_lock(self.config):
            yield
            checkpoint.record(self.config, self.store)

    @contextmanager
    def open_connectors(self) -> Iterator[dict[str, Connector]]:
        with ExitStack() as stack:
            connectors: dict[str, Connector] = {}
            for spec in self.config.connectors:
                context = ConnectorContext(
                    name=spec.name, type=spec.type, options=spec.options, source=spec.source,
                    cursors=self.store, state_dir=self.config.state_dir / "sandbox", secrets=self.secrets,
                    cache_dir=self.config.state_dir / "cache", password_generator=throwaway,
                )
                connector = build_connector(context)
                stack.callback(connector.close)
                connectors[spec.name] = connector
            yield connectors

    def feed_specs(self, feeds: Sequence[FeedModel] | None = None) -> list[FeedSpec]:
        """The job's feeds (every school's, in a trust's job), or `feeds` (one school's), as the readers take them."""
        if feeds is None:
            feeds = [*self.config.feeds, *(feed for school in self.config.schools for feed in school.feeds)]
        return [
            FeedSpec(format=f.format, path=self.resolve_path(f.path),
                     options={k: v for k, v in (f.model_extra or {}).items()}, source=str(self.config.path))
            for f in feeds
        ]

    def read_feed_rows(self) -> FeedResult:
        """The feed as read: a single school's feeds as one, or each of a trust's schools on its own with
        its people's ids scoped by school (schools.py)."""
        schools = self.config.schools
        if not schools:
            return read_feeds(self.feed_specs())
        return read_schools(schools, [self.feed_specs(school.feeds) for school in schools],
                            self.config.guards.max_bad_rows_percent)

    def check_feed(self) -> tuple[FeedResult, list[str]]:
        """The feed as a run reads it, and why its columns cannot be trusted (empty when they can).

        Rows a directory would refuse (a value too long) or whose values would name a protected group are
        refused here, before they can fail a create half-way or open a share: their people are held.
        """
        mapping = self.config.mapping
        result = check_lengths(self.read_feed_rows(), [spec.type for spec in self.config.connectors],
                               roles_name_groups=names_groups(mapping, "role"))
        share_groups: set[str] = set()
        if self.section("access"):
            shares = access.desired_share_groups(self, result.people)
            share_groups = {group for groups in shares.managed.values() for group in groups}
        protected = protected_group_rows(result.people, mapping, share_groups)
        if protected:
            refused = {error.person_id for error in protected}
            result = replace(result, people=tuple(p for p in result.people if p.person_id not in refused),
                             errors=result.errors + tuple(protected))
        self.feed_person_ids = ({p.person_id for p in result.people}
                                | {e.person_id for e in result.errors if e.person_id} | set(result.skipped_ids))
        previous = (self.store.feed_profile(self.config.name) or {}).get("columns")
        return result, column_problems(result.columns, mapping, previous)

    def read_people(self) -> FeedResult:
        """The feed, checked: too many bad rows, an empty or missing feed, or a lost column stop the run here."""
        result, problems = self.check_feed()
        check_bad_rows(result, self.config.guards.max_bad_rows_percent)
        if problems:
            raise FeedError("; ".join(problems) + "; nothing was changed")
        # People outside the MIS join after the feed's own checks: they are not feed rows, so they count
        # towards neither its bad rows nor its columns (and plan_from keeps them out of the drop guard).
        extra = self.extra_people()
        if extra:
            result = replace(result, people=extra_people.merge(result.people, extra, self.config.mapping))
        return result

    def extra_people(self) -> list[extra_people.ExtraPerson]:
        path = self.config.extra_people_path
        return [] if path is None else extra_people.read_extra_people(path, self.config.mapping)

    def snapshots(self, connectors: Mapping[str, Connector]) -> dict[str, Snapshot]:
        """Each directory's snapshot (read side by side: `job.snapshots`), its accounts' anchors carrying
        full person ids.

        A directory whose anchor attribute is shorter than some ids (Entra and AD: 16) holds short
        anchors for them (idlifecycle.anchors); they are resolved here, once, from every id the store
        has linked to an account and every id in the feed, so nothing after this sees them.
        """
        snapshots = read_snapshots(connectors, self.store)  # side by side, a thread per directory
        known: set[str] | None = None
        for name, connector in connectors.items():
            limit = type(connector).capabilities.max_anchor_length
            if limit is not None and any(is_short_anchor(a.anchor) for a in snapshots[name].accounts):
                known = known if known is not None else self.store.known_person_ids() | self.feed_person_ids
                snapshots[name] = resolve_anchors(snapshots[name], known, limit)
        return snapshots

    def plan_state(self) -> PlanState:
        return PlanState(person_usernames=self.store.person_usernames(),
                         issued_usernames=self.store.issued_usernames(), disabled_on=self.store.disabled_on(),
                         dormant_marks={k: DormantMark(*v) for k, v in self.store.dormant_marks().items()},
                         keep_active=self.store.keep_active())

    def plan(self, people: Sequence[Person], snapshots: Mapping[str, Snapshot],
             connectors: Mapping[str, Connector], shares: ShareGroupsLike | None = None,
             held: Held | None = None) -> Plan:
        capabilities = {name: type(c).capabilities for name, c in connectors.items()}
        return make_plan(people, snapshots, capabilities, self.config.mapping, self.plan_state(), self.today,
                         shares=shares, held=held)

    def check_guards(self, plan: Plan, allow_destructive: int | None, *, feed_check: bool = True) -> list[str]:
        destructive = Counter(c.directory for c in plan.changes if counted_by_destructive_guard(c))
        previous = self.store.last_good_people_count(self.config.name) if feed_check else None
        return check_plan(destructive, plan.managed_counts, plan.people_count, previous,
                          self.config.guards, allow_destructive)

    def execute(self, plan: Plan, connectors: Mapping[str, Connector], *, actor: str, journal_id: str,
                password_for: PasswordFor | None = None, on_result: ResultHook | None = None) -> list[Result]:
        """Applies the plan under `journal_id`: a run's, a saved plan file's, or a fresh one (executor.py)."""
        executor = Executor(self.store, connectors, today=self.today, actor=actor, password_for=password_for,
                            on_result=on_result)
        return executor.run(journal_id, plan.changes)

    def apply_changes(self, changes: Sequence[Change], connectors: Mapping[str, Connector], *, actor: str,
                      allow_destructive: int | None = None, password_for: PasswordFor | None = None) -> list[Result]:
        """Applies changes made outside a nightly plan (an approval, a reset, a review decision), guarded."""
        plan = Plan(changes=tuple(changes), fingerprints={}, managed_counts={})
        reasons = self.check_guards(plan, allow_destructive, feed_check=False)
        if reasons:
            self.store.audit("guard-tripped", {"reasons": reasons, "changes": len(changes)}, actor=actor)
            raise GuardTripped(reasons)
        # A fresh journal every call: a second reset of the same person, or a second revocation of the
        # same access, is new work even though its changes (and their ids) are the same as the first's.
        return self.execute(plan, connectors, actor=actor, password_for=password_for,
                            journal_id=fresh_journal_id("changes"))

    def apply_saved_plan(self, plan: Plan, connectors: Mapping[str, Connector], *, actor: str,
                         allow_destructive: int | None = None, password_for: PasswordFor | None = None,
                         on_result: ResultHook | None = None, allow_date: date | None = None) -> list[Result]:
        """`idlifecycle apply PLAN.json`: checked against the directories (and the feed) every time.

        The plan's journal is the file's own (`Plan.plan_id`), so applying the same file again
        resumes it and nothing else. Before anything is sent:

        - a plan nothing of which was applied yet must find every directory exactly as it was
          planned against (the fingerprints): the reviewer saw what will happen in that state;
        - a plan made from the feed must still be called for: each change its journal does not
          record as done must be planned afresh now, from the current feed and directories, or be
          shown done already with nothing else wanted for that object (`guards.saved_plan_drift`).
          This is what lets a killed apply resume (its own changes moved the fingerprints) and what
          refuses it when the MIS or the directories moved under it;
        - a plan not made from the feed (the access review's decisions) must find each change's
          account still there and still the same person's (`guards.saved_targets_drift`).

        A refusal is StalePlan (exit 2) with a `plan-refused-stale` audit entry; nothing is applied.
        """
        # Its date counts as a run's would (leavers' disable dates are recorded with it), though an
        # apply is not a run and so does not move the last run's date.
        dated = check_run_date(self.today, self.store.last_run_day(self.config.name), self.config.guards)
        if dated and allow_date == self.today:
            self.store.audit("guard-override", {"allow_date": self.today.isoformat()}, actor=actor)
        elif dated:
            self.store.audit("guard-tripped", {"reasons": dated}, actor=actor)
            raise GuardTripped(dated)
        journal_id = saved_plan_journal_id(plan)
        journal = self.store.journal_states(journal_id)
        remaining = [c for c in plan.changes
                     if journal.get(c.change_id) is None
                     or journal[c.change_id].state not in (Outcome.APPLIED.value, Outcome.ALREADY.value)]
        if plan.origin == "feed":
            fresh, snapshots = self.plan_now(connectors)
            stale = saved_plan_drift(remaining, fresh.changes, snapshots)
        else:
            snapshots = self.snapshots(connectors)
            stale = saved_targets_drift(remaining, snapshots)
        if not journal:
            current = {name: snap.fingerprint() for name, snap in snapshots.items() if name in plan.fingerprints}
            stale = stale_directories(plan.fingerprints, current) + stale
        if stale:
            self.store.audit("plan-refused-stale", {"reasons": stale, "plan_id": journal_id}, actor=actor)
            raise StalePlan(stale)
        reasons = self.check_guards(plan, allow_destructive, feed_check=False)
        if reasons:
            self.store.audit("guard-tripped", {"reasons": reasons}, actor=actor)
            raise GuardTripped(reasons)
        if allow_destructive:
            self.store.audit("guard-override", {"allow_destructive": allow_destructive}, actor=actor)
        return self.execute(plan, connectors, actor=actor, password_for=password_for, on_result=on_result,
                            journal_id=journal_id)

    def plan_now(self, connectors: Mapping[str, Connector]) -> tuple[Plan, dict[str, Snapshot]]:
        """What the nightly run would plan now from the current feed and directories; nothing is applied.

        The same steps as `night._sync`'s planning, for checking a saved plan against the present.
        """
        feed = self.read_people()
        snapshots = self.snapshots(connectors)
        fresh, _, _ = self.plan_from(feed, snapshots, connectors)
        return fresh, snapshots

    def plan_from(self, feed: FeedResult, snapshots: Mapping[str, Snapshot],
                  connectors: Mapping[str, Connector]) -> tuple[Plan, Held, list[Change]]:
        """The nightly plan for a feed and the directories' snapshots, the people it holds, its termly changes.

        Refused rows hold their people (nothing is planned for them); ids that lost their leading zeros
        stop here (FeedError) before they read as a school of leavers and starters.
        """
        held = replace(held_rows(feed.errors), listed=feed.skipped_ids)
        known = self.store.known_person_ids() | {a.anchor for s in snapshots.values() for a in s.accounts if a.anchor}
        zeros = lost_leading_zeros((p.person_id for p in feed.people), known)
        if zeros:
            raise FeedError(leading_zero_problem(zeros))
        shares = access.desired_share_groups(self, feed.people) if self.section("access") else None
        plan = self.plan(feed.people, snapshots, connectors, shares, held)
        people = {p.person_id: p for p in feed.people if not held.holds(p.person_id)}
        # A held person's accounts are left as they are: no termly flag or cleared "never expires" either.
        termly = [c for c in passwords.termly_changes(self, snapshots, people) if not held.holds(c.person_id)]
        # The feed drop guard compares feed people with the last run's: extra people are not the MIS's.
        extras = sum(1 for p in feed.people if p.extra_kind is not None)
        plan = replace(plan, changes=plan.changes + tuple(termly), people_count=plan.people_count - extras,
                       rejected_rows=tuple(str(error) for error in feed.errors),
                       notes=plan.notes + tuple(note for s in snapshots.values() for note in s.notes)
                       + (shares.kept_out if shares is not None else ()))
        return plan, held, termly



@contextmanager
def job_lock(config: JobConfig) -> Iterator[None]:
    """The job's lock, also held by `state rebuild` before it has a store to open."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    path = config.state_dir / f"{config.name}.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"job {config.name!r} is already running (pid {holder}); "
                            f"lock file {path}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_job(path: Path | str, *, today: date | None = None, secrets: Secrets | None = None,
             check_state: bool = True) -> Job:
    return Job(load_job_config(path), today=today, secrets=secrets, check_state=check_state)


@contextmanager
def open_job(path: Path | str, *, today: date | None = None, secrets: Secrets | None = None) -> Iterator[Job]:
    """The job of one command: built once, and closed (its checkpoint kept) however the command ends."""
    job = load_job(path, today=today, secrets=secrets)
    try:
        yield job
    finally:
        job.close()



def held_rows(errors: Sequence[RowError]) -> Held:
    """The people the refused rows describe, by the id each row carries; rows without one, apart."""
    rows: dict[str, list[str]] = {}
    unidentified: dict[tuple[str, int], str] = {}
    for error in errors:
        if error.person_id:
            rows.setdefault(error.person_id, []).append(str(error))
        else:
            unidentified.setdefault((error.file, error.line), str(error))
    return Held({pid: tuple(found) for pid, found in rows.items()}, tuple(unidentified.values()))


