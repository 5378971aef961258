"""What a killed or faulted night must still have done, checked against the emulators' own records.

A night's effects are read two ways and compared: from the emulators' write logs (what the directory
took, `idlifecycle.sandbox.faults.WriteLog`) and from the tool's audit trail (what it says it did).
Both are named by usernames and group names, not ids, so that a night can also be compared with an
uninterrupted reference night (whose objects have other ids).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from idlifecycle.sandbox.night import SchoolNight
from idlifecycle.store import Store
from tests.e2e.school import slip_passwords

SAVE_INTERVAL = 1.5
"""Seconds within which both emulators have saved their directories after the last change."""

Effect = tuple[str, str, str, str]
"""(directory, action, account or group name, group name for memberships else "")."""

NOT_CHANGES = {"revoke", "licence", "restore", "orgunit", "sign-out"}
"""Writes that are part of a change, not changes of their own (a disable's session revoke, …)."""


@dataclass(frozen=True)
class Names:
    """Ids -> names in one night's final directories."""

    users: Mapping[tuple[str, str], str]
    groups: Mapping[tuple[str, str], str]

    def user(self, directory: str, key: str) -> str:
        return self.users.get((directory, key.lower()), key.lower())

    def group(self, directory: str, key: str) -> str:
        return self.groups.get((directory, key.lower()), key.lower())


def names_of(night: SchoolNight) -> Names:
    users: dict[tuple[str, str], str] = {}
    groups: dict[tuple[str, str], str] = {}
    entra = night.entra_state()
    for user in [*entra["users"].values(), *entra["deleted"].values()]:
        upn = str(user["userPrincipalName"]).lower()
        users[("entra", user["id"].lower())] = users[("entra", upn)] = upn
    for group in entra["groups"].values():
        groups[("entra", group["id"].lower())] = str(group["displayName"]).lower()
    if night.google is not None:
        google = night.google_state()
        for user in google["users"].values():
            email = str(user["primaryEmail"]).lower()
            users[("google", user["id"].lower())] = users[("google", email)] = email
        for group in google["groups"].values():
            name = str(group["name"]).lower()
            groups[("google", group["id"].lower())] = groups[("google", str(group["email"]).lower())] = name
    return Names(users, groups)


def view(night: SchoolNight) -> dict[str, Any]:
    """The directories as a person would compare them: accounts, groups and members, without ids or times."""
    entra = night.entra_state()
    names = names_of(night)
    kept = ("givenName", "surname", "displayName", "employeeId", "employeeType", "department", "jobTitle",
            "accountEnabled", "usageLocation")
    out: dict[str, Any] = {
        "entra users": {u["userPrincipalName"].lower(): {k: u.get(k) for k in kept} for u in entra["users"].values()},
        "entra deleted": sorted(u["userPrincipalName"].lower() for u in entra["deleted"].values()),
        "entra groups": {g["displayName"].lower(): (g.get("description"), sorted(names.user("entra", m)
                                                                                   for m in g["members"]))
                         for g in entra["groups"].values()},
    }
    if night.google is not None:
        google = night.google_state()
        out["google users"] = {
            u["primaryEmail"].lower(): (u["name"].get("givenName"), u["name"].get("familyName"), u.get("suspended"),
                                        u.get("orgUnitPath"), sorted(str(e.get("value")) for e in
                                                                     u.get("externalIds") or []))
            for u in google["users"].values()}
        out["google groups"] = {
            g["name"].lower(): (g["email"].lower(),
                                sorted(m["email"].lower() for m in google["members"][g["id"]].values()))
            for g in google["groups"].values()}
    return out


def _graph_effects(write: Mapping[str, Any], names: Names) -> list[Effect]:
    method, path, body = write["method"], unquote(write["path"]), write.get("body") or {}
    user, group = (lambda k: names.user("entra", k)), (lambda k: names.group("entra", k))
    if method == "POST" and path == "/v1.0/users":
        return [("entra", "create", user(write["id"]), "")]
    if method == "POST" and path == "/v1.0/groups":
        return [("entra", "create-group", str(body["displayName"]).lower(), "")]
    if match := re.fullmatch(r"/v1\.0/groups/([^/]+)", path):
        binds = body.get("members@odata.bind") or []
        return [("entra", "add-member", user(b.rstrip("/").rsplit("/", 1)[-1]), group(match[1])) for b in binds]
    if match := re.fullmatch(r"/v1\.0/groups/([^/]+)/members/\$ref", path):
        return [("entra", "add-member", user(str(body["@odata.id"]).rsplit("/", 1)[-1]), group(match[1]))]
    if match := re.fullmatch(r"/v1\.0/groups/([^/]+)/members/([^/]+)/\$ref", path):
        return [("entra", "remove-member", user(match[2]), group(match[1]))]
    if match := re.fullmatch(r"/v1\.0/users/([^/]+)/(revokeSignInSessions|assignLicense)", path):
        return [("entra", "revoke" if match[2] == "revokeSignInSessions" else "licence", user(match[1]), "")]
    if match := re.fullmatch(r"/v1\.0/directory/deletedItems/([^/]+)/restore", path):
        return [("entra", "restore", user(match[1]), "")]
    if method == "DELETE" and (match := re.fullmatch(r"/v1\.0/users/([^/]+)", path)):
        return [("entra", "delete", user(match[1]), "")]
    if method == "PATCH" and (match := re.fullmatch(r"/v1\.0/users/([^/]+)", path)):
        keys = set(body)
        if body.get("accountEnabled") is False:
            action = "disable"
        elif body.get("accountEnabled") is True and keys == {"accountEnabled"}:
            action = "enable"
        elif keys == {"employeeId"}:
            action = "adopt"
        elif keys == {"passwordProfile"}:
            action = "set-password"
        elif "userPrincipalName" in keys:
            action = "rename"
        else:
            action = "update"
        return [("entra", action, user(match[1]), "")]
    return [("entra", f"{method} {path}", "", "")]


def _google_effects(write: Mapping[str, Any], names: Names) -> list[Effect]:
    method, path, body = write["method"], unquote(write["path"]), write.get("body") or {}
    path = path.removeprefix("/admin/directory/v1")
    user, group = (lambda k: names.user("google", k)), (lambda k: names.group("google", k))
    if method == "POST" and path == "/users":
        return [("google", "create", user(write["id"]), "")]
    if method == "POST" and path == "/groups":
        return [("google", "create-group", str(body.get("name") or body["email"]).lower(), "")]
    if method == "POST" and (match := re.fullmatch(r"/groups/([^/]+)/members", path)):
        return [("google", "add-member", user(write["id"]), group(match[1]))]
    if method == "DELETE" and (match := re.fullmatch(r"/groups/([^/]+)/members/([^/]+)", path)):
        return [("google", "remove-member", user(match[2]), group(match[1]))]
    if re.fullmatch(r"/customer/[^/]+/orgunits", path):
        return [("google", "orgunit", str(body.get("name")), "")]
    if match := re.fullmatch(r"/users/([^/]+)/signOut", path):
        return [("google", "sign-out", user(match[1]), "")]
    if method in ("PATCH", "PUT") and (match := re.fullmatch(r"/users/([^/]+)", path)):
        keys = set(body) - {"orgUnitPath"}
        action = ("disable" if body.get("suspended") is True else "enable" if body.get("suspended") is False
                  else "adopt" if keys == {"externalIds"} else "set-password" if "password" in keys
                  else "rename" if "primaryEmail" in keys else "move" if not keys else "update")
        return [("google", action, user(match[1]), "")]
    return [("google", f"{method} {path}", "", "")]


def audit_entries(night: SchoolNight) -> list[tuple[str, dict[str, Any]]]:
    store = Store(night.folder / "state" / "idlifecycle.db")
    try:
        return [(e.event, dict(e.data)) for e in store.audit_entries()]
    finally:
        store.close()


def audited_effects(night: SchoolNight, names: Names, event: str = "change-applied",
                    entries: list[tuple[str, dict[str, Any]]] | None = None) -> Counter[Effect]:
    """The changes the audit trail (or `entries` of it) says were applied, named like the write logs' effects."""
    found: Counter[Effect] = Counter()
    for name, data in audit_entries(night) if entries is None else entries:
        if name != event:
            continue
        directory, action = str(data["directory"]), str(data["action"])
        if action in ("create-group",):
            found[(directory, action, str(data["group"]).lower(), "")] += 1
        elif action in ("add-member", "remove-member"):
            found[(directory, action, names.user(directory, str(data["target"])), str(data["group"]).lower())] += 1
        else:
            found[(directory, action, names.user(directory, str(data.get("target") or data["username"])), "")] += 1
    return found


def differences(expected: Counter[Effect], actual: Counter[Effect], limit: int = 5) -> str:
    missing, extra = expected - actual, actual - expected
    by_action = Counter(e[1] for e in missing.elements())
    more = Counter(e[1] for e in extra.elements())
    return (f"{sum(missing.values())} missing ({dict(by_action)}, e.g. {list(missing)[:limit]}); "
            f"{sum(extra.values())} extra ({dict(more)}, e.g. {list(extra)[:limit]})")


def check_night(night: SchoolNight, final: Final, reference: Mapping[str, Any], reference_effects: Counter[Effect],
                today: str, *, mailbox: Any | None = None) -> None:
    """Everything the kill and fault tests promise of a night that ended, whatever happened on the way."""
    logged = final.logged
    now = view(night)
    for part, expected in reference.items():
        assert now[part] == expected, f"{part}: the directory differs from the uninterrupted night's: " + \
            _first_difference(expected, now[part])

    entra_users = list(night.entra_state()["users"].values())
    anchors = Counter(u.get("employeeId") for u in entra_users if u.get("employeeId"))
    assert max(anchors.values()) == 1, f"duplicate accounts: {[a for a, n in anchors.items() if n > 1]}"

    audited, unknown = final.audited, final.unknown
    # Every write the directories took is audited exactly once as applied, and nothing else is; a
    # password set by a killed run cannot be seen in the directory, so it may be audited as unknown.
    assert max(logged.values(), default=1) == 1, \
        f"a change was applied twice: {[e for e, n in logged.items() if n > 1][:5]}"
    seen_unknown = Counter({e: n for e, n in unknown.items() if e[1] == "set-password"})
    assert audited + seen_unknown >= logged and not (audited - logged), \
        "audit against the emulators' write logs: " + differences(logged, audited)
    assert max(audited.values(), default=1) == 1, "a change audited as applied more than once"
    already = final.already
    assert not already, f"{sum(already.values())} of the tool's own writes audited 'already so' " \
                        f"({dict(Counter(e[1] for e in already.elements()))})"
    # And it is the same night as the uninterrupted one: the same changes, passwords set aside.
    ours = Counter({e: n for e, n in audited.items() if e[1] != "set-password"})
    assert ours == reference_effects, "changes audited, against the uninterrupted night: " + \
        differences(reference_effects, ours)

    db = sqlite3.connect(night.folder / "state" / "idlifecycle.db")
    try:
        issued = {u.lower(): p for u, p in db.execute("SELECT username, person_id FROM usernames")}
        disabled_on = {(d, p): day for d, p, day in
                       db.execute("SELECT directory, person_id, disabled_on FROM accounts")}
        owed = db.execute("SELECT COUNT(*) FROM passwords_owed").fetchone()[0]
    finally:
        db.close()
    anchors_by_name = {u["userPrincipalName"].lower(): u.get("employeeId") for u in entra_users}
    created = [e for e in logged if e[1] in ("create", "adopt")]
    missing = [e[2] for e in created if issued.get(e[2].split("@")[0]) is None]
    assert not missing, f"{len(missing)} of {len(created)} created or adopted usernames missing from the " \
                        f"never-reissue record, e.g. {missing[:5]}"
    leavers = [e for e in logged if e[1] == "disable"]
    undated = [e[2] for e in leavers if disabled_on.get((e[0], anchors_by_name.get(e[2]) or "")) != today]
    assert not undated, f"{len(undated)} of {len(leavers)} leavers without their disable date: {undated[:5]}"
    assert owed == 0, f"{owed} passwords still owed"

    _check_passwords(night, [e for e in logged if e[1] == "create"], mailbox)

    verify = night.run(today, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _check_passwords(night: SchoolNight, creates: list[Effect], mailbox: Any | None) -> None:
    """Each new starter was handed exactly one password, and it is the one their account has."""
    handed: dict[str, list[str]] = {}
    for username, password in slip_passwords(night.folder / "state" / "slips"):
        handed.setdefault(username.lower(), []).append(password)
    if mailbox is not None:
        for message in mailbox.messages:
            for username, password in re.findall(r"Username: (\S+).*?Password: (\S+)", message.text, re.S):
                handed.setdefault(username.lower(), []).append(password)
    # What each directory holds of its accounts' passwords: a digest (Graph emulator), a salted one (Google's).
    holds: dict[tuple[str, str], Any] = {}
    for user in night.entra_state()["users"].values():
        holds[("entra", user["userPrincipalName"].lower())] = lambda p, u=user: u.get("_passwordSha256") == \
            hashlib.sha256(p.encode()).hexdigest()
    if night.google is not None:
        google = night.google_state()
        for user_id, user in google["users"].items():
            kept = google["secrets"][user_id]
            holds[("google", user["primaryEmail"].lower())] = lambda p, k=kept: k["password"] == \
                hashlib.sha256((k["salt"] + p).encode()).hexdigest()
    wrong = []
    for directory, _action, name, _ in creates:
        local = name.split("@")[0]
        given = handed.get(local, [])
        if len(given) != 1:
            wrong.append(f"{local}: {len(given)} passwords handed out")
            continue
        check = holds.get((directory, name))
        if check is None or not check(given[0]):
            wrong.append(f"{local}: the password handed out is not the {directory} account's")
    assert not wrong, f"{len(wrong)} of {len(creates)} new starters' passwords: {wrong[:5]}"


def _first_difference(expected: Any, actual: Any) -> str:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        changed = [k for k in expected if k in actual and expected[k] != actual[k]]
        return (f"{len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, {len(changed)} differ "
                f"{[(k, expected[k], actual[k]) for k in changed[:2]]}")
    return f"{expected!r} != {actual!r}"


@dataclass(frozen=True)
class Final:
    """A night's effects as the directories logged them and as the audit trail tells them."""

    names: Names
    logged: Counter[Effect]
    audited: Counter[Effect]
    unknown: Counter[Effect]
    already: Counter[Effect]


@dataclass(frozen=True)
class Kill:
    """What was known when a run was killed: the killed emulator's write log, and the audit trail."""

    directory: str
    point: int
    writes: list[dict[str, Any]]
    frozen_at: float
    audit: list[tuple[str, dict[str, Any]]]


def kill_record(night: SchoolNight, directory: str, point: int) -> Kill:
    answer = night.emulators()[directory]._call("GET", "/_emulator/writes")
    frozen = answer["frozen_at"] or answer["killed_at"] or 0.0
    return Kill(directory, point, list(answer["writes"]), float(frozen), audit_entries(night))


def heard_but_unrecorded(night: SchoolNight, kills: list[Kill]) -> list[str]:
    """For each kill, the changes whose replies the run had had before the emulator froze but never recorded.

    Results are recorded as each reply arrives: a run killed after the directory stopped answering
    (and after it went idle) has recorded everything it heard, and only what was in flight is left for
    the next run to find out. Recording a phase's results at its end leaves the whole phase so far.
    """
    names = names_of(night)
    problems = []
    for number, kill in enumerate(kills, 1):
        effects = _graph_effects if kill.directory == "entra" else _google_effects
        heard: Counter[Effect] = Counter()
        for write in kill.writes:
            if write.get("answered") is not None and write["answered"] < kill.frozen_at:
                heard.update(e for e in effects(write, names) if e[1] not in NOT_CHANGES)
        told = audited_effects(night, names, "change-applied", kill.audit) + \
            audited_effects(night, names, "change-outcome-unknown", kill.audit)
        unrecorded = heard - told
        if unrecorded:
            problems.append(f"kill {number} ({kill.directory} write {kill.point}): {sum(unrecorded.values())} of "
                            f"{sum(heard.values())} changes answered before the kill had no outcome recorded "
                            f"({dict(Counter(e[1] for e in unrecorded.elements()))})")
    return problems


def collect(night: SchoolNight) -> Final:
    """Read the write logs and the saved directories (the emulators save within a second of a change)."""
    time.sleep(SAVE_INTERVAL)
    names = names_of(night)
    logged: Counter[Effect] = Counter()
    for write in night.entra.writes():
        logged.update(_graph_effects(write, names))
    if night.google is not None:
        for write in night.google.writes():
            logged.update(_google_effects(write, names))
    return Final(names, Counter({e: n for e, n in logged.items() if e[1] not in NOT_CHANGES}),
                 audited_effects(night, names), audited_effects(night, names, "change-outcome-unknown"),
                 audited_effects(night, names, "change-already-so"))
