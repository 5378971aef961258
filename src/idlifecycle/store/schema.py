"""The store's tables, and the columns added to stores made before them (a store is upgraded as it opens)."""

from __future__ import annotations

import secrets
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    directory TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (directory, name)
);
CREATE TABLE IF NOT EXISTS usernames (
    username TEXT PRIMARY KEY COLLATE NOCASE,
    person_id TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usernames_person ON usernames (person_id);
CREATE TABLE IF NOT EXISTS accounts (
    directory TEXT NOT NULL, person_id TEXT NOT NULL,
    key TEXT NOT NULL, username TEXT NOT NULL,
    disabled_on TEXT,
    PRIMARY KEY (directory, person_id)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, people_count INTEGER, summary TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    change_id TEXT NOT NULL, plan_id TEXT NOT NULL,
    directory TEXT NOT NULL, action TEXT NOT NULL, person_id TEXT, username TEXT,
    state TEXT NOT NULL, detail TEXT, key TEXT, at TEXT NOT NULL,
    PRIMARY KEY (plan_id, change_id)
);
CREATE TABLE IF NOT EXISTS feed_profiles (
    job TEXT PRIMARY KEY, run_id INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passwords_owed (
    person_id TEXT NOT NULL, directory TEXT NOT NULL, username TEXT NOT NULL,
    reason TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (person_id, directory)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL, data TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def migrate(db: sqlite3.Connection) -> None:
    """Makes the tables if missing, and adds what later versions record to a store made before them.

    Run on every open; each step happens once.
    """
    db.executescript(SCHEMA)
    # The run's date (its --today, or the clock), for the guard against a clock that went backwards
    # or jumped; added to stores made before it was recorded.
    if "day" not in _columns(db, "runs"):
        db.execute("ALTER TABLE runs ADD COLUMN day TEXT")
    # The change as sent, so the next run can tell from the directory whether a change an interrupted
    # run had started landed; and a leaver's disable date written before the disable is sent.
    if "change" not in _columns(db, "journal"):
        db.execute("ALTER TABLE journal ADD COLUMN change TEXT")
    if "disable_pending" not in _columns(db, "accounts"):
        db.execute("ALTER TABLE accounts ADD COLUMN disable_pending TEXT")
    # 1 for an entry chained with the audit key; stores made before the key have 0 throughout.
    if "keyed" not in _columns(db, "audit"):
        db.execute("ALTER TABLE audit ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0")
    # Made once, with the database: a checkpoint names it, so a different file in its place is noticed.
    db.execute("INSERT INTO meta VALUES ('database_id', ?) ON CONFLICT DO NOTHING", (secrets.token_hex(16),))


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r["name"]) for r in db.execute(f"PRAGMA table_info({table})")}
