"""Password history: every password the tool sets, kept only as a salted scrypt hash per person.

Active Directory checks history only when users change their own password, never on an admin
reset (FACTS.md §1), and the cloud directories keep at most one: so "previous passwords are not
accepted" for the passwords this tool sets is enforced here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection

from idlifecycle.store import Store, utcnow

DDL = """
CREATE TABLE IF NOT EXISTS password_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id TEXT NOT NULL,
    set_at TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS password_history_person ON password_history (person_id, seq);
"""

# scrypt at N=2**14, r=8, p=1: 16 MiB and ~40 ms a hash here, so a guessed list is slow to try.
# The parameters are stored with each hash, so they can be raised later without losing history.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown password hash scheme {scheme!r}")
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                            dklen=len(expected), maxmem=int(n) * int(r) * 256)
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class PasswordHistory:
    """The last passwords set for each person, as hashes in the state store."""

    def __init__(self, store: Store, *, cost: int = SCRYPT_N) -> None:
        self.store = store
        self.cost = cost
        """scrypt's N for new hashes; old hashes keep the parameters they were made with."""
        store.ensure_schema(DDL)
        self._loaded: dict[str, list[str]] | None = None
        """Hashes by person (newest first) of the people `load`ed: read without asking the store."""

    def load(self, person_ids: Collection[str]) -> None:
        """Reads these people's history at once, so that issuing their passwords (an executor worker's
        job, one at a time) never waits for the store's thread: its writes are handed over and not waited
        for (`Store.on_own_thread_later`); the executor's write-ahead after them still is."""
        wanted = set(person_ids)
        loaded: dict[str, list[str]] = {pid: [] for pid in wanted}
        for row in self.store.db.execute("SELECT person_id, hash FROM password_history ORDER BY seq DESC"):
            if row[0] in wanted:
                loaded[str(row[0])].append(str(row[1]))
        self._loaded = loaded

    def _recent(self, person_id: str, depth: int) -> list[str]:
        # Read only from what `load` read when drawing ahead (`passwords.ahead`): no store on that thread.
        if self._loaded is not None and person_id in self._loaded:
            return self._loaded[person_id][:depth]
        return self.store.on_own_thread(self._recent_rows, person_id, depth)

    def _recent_rows(self, person_id: str, depth: int) -> list[str]:
        rows = self.store.db.execute(
            "SELECT hash FROM password_history WHERE person_id=? ORDER BY seq DESC LIMIT ?", (person_id, depth)
        )
        return [str(r[0]) for r in rows]

    def used_recently(self, person_id: str, password: str, depth: int) -> bool:
        """True when the password matches any of the person's last `depth` passwords."""
        return any(verify_password(password, stored) for stored in self._recent(person_id, depth))

    def hashed(self, password: str) -> str:
        """A new history entry for this password (the slow part: scrypt, on the caller's thread)."""
        return hash_password(password, n=self.cost)

    def record(self, person_id: str, password: str, keep: int, *, hashed: str | None = None) -> None:
        """Remember a password just issued (`hashed`: its entry, made ahead); hashes older than the last
        `keep` are dropped."""
        hashed = hashed or self.hashed(password)
        if self._loaded is not None and person_id in self._loaded:
            self._loaded[person_id] = [hashed, *self._loaded[person_id]][:max(keep, 1)]
            self.store.on_own_thread_later(self._keep, person_id, hashed, keep)
        else:
            self.store.on_own_thread(self._keep, person_id, hashed, keep)

    def _keep(self, person_id: str, hashed: str, keep: int) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO password_history (person_id, set_at, hash) VALUES (?,?,?)",
                       (person_id, utcnow().isoformat(), hashed))
            db.execute(
                "DELETE FROM password_history WHERE person_id=? AND seq NOT IN "
                "(SELECT seq FROM password_history WHERE person_id=? ORDER BY seq DESC LIMIT ?)",
                (person_id, person_id, max(keep, 1)),
            )

    def count(self, person_id: str) -> int:
        row = self.store.db.execute("SELECT COUNT(*) FROM password_history WHERE person_id=?", (person_id,))
        return int(row.fetchone()[0])
