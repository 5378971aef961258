"""Access requests, the SIRO's decision through a signed link, grants applied at once, and revocation.

How "bound to the approver" is verified: each link's token names the approver's email address and
is signed; its nonce is stored with that address. The link is honoured only while that address is
the job's configured SIRO (`access.siro_email`), so a link minted for a previous or different
approver fails even though its signature is good. A link is a bearer credential: anyone it is
forwarded to could use it once, before it expires. That is why it works once, expires (72 h by
default), and every decision is confirmed by email to the SIRO and the requester, so a decision the
SIRO did not make is noticed at once; the audit log records the browser's address and user agent.
With staff sign-in (`[web] sign_in`), the web app also passes who is signed in, and only the SIRO or a
deputy (`siro_deputies`) may decide (`may_decide`): a forwarded link is then refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from idlifecycle.access._job import AccessJob
from idlifecycle.access.messages import Email, approval_request, decided, grant_ended, request_received
from idlifecycle.access.records import AccessRecords, AccessRequest, Grant, utcnow
from idlifecycle.access.refusals import CappedRefusals
from idlifecycle.access.shares import (
    AccessSettings,
    Registry,
    Share,
    WebLimits,
    access_settings,
    registry_for,
    web_limits,
    web_settings,
)
from idlifecycle.access.tokens import LinkClaims, LinkRefused, Signer
from idlifecycle.errors import GuardTripped, UserError
from idlifecycle.model import Action, Change, Outcome, Person
from idlifecycle.notify import Mailer, valid_email

MAX_REASON = 1000


@dataclass(frozen=True)
class Client:
    """Who is at the other end of a web request, for the audit log."""

    address: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class Decision:
    request: AccessRequest
    share: Share
    decision: str
    grant: Grant | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Holding:
    """One line of `access list`: who has a share's group and why."""

    share: str
    person_id: str
    person_name: str
    basis: str
    """"baseline" or "grant #N"."""
    approver: str = ""
    expires: datetime | None = None
    reason: str = ""



