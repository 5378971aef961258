"""The state store (SQLite): usernames ever issued, accounts, runs, the change journal, the audit log.

Feature modules (passwords, access) keep their own tables in the same file through
`Store.ensure_schema`, so one backup holds everything the SIRO may ask about.

`Store` is one class made of one part per concern, each a module here over the same connection
(`base.StoreBase`): the tables and their migrations (schema), cursors, people (usernames and
accounts), runs, the journal, passwords owed, the audit log, the access-review decisions, the dormant
disables and keep-active exemptions, the teachers' class resets.
"""

from __future__ import annotations

from idlifecycle.store.access_decisions import ACCESS_DECISIONS_SCHEMA, AccessDecision, AccessDecisions
from idlifecycle.store.audit import GENESIS, Audit, AuditEntry, chain_mac
from idlifecycle.store.base import StorageError, StoreBase, storage_problem, utcnow
from idlifecycle.store.class_resets import ClassReset, ClassResets
from idlifecycle.store.cursors import Cursors
from idlifecycle.store.dormant import Dormant
from idlifecycle.store.journal import Journal, JournalEntry, StartedChange
from idlifecycle.store.owed import Owed, OwedPassword
from idlifecycle.store.people import People
from idlifecycle.store.runs import Runs
from idlifecycle.store.schema import SCHEMA

__all__ = [
    "ACCESS_DECISIONS_SCHEMA", "GENESIS", "SCHEMA", "AccessDecision", "AuditEntry", "ClassReset", "JournalEntry",
    "OwedPassword", "StartedChange", "StorageError", "Store", "chain_mac", "storage_problem", "utcnow",
]


class Store(Cursors, People, Runs, Journal, Owed, Audit, AccessDecisions, Dormant, ClassResets, StoreBase):
    """One SQLite file. Not shared between threads: open one per thread.

    With `audit_key` (the secret `audit_key`, never stored here) each audit entry is chained to the one
    before by HMAC-SHA256, so nobody without the key can edit, forge or re-chain an entry unnoticed.
    Without it the store reads, and keeps writing an old unkeyed chain, but will not append to a keyed one.
    """
