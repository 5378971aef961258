"""A test double of the connector contract: a directory kept in a SQLite file.

It behaves like a real directory where the executor can notice: keys are assigned by the directory,
a create for an anchor that already exists answers ALREADY with that key (as the real connectors do
after a lost response), and it can be slowed down (DOUBLE_DELAY seconds before a write, and
DOUBLE_DELAY_AFTER seconds between the write landing and its answer, a slow reply) so the crash tests
can kill a run mid-apply, before a change is sent or after the directory took it but before the tool heard.
Only tests use it; nothing in src/ depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from idlifecycle.connectors.base import Capabilities, Connector, ConnectorContext, ConnectorError, failed_result
from idlifecycle.model import Account, Action, Change, Group, Outcome, Result, Snapshot

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (key TEXT PRIMARY KEY, data TEXT NOT NULL, in_scope INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, key TEXT NOT NULL, managed INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS members (group_name TEXT, account_key TEXT, PRIMARY KEY (group_name, account_key));
CREATE TABLE IF NOT EXISTS writes (n INTEGER PRIMARY KEY AUTOINCREMENT, change_id TEXT, action TEXT, outcome TEXT);
CREATE TABLE IF NOT EXISTS passwords (n INTEGER PRIMARY KEY AUTOINCREMENT, account_key TEXT, hash TEXT);
CREATE TABLE IF NOT EXISTS initial_passwords (account_key TEXT PRIMARY KEY, hash TEXT);
"""


