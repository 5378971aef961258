"""The audit chain is keyed: without the key nobody can re-chain, forge or extend it; a store from before the
key keeps its old entries verifiable; the demo job makes its own key, privately."""

from __future__ import annotations

import hashlib
import sqlite3
import stat

import pytest

from idlifecycle.checkpoint import audit_key
from idlifecycle.config import Secrets, load_job_config
from idlifecycle.errors import UserError
from idlifecycle.job import RunReport
from idlifecycle.model import Plan
from idlifecycle.reports.summary import run_summary
from idlifecycle.store import Store
from tests.factories import ROOT
from tests.jobfiles import write_job

KEY = b"k" * 32


def test_a_keyed_chain_verifies_with_its_key_and_not_with_another(tmp_path):
    store = Store(tmp_path / "state.db", audit_key=KEY)
    for i in range(3):
        store.audit("change-applied", {"n": i})
    assert store.verify_audit() == []
    other = Store(tmp_path / "state.db", audit_key=b"o" * 32)
    assert other.verify_audit() == [f"audit row {n}: its MAC does not match (changed, or written without the audit "
                                    f"key)" for n in (1, 2, 3)]


def test_a_store_without_the_key_will_not_extend_a_keyed_chain(tmp_path):
    Store(tmp_path / "state.db", audit_key=KEY).audit("change-applied", {"n": 1})
    unkeyed = Store(tmp_path / "state.db")
    with pytest.raises(UserError, match="its audit log is keyed; open it with the secret 'audit_key'"):
        unkeyed.audit("change-applied", {"n": 2})


def test_a_store_from_before_the_key_is_keyed_once_and_its_old_entries_stay_checked(tmp_path):
    old = Store(tmp_path / "state.db")
    for i in range(3):
        old.audit("change-applied", {"n": i})
    old.close()
    keyed = Store(tmp_path / "state.db", audit_key=KEY)
    keyed.key_the_chain()
    keyed.key_the_chain()
    keyed.audit("change-applied", {"n": 3})
    events = [e.event for e in keyed.audit_entries()]
    assert events == ["change-applied"] * 3 + ["audit-chain-keyed", "change-applied"]
    assert keyed.verify_audit() == []
    # Re-hashing the old unkeyed entries after an edit breaks the link to the first keyed one.
    raw = sqlite3.connect(tmp_path / "state.db")
    rows = raw.execute("SELECT seq, at, event, actor, data, prev_hash FROM audit WHERE keyed=0 ORDER BY seq").fetchall()
    prev = rows[0][5]
    for seq, at, event, actor, data, _ in rows:
        data = data.replace('"n": 1', '"n": 99')
        digest = hashlib.sha256("\x1f".join((prev, at, event, actor, data)).encode()).hexdigest()
        raw.execute("UPDATE audit SET data=?, prev_hash=?, hash=? WHERE seq=?", (data, prev, digest, seq))
        prev = digest
    raw.commit()
    assert keyed.verify_audit() == ["audit row 4: does not follow the row before it (a row was removed or edited)"]


def test_an_unkeyed_row_after_keyed_ones_is_reported(tmp_path):
    store = Store(tmp_path / "state.db", audit_key=KEY)
    store.audit("change-applied", {"n": 1})
    store.audit("change-applied", {"n": 2})
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("UPDATE audit SET keyed=0 WHERE seq=2")
    raw.commit()
    assert store.verify_audit() == ["audit row 2: is not keyed, after keyed rows (written without the audit key)"]


def demo_job(tmp_path):
    return load_job_config(write_job(tmp_path / "job.toml", connectors=[ROOT / "connectors" / "entra-sandbox.toml"],
                                     mappings=[ROOT / "mappings" / "school.toml"]))


def test_the_demo_job_makes_its_own_audit_key_once_private_in_its_state_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("IDLIFECYCLE_AUDIT_KEY")
    config = demo_job(tmp_path)
    assert config.sandbox_only
    key = audit_key(config, Secrets(tmp_path / "no-secrets"))
    path = tmp_path / "state" / "audit_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and path.read_bytes().strip() == key
    assert audit_key(config, Secrets(tmp_path / "no-secrets")) == key, "made once, then kept"
    assert [p.name for p in path.parent.iterdir()] == ["audit_key"], "no temporary file is left"
    assert config.checkpoint_path == tmp_path / "state" / "checkpoint.json"


def test_a_job_with_one_real_connector_gets_no_generated_key(tmp_path, monkeypatch):
    monkeypatch.delenv("IDLIFECYCLE_AUDIT_KEY")
    config = load_job_config(write_job(
        tmp_path / "job.toml", connectors=[ROOT / "connectors" / "entra-sandbox.toml", ROOT / "connectors" / "ad.toml"],
        mappings=[ROOT / "mappings" / "school.toml"]))
    with pytest.raises(UserError, match=r"secret 'audit_key' is missing: .* set IDLIFECYCLE_AUDIT_KEY"):
        audit_key(config, Secrets(tmp_path / "no-secrets"))
    assert not (tmp_path / "state" / "audit_key").exists()
    assert config.checkpoint_path == tmp_path / "state.checkpoint.json"


def test_a_short_audit_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IDLIFECYCLE_AUDIT_KEY", "short")
    with pytest.raises(UserError, match="too short"):
        audit_key(demo_job(tmp_path), Secrets(tmp_path / "no-secrets"))


def test_the_run_summary_carries_the_checkpoint_for_keeping_off_the_server():
    checkpoint = {"job": "nightly", "database_id": "d1", "run": 57, "audit_seq": 1203, "head_mac": "ab" * 32,
                  "at": "2026-11-23T02:00:00+00:00"}
    _, text = run_summary("nightly", RunReport(57, "ok", Plan((), {}), checkpoint=checkpoint))
    assert "State checkpoint (keep this mail: `idlifecycle audit verify --checkpoint FILE`" in text
    assert '"audit_seq": 1203' in text and '"head_mac": "' + "ab" * 32 + '"' in text


def test_entries_written_in_one_transaction_chain_on_each_other_and_a_rolled_back_one_is_not_chained_on(tmp_path):
    """The newest entry is remembered within a transaction (a group commit writes hundreds): the chain still
    verifies, and after a rollback the next entry follows the last committed one, not the one rolled back."""
    store = Store(tmp_path / "state.db", audit_key=KEY)
    store.audit("first", {"n": 0})
    with store.transaction():
        for n in range(1, 6):
            store.audit("change-applied", {"n": n})
    try:
        with store.transaction():
            store.audit("rolled-back", {"n": 99})
            raise RuntimeError("the run died before its commit")
    except RuntimeError:
        pass
    store.audit("after", {"n": 6})
    assert [(e.seq, e.event) for e in store.audit_entries()][-2:] == [(6, "change-applied"), (7, "after")]
    assert store.verify_audit() == []
    # Another connection (the web app) writes between two of this one's transactions: still one chain.
    Store(tmp_path / "state.db", audit_key=KEY).audit("from-the-web-app", {})
    with store.transaction():
        store.audit("next-night", {})
    assert [e.event for e in store.audit_entries()][-2:] == ["from-the-web-app", "next-night"]
    assert store.verify_audit() == []