class Access:
    """The access area of one job (use from one thread: it holds the job's store)."""

    def __init__(self, job: AccessJob) -> None:
        self.job = job
        self.settings: AccessSettings = access_settings(job)
        self.registry: Registry = registry_for(job, self.settings)
        self.records = AccessRecords(job.store)

    @cached_property
    def limits(self) -> WebLimits:
        """`[web.limits]`: read when a refusal is first audited, so a job without `[web]` needs none."""
        return web_limits(self.job)

    @cached_property
    def signer(self) -> Signer:
        return Signer(self.job.secrets["approval_signing_key"])

    @cached_property
    def mailer(self) -> Mailer | None:
        return Mailer.from_job(self.job)

    @property
    def siro(self) -> str:
        return self.settings.siro_email.lower()

    def share(self, name: str) -> Share:
        share = self.registry.get(name)
        if share is None:
            raise UserError(f"no share named {name!r} in {self.registry.path}; "
                            f"known shares: {', '.join(sorted(self.registry.shares))}")
        return share

    def people(self) -> dict[str, Person]:
        return {p.person_id: p for p in self.job.read_people().people}

    # requests ---------------------------------------------------------------------------------

    def check_request(self, share_name: str, reason: str, days: int) -> tuple[Share, str]:
        """The share and the trimmed reason of a request that may be made; UserError naming what is wrong.

        Nothing here depends on the person, so the web form's answer to a bad request is the same
        whoever it names.
        """
        share = self.share(share_name)
        reason = reason.strip()
        if not reason:
            raise UserError("give a reason: the SIRO decides on it")
        if len(reason) > MAX_REASON:
            raise UserError(f"the reason is {len(reason)} characters; keep it under {MAX_REASON}")
        if not 1 <= days <= share.max_grant_days:
            raise UserError(f"--days must be between 1 and {share.max_grant_days} for {share.name} "
                            f"(its maximum grant length)")
        self._mailer()
        return share, reason

    def request(self, share_name: str, person_id: str, reason: str, days: int, requester: str,
                *, now: datetime | None = None) -> AccessRequest:
        """Record a request and email the SIRO a link.

        The link is never returned or printed: whoever holds it can decide the request, and the
        requester must not be able to approve their own request.
        """
        share, reason = self.check_request(share_name, reason, days)
        person = self.people().get(person_id)
        if person is None:
            raise UserError(f"person {person_id!r} is not in the feed: use the MIS id")
        return self._record_request(share, person, reason, days, requester, now or utcnow())

    def request_if_known(self, share_name: str, person_id: str, reason: str, days: int, requester: str,
                         client: Client) -> AccessRequest | None:
        """The web form's request: the SIRO is asked only when the MIS knows the person.

        An unknown id is recorded in the audit log and nothing is sent, and the form answers the
        same either way, so the form cannot be used to find out who is on the school's roll.
        """
        share, reason = self.check_request(share_name, reason, days)
        person = self.people().get(person_id)
        if person is None:
            self.job.store.audit("access-request-unknown-person", {
                "share": share.name, "person_id": person_id[:64], "requester": requester,
                "client": client.address}, actor=requester)
            return None
        return self._record_request(share, person, reason, days, requester, utcnow())

    def _record_request(self, share: Share, person: Person, reason: str, days: int, requester: str,
                        now: datetime) -> AccessRequest:
        mailer = self._mailer()
        access_request = self.records.add_request(share.name, person.person_id, person.display_name, reason,
                                                  days, requester, now)
        self.job.store.audit("access-requested", {
            "request_id": access_request.request_id, "share": share.name, "person_id": person.person_id,
            "reason": reason, "days": days, "requester": requester}, actor=requester)
        self.send_link(access_request, now=now, mailer=mailer, person=person)
        if valid_email(requester):
            self._send(mailer, requester, request_received(access_request, share, self.settings.siro_name))
        return access_request

    def send_link(self, access_request: AccessRequest, *, now: datetime | None = None,
                  mailer: Mailer | None = None, approver: str | None = None, person: Person | None = None) -> None:
        """Mint a link for the approver (the SIRO unless named), store it and email it.

        The email says whether the person is a pupil or staff as the MIS has them (never as the
        requester said), so a request for a pupil dressed up as a colleague's stands out.
        """
        if access_request.status != "pending":
            raise UserError(f"request #{access_request.request_id} was already {access_request.status}")
        now = now or utcnow()
        approver = (approver or self.siro).lower()
        expires = now + timedelta(hours=self.settings.link_hours)
        token, claims = self.signer.mint(access_request.request_id, approver, expires)
        self.records.add_link(claims.nonce, access_request.request_id, approver, now, expires)
        url = f"{web_settings(self.job).public_base_url}/approve?t={token}"
        share = self.share(access_request.share)
        email = approval_request(access_request, share, self.settings.siro_name, url, expires,
                                 self.person_kind(access_request.person_id, person))
        self._send(mailer or self._mailer(), approver, email,
                   names={approver: self.settings.siro_name} if approver == self.siro else None)
        self.job.store.audit("approval-link-sent", {
            "request_id": access_request.request_id, "approver": approver, "expires": expires.isoformat()})

    def person_kind(self, person_id: str, person: Person | None = None) -> str:
        """Pupil or staff as the MIS has the person now (never as the requester said), for the SIRO."""
        person = person or self.people().get(person_id)
        return str(person.kind).capitalize() if person is not None else "not in the MIS feed now"

    # the link ---------------------------------------------------------------------------------

    def check_link(self, token: str, client: Client, *, now: datetime | None = None) -> tuple[LinkClaims,
                                                                                             AccessRequest]:
        """The claims and request of a link that may still be acted on; LinkRefused (audited) otherwise."""
        try:
            return self._check_link(token, now or utcnow())
        except LinkRefused as refused:
            self.refused(refused, client)
            raise

    def _check_link(self, token: str, now: datetime) -> tuple[LinkClaims, AccessRequest]:
        claims = self.signer.verify(token)
        link = self.records.link(claims.nonce)
        if link is None or link.request_id != claims.request_id or link.approver != claims.approver:
            raise LinkRefused("unknown-link", 403, "This approval link is not one this service issued.",
                              claims.request_id)
        if claims.approver != self.siro:
            raise LinkRefused("wrong-approver", 403,
                              "This approval link was issued to a different approver. Only the SIRO's own "
                              "link can decide this request.", claims.request_id)
        access_request = self.records.request(claims.request_id)
        assert access_request is not None
        if link.used_at is not None:
            raise LinkRefused("replayed", 409, f"This link has already been used; request "
                              f"#{access_request.request_id} was {access_request.status}.", claims.request_id)
        if now >= claims.expires:
            raise LinkRefused("expired", 410, "This approval link has expired. Ask for a new one with "
                              f"`idlifecycle access approve-link {claims.request_id}`.", claims.request_id)
        if access_request.status != "pending":
            raise LinkRefused("already-decided", 409,
                              f"Request #{access_request.request_id} was already {access_request.status}.",
                              claims.request_id)
        return claims, access_request

    @cached_property
    def _refusals(self) -> CappedRefusals:
        return CappedRefusals("approval-link-refused", "links-refused", self.limits.refused_audit_window_seconds,
                              self.limits.refused_audit_clients)

    def refused(self, refused: LinkRefused, client: Client, *, now: datetime | None = None) -> None:
        """Audit a refused link or form, capped (`refusals.CappedRefusals`): the first refusal of a kind
        in a window is written in full, the rest of that window as one `links-refused` row with their count."""
        self._refusals.record(self.job.store, refused.reason, client.address, {
            "request_id": refused.request_id, "user_agent": client.user_agent[:200]}, now or utcnow())

    def flush_refusals(self, now: datetime | None = None) -> None:
        """Write the count of each kind's refusals whose window has passed (all of them when `now` is None)."""
        if "_refusals" in self.__dict__:  # nothing refused yet: no need to read [web.limits]
            self._refusals.flush(self.job.store, now)

    def may_decide(self, signed_in_as: str, request_id: int, client: Client) -> bool:
        """With staff sign-in: whether the signed-in person decides as a deputy (False: as the SIRO);
        anyone else is refused, and that is audited in full (they are signed in, so not a flood)."""
        who = signed_in_as.lower()
        if who == self.siro:
            return False
        if who in {d.lower() for d in self.settings.siro_deputies}:
            return True
        self.job.store.audit("approval-refused-signed-in", {
            "request_id": request_id, "signed_in_as": who, "client": client.address,
            "user_agent": client.user_agent[:200]}, actor=who)
        raise LinkRefused("not-the-approver", 403, "Only the SIRO or a deputy the school has named can decide "
                          "this request. This link may have been forwarded to you.",
                          request_id)

    def decide(self, token: str, decision: str, csrf_cookie: str | None, csrf_field: str | None,
               client: Client, *, now: datetime | None = None, signed_in_as: str | None = None) -> Decision:
        """Approve or deny through a link (POST only): CSRF checked, link spent, grant applied, people told.

        `signed_in_as` (with staff sign-in): who decides, who must be the SIRO or a deputy; the decision
        and the grant then name them (and "deputy for the SIRO"). Without it, the link's approver."""
        now = now or utcnow()
        if decision not in ("approve", "deny"):
            raise LinkRefused("bad-decision", 400, "Choose Approve or Deny.")
        claims, access_request = self.check_link(token, client, now=now)
        if not self.signer.csrf_ok(csrf_cookie, claims.nonce, csrf_field):
            refused = LinkRefused("csrf", 403, "This form did not come from the approval page in this browser. "
                                  "Open the link from the email again.", claims.request_id)
            self.refused(refused, client)
            raise refused
        address = (signed_in_as or claims.approver).lower()
        deputy = signed_in_as is not None and self.may_decide(signed_in_as, claims.request_id, client)
        approver = f"{address} (deputy for the SIRO)" if deputy else address
        outcome = "approved" if decision == "approve" else "denied"
        if not self.records.use_link(claims.nonce, claims.request_id, outcome, approver, now):
            refused = LinkRefused("replayed", 409, "This request has just been decided.", claims.request_id)
            self.refused(refused, client)
            raise refused
        share = self.share(access_request.share)
        self.job.store.audit(f"access-{outcome}", {
            "request_id": access_request.request_id, "share": share.name, "person_id": access_request.person_id,
            "client": client.address, "user_agent": client.user_agent[:200],
            **({"signed_in_as": address, "as_deputy": deputy} if signed_in_as else {})}, actor=address)
        grant = None
        notes: list[str] = []
        if outcome == "approved":
            grant = self.records.add_grant(access_request, approver, now,
                                           now + timedelta(days=access_request.days))
            self.job.store.audit("grant-recorded", {
                "grant_id": grant.grant_id, "request_id": access_request.request_id, "share": share.name,
                "person_id": grant.person_id, "expires": grant.expires_at.isoformat()}, actor=address)
            notes = self.apply(share, grant.person_id, Action.ADD_MEMBER, address,
                               f"grant #{grant.grant_id} approved by {approver} until "
                               f"{grant.expires_at:%Y-%m-%d}")
        result = Decision(access_request, share, outcome, grant, notes)
        self._tell_decision(result, address, approver)
        return result

    def _tell_decision(self, result: Decision, approver: str, decided_by: str | None = None) -> None:
        mailer = self.mailer
        if mailer is None:
            return
        email = decided(result.request, result.share, result.decision, decided_by or approver, result.grant,
                        result.notes)
        recipients = [approver] if approver == self.siro else [approver, self.siro]  # a deputy's: the SIRO is told
        if valid_email(result.request.requester) and result.request.requester.lower() != approver:
            recipients.append(result.request.requester)
        for recipient in recipients:
            self._send(mailer, recipient, email)

    # memberships ------------------------------------------------------------------------------

    def apply(self, share: Share, person_id: str, action: Action, actor: str, reason: str) -> list[str]:
        """Add or remove one person in the share's group in every directory now; returns what happened.

        The grant (or its end) is already recorded, so when a directory cannot be reached or a guard
        stops the change, the nightly run makes the same change: that is said, not raised.
        """
        try:
            return self._apply(share, person_id, action, actor, reason)
        except (UserError, GuardTripped) as error:
            self.job.store.audit("access-apply-deferred", {"share": share.name, "person_id": person_id,
                                                           "action": str(action), "error": str(error)}, actor=actor)
            return [f"could not change the directories now ({error}); the nightly run will"]

    def _apply(self, share: Share, person_id: str, action: Action, actor: str, reason: str) -> list[str]:
        notes: list[str] = []
        # The job lock, as the nightly run holds it: a decision never interleaves with a run's
        # snapshot-plan-apply. When a run holds it, the lock's UserError defers the change to the
        # nightly run (see `apply`), which sets the groups from the grants recorded by then.
        with self.job.lock(), self.job.open_connectors() as connectors:
            snapshots = self.job.snapshots(connectors)
            changes: list[Change] = []
            for directory, group_name in sorted(share.groups.items()):
                snapshot = snapshots.get(directory)
                if snapshot is None:
                    notes.append(f"{directory}: not a directory of this job; group {group_name} not changed")
                    continue
                account = next((a for a in snapshot.accounts if a.anchor == person_id), None)
                if account is None:
                    notes.append(f"{directory}: {person_id} has no account; nothing to change")
                    continue
                if account.privileged and action is Action.ADD_MEMBER:
                    notes.append(f"{directory}: refused: {account.username} is a privileged account "
                                 f"({account.privileged}); idlifecycle never gives privileged accounts a group")
                    self.job.store.audit("access-apply-refused", {
                        "share": share.name, "person_id": person_id, "directory": directory,
                        "account": account.key, "reason": f"privileged: {account.privileged}"}, actor=actor)
                    continue
                group = next((g for g in snapshot.groups if g.name.lower() == group_name.lower()), None)
                member = group is not None and account.key in group.members
                if action is Action.ADD_MEMBER:
                    if member:
                        notes.append(f"{directory}: {account.username} is already in {group_name}")
                        continue
                    if group is None:
                        changes.append(Change(directory, Action.CREATE_GROUP, None, "", reason, group=group_name))
                elif not member:
                    continue
                changes.append(Change(directory, action, person_id, account.username, reason, target=account.key,
                                      group=group_name, restricted=share.restricted and action is Action.REMOVE_MEMBER))
            if not changes:
                return notes
            removals = sum(1 for c in changes if c.destructive)
            results = self.job.apply_changes(changes, connectors, actor=actor,
                                             allow_destructive=removals or None)
        outcomes = {r.change_id: r for r in results}
        for change in changes:
            result = outcomes.get(change.change_id)
            if change.action is Action.CREATE_GROUP or result is None:
                continue
            verb = "added to" if action is Action.ADD_MEMBER else "removed from"
            if result.outcome is Outcome.FAILED:
                notes.append(f"{change.directory}: could not change {change.group}: {result.detail}")
            else:
                notes.append(f"{change.directory}: {change.username} {verb} {change.group}")
        return notes

    def revoke(self, grant_id: int, by: str, *, now: datetime | None = None) -> tuple[Grant, list[str]]:
        """End a grant early and remove the membership at once (unless another grant or the baseline covers it)."""
        now = now or utcnow()
        grant = self.records.grant(grant_id)
        if grant is None:
            raise UserError(f"there is no grant #{grant_id}; `idlifecycle access list` shows them")
        if not self.records.end_grant(grant_id, by, "revoked", now):
            raise UserError(f"grant #{grant_id} already ended ({grant.end_reason} on {grant.ended_at:%Y-%m-%d})")
        share = self.share(grant.share)
        self.job.store.audit("grant-revoked", {"grant_id": grant_id, "share": share.name,
                                               "person_id": grant.person_id}, actor=by)
        if self.still_covered(share, grant.person_id, now):
            notes = [f"{grant.person_id} keeps access to {share.name} through another grant or the baseline"]
        else:
            notes = self.apply(share, grant.person_id, Action.REMOVE_MEMBER, by, f"grant #{grant_id} revoked by {by}")
        ended = self.records.grant(grant_id)
        assert ended is not None
        self.tell_ended(ended, share, f"revoked by {by}")
        return ended, notes

    def still_covered(self, share: Share, person_id: str, now: datetime) -> bool:
        if any(g.share == share.name and g.person_id == person_id and g.active(now)
               for g in self.records.open_grants()):
            return True
        person = self.people().get(person_id)
        return (person is not None and share.in_baseline(person)
                and (share.name, person_id) not in self.removed_at_review())

    def removed_at_review(self) -> set[tuple[str, str | None]]:
        """(share, person_id) of each standing Remove of the SIRO's (in any directory): the baseline no
        longer covers them, as in the nightly plan (`drift.desired_share_groups`, per directory)."""
        return {(d.share, d.person_id) for d in self.job.store.access_decisions() if d.removes}

    def tell_ended(self, grant: Grant, share: Share, why: str) -> bool:
        mailer = self.mailer
        if mailer is None or not valid_email(grant.requester):
            return False
        self._send(mailer, grant.requester, grant_ended(grant, share, why))
        return True

    def holdings(self, people: Sequence[Person], *, now: datetime | None = None) -> list[Holding]:
        """Who should be in each share's group and why: the baseline, then each unexpired grant."""
        now = now or utcnow()
        rows: list[Holding] = []
        removed = self.removed_at_review()
        for share in sorted(self.registry.shares.values(), key=lambda s: s.name):
            rows += [Holding(share.name, p.person_id, p.display_name, "baseline")
                     for p in people if share.in_baseline(p) and (share.name, p.person_id) not in removed]
            rows += [Holding(share.name, g.person_id, g.person_name, f"grant #{g.grant_id}", g.approver,
                             g.expires_at, g.reason)
                     for g in self.records.open_grants() if g.share == share.name and g.active(now)]
        return rows

    # mail -------------------------------------------------------------------------------------

    def _mailer(self) -> Mailer:
        mailer = self.mailer
        if mailer is None:
            raise self.job.config_error("mail", "add a [mail] table: the SIRO is asked by email")
        return mailer

    def _send(self, mailer: Mailer, to: str, email: Email, names: Mapping[str, str] | None = None) -> None:
        mailer.send([to], email.subject, email.text, email.html, to_names=names)

