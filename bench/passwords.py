"""Password costs: generation per style, scrypt history hashing, and a reset's history check.

Run: .venv/bin/python bench/passwords.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from idlifecycle.passwords.generator import generate
from idlifecycle.passwords.history import PasswordHistory
from idlifecycle.passwords.policy import (
    CommonPasswords,
    Identity,
    Rules,
    ad_rules,
    effective_policy,
    entra_rules,
    google_rules,
)
from idlifecycle.store import Store

SCHOOL = Rules("the school", min_length=12, classes=3, symbols=frozenset("!#$%*+-=?@"), name_tokens=True)


def main() -> None:
    policy = effective_policy([SCHOOL, entra_rules(), google_rules(), ad_rules({"min_length": 7})], ["oakfield"])
    identity = Identity("23asmith", "Amelia Smith", ("Amelia", "Smith"))
    common = CommonPasswords.shipped()
    for style in ("random", "memorable"):
        started = time.perf_counter()
        for _ in range(5000):
            generate(policy, identity, style=style, common=common)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        print(f"generate {style:<9}: {5000 / elapsed:8.0f} per second")
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "state.db")
        history = PasswordHistory(store)
        started = time.perf_counter()
        for n in range(50):
            history.record(f"P{n}", "Kite-Moon-47!", keep=12)
        per_hash = (time.perf_counter() - started) / 50
        print(f"scrypt hash + store : {per_hash * 1000:8.1f} ms each -> 1,000 new starters add {per_hash * 1000:.0f} s")
        for n in range(12):
            history.record("P0", f"Kite-Moon-{n:02d}!", keep=12)
        started = time.perf_counter()
        history.used_recently("P0", "Not-Used-Before-1", 12)
        print(f"reset history check : {(time.perf_counter() - started) * 1000:8.1f} ms against the last 12")
        store.close()


if __name__ == "__main__":
    main()
