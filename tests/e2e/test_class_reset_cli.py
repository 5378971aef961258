"""`idlifecycle passwords reset-class`: the IT desk acting for a teacher goes through the same class reset
(same refusals, the audit naming the operator and the teacher, the rate limit), printing the slips."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from idlifecycle.job import open_job
from tests.e2e.test_cli import idl
from tests.unit.test_class_reset import TODAY, directory, school, seed


def test_the_it_desk_resets_a_teachers_group_and_prints_the_slips(tmp_path: Path) -> None:
    seed(tmp_path)
    school(tmp_path)
    done = idl(tmp_path, "passwords", "reset-class", "--teacher", "jdoe", "--group", "8A", "--actor", "itdesk")
    assert done.returncode == 0, done.stderr
    printed = dict(zip(re.findall(r"Username: (\S+)", done.stdout), re.findall(r"Password: (\S+)", done.stdout),
                       strict=True))
    assert sorted(printed) == ["20pnumber1", "20pnumber6"]
    assert "2 passwords reset for Jane Doe's pupils." in done.stdout
    for username, password in printed.items():
        key = f"ad-p{username[-1]}"
        assert directory(tmp_path, "ad").current_password_hash(key) == hashlib.sha256(password.encode()).hexdigest()
    with open_job(tmp_path / "job.toml", today=TODAY) as job:
        resets = [e for e in job.store.audit_entries() if e.event == "class-reset"]
        assert [(e.actor, e.data["teacher"], e.data["operator"]) for e in resets] == [("jdoe", "JDO", "itdesk")] * 2
        assert resets[0].data["from"].startswith("command line on ")
        started = [e for e in job.store.audit_entries() if e.event == "change-started"]
        assert {e.actor for e in started} == {"jdoe for itdesk"}
        assert not any(p in str(e.data) for e in job.store.audit_entries() for p in printed.values())


def test_a_refusal_is_one_line_and_sets_nothing(tmp_path: Path) -> None:
    seed(tmp_path)
    school(tmp_path)
    refused = idl(tmp_path, "passwords", "reset-class", "--teacher", "jdoe", "--pupil", "000003")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Pupil Number3 (000003) is not in a group Jane Doe teaches" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert directory(tmp_path, "ad").password_hashes("ad-p3") == []