class SendOnly(Connector):
    """A directory a test builds itself and only sends changes to: never built from a file, never read."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def from_config(cls, context: ConnectorContext) -> Connector:  # pragma: no cover - built directly
        raise NotImplementedError

    def snapshot(self) -> Snapshot:  # pragma: no cover - not read here
        return Snapshot(self.name, (), ())


class FileDirectory(Connector):
    capabilities: ClassVar[Capabilities] = Capabilities(containers=True, max_username_length=20)

    def __init__(self, name: str, path: Path, delay: float = 0.0, delay_after: float = 0.0) -> None:
        super().__init__(name)
        self.path = path
        # Used from the thread the executor applies this directory on (one per directory), not the one that built it.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.delay = delay
        self.delay_after = delay_after

    @classmethod
    def from_config(cls, context: ConnectorContext) -> FileDirectory:
        return cls(context.name, Path(context.option("path", required=True)),
                   float(os.environ.get("DOUBLE_DELAY", "0")), float(os.environ.get("DOUBLE_DELAY_AFTER", "0")))

    # seeding helpers for tests
    def put(self, account: Account, in_scope: bool = True) -> None:
        data = {**account.__dict__, "attributes": dict(account.attributes)}
        for k in ("created", "last_sign_in", "password_last_set"):
            data[k] = None
        self.db.execute("INSERT OR REPLACE INTO accounts VALUES (?,?,?)",
                        (account.key, json.dumps(data), int(in_scope)))

    def put_group(self, name: str, members: tuple[str, ...] = (), managed: bool = True) -> None:
        self.db.execute("INSERT OR REPLACE INTO groups VALUES (?,?,?)", (name, "g-" + name, int(managed)))
        for key in members:
            self.db.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (name, key))

    def accounts(self, in_scope: bool = True) -> list[Account]:
        rows = self.db.execute("SELECT data FROM accounts WHERE in_scope=?", (int(in_scope),)).fetchall()
        return [Account(**json.loads(r[0])) for r in rows]

    def writes(self) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self.db.execute("SELECT change_id, action, outcome FROM writes ORDER BY n")]

    def password_hashes(self, key: str) -> list[str]:
        """sha256 of each password set on the account, oldest first (a real directory keeps only the last)."""
        return [r[0] for r in self.db.execute("SELECT hash FROM passwords WHERE account_key=? ORDER BY n", (key,))]

    def current_password_hash(self, key: str) -> str | None:
        """sha256 of the password the account has now: the last one set, or the one it was created with."""
        rows = self.password_hashes(key) or [r[0] for r in self.db.execute(
            "SELECT hash FROM initial_passwords WHERE account_key=?", (key,))]
        return rows[-1] if rows else None

    def members(self, group: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT account_key FROM members WHERE group_name=?", (group,))}

    # the contract
    def snapshot(self) -> Snapshot:
        accounts = tuple(self.accounts())
        names = {a.key: a.display_name for a in accounts + tuple(self.accounts(False))}
        groups = tuple(
            Group(self.name, key, name, {m: names.get(m, m) for m in self.members(name)}, managed=bool(managed))
            for name, key, managed in self.db.execute("SELECT name, key, managed FROM groups")
        )
        return Snapshot(self.name, accounts, groups, frozenset(a.username for a in self.accounts(False)))

    def _get(self, key: str | None) -> Account:
        row = self.db.execute("SELECT data FROM accounts WHERE key=? AND in_scope=1", (key,)).fetchone()
        if row is None:
            raise ConnectorError(f"no managed account {key}")
        return Account(**json.loads(row[0]))

    def _save(self, account: Account) -> None:
        self.put(account)

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        for change in changes:
            try:
                yield self._apply_logged(change)
            except ConnectorError as error:
                yield failed_result(change, error)

    def _apply_logged(self, change: Change) -> Result:
        time.sleep(self.delay)
        # The write and its record land together, as one directory operation would.
        with self.db:
            self.db.execute("BEGIN")
            result = self._apply(change)
            self.db.execute("INSERT INTO writes (change_id, action, outcome) VALUES (?,?,?)",
                            (change.change_id, change.action, result.outcome))
        time.sleep(self.delay_after)
        return result

    def _apply(self, change: Change) -> Result:
        cid = change.change_id
        a = change.after
        if change.action is Action.CREATE:
            for existing in self.accounts():
                if existing.anchor == a["anchor"]:
                    return Result(cid, Outcome.ALREADY, key=existing.key)
            key = str(uuid.uuid4())
            self._save(Account(self.name, key, a["username"], a["login"], a["given_name"], a["surname"],
                               a["display_name"], a["anchor"], bool(a["enabled"]), a["container"],
                               dict(a["attributes"]), must_change_password=bool(a["must_change_password"])))
            if change.password is not None:
                self.db.execute("INSERT INTO initial_passwords VALUES (?,?)",
                                (key, hashlib.sha256(change.password.encode()).hexdigest()))
            return Result(cid, Outcome.APPLIED, key=key)
        if change.action is Action.CREATE_GROUP:
            if self.db.execute("SELECT 1 FROM groups WHERE name=?", (change.group,)).fetchone():
                return Result(cid, Outcome.ALREADY)
            self.put_group(str(change.group))
            return Result(cid, Outcome.APPLIED, key="g-" + str(change.group))
        if change.action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
            present = change.target in self.members(str(change.group))
            if (change.action is Action.ADD_MEMBER) == present:
                return Result(cid, Outcome.ALREADY)
            if change.action is Action.ADD_MEMBER:
                self.db.execute("INSERT INTO members VALUES (?,?)", (change.group, change.target))
            else:
                self.db.execute("DELETE FROM members WHERE group_name=? AND account_key=?",
                                (change.group, change.target))
            return Result(cid, Outcome.APPLIED)
        account = self._get(change.target)
        if change.action is Action.SET_PASSWORD:
            if change.password is None:
                raise ConnectorError(f"set-password {account.username}: no password given")
            self.db.execute("INSERT INTO passwords (account_key, hash) VALUES (?,?)",
                            (account.key, hashlib.sha256(change.password.encode()).hexdigest()))
            self._save(Account(**{**account.__dict__, "must_change_password": True}))
            return Result(cid, Outcome.APPLIED)
        fields = dict(account.__dict__)
        if change.action is Action.ADOPT:
            fields["anchor"] = a["anchor"]
        elif change.action is Action.UPDATE:
            for k, v in a.items():
                if k == "attributes":
                    fields["attributes"] = {**account.attributes, **v}
                else:
                    fields[k] = v
        elif change.action is Action.RENAME:
            fields["username"], fields["login"] = a["username"], a["login"]
        elif change.action is Action.MOVE:
            fields["container"] = a["container"]
        elif change.action in (Action.ENABLE, Action.DISABLE):
            fields["enabled"] = change.action is Action.ENABLE
        elif change.action is Action.DELETE:
            self.db.execute("DELETE FROM accounts WHERE key=?", (account.key,))
            self.db.execute("DELETE FROM members WHERE account_key=?", (account.key,))
            return Result(cid, Outcome.APPLIED)
        elif change.action is Action.REQUIRE_PASSWORD_CHANGE:
            fields["must_change_password"] = True
        updated = Account(**fields)
        if updated == account:
            return Result(cid, Outcome.ALREADY)
        self._save(updated)
        return Result(cid, Outcome.APPLIED)
