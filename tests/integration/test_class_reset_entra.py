"""A teacher resets their own pupils' passwords in Entra ID, through the real msgraph-sdk speaking HTTP to the
Graph emulator: the password Graph stored (the emulator keeps only its digest; Graph never returns one) is
the one on the slip, and forceChangePasswordNextSignIn follows the policy's year band. The teacher's group
comes from the job's [teaching] table, matched on her Entra username."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.errors import UserError
from idlifecycle.job import load_job, run_sync
from idlifecycle.passwords.class_reset import reset_pupils
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, MARKER, STAFF
from tests.integration.test_entra_job import AMY, CLARA, MAPPING, PUPIL_HEADER, RORY, STAFF_HEADER, seed
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

TODAY = date(2026, 9, 3)
PASSWORDS = {"school_name": "Oakfield Academy", "line_managers": {"fallback": "office@example.org"},
             "pupil": {"min_length": 10, "style": "memorable", "bands": {"7-7": {"change_at_sign_in": False}}}}


@dataclass(frozen=True)
class SignedIn:
    username: str
    name: str


def write_school(tmp: Path, emulator: GraphEmulator) -> Path:
    with (tmp / "pupils.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([PUPIL_HEADER, AMY, RORY, CLARA])
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([STAFF_HEADER, ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", ""]])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    assert emulator.certificate is not None
    write_connector(tmp / "entra.toml", "entra", "entra", {
        "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID, "authority_host": f"127.0.0.1:{emulator.port}",
        "graph_url": emulator.graph_url, "ca_file": str(emulator.certificate.cert), "group_marker": MARKER,
        "timeout_seconds": 5, "domains": {"staff": STAFF, "pupil": "pupils.example.sch.uk"}})
    return write_job(tmp / "job.toml", connectors=["entra.toml"], mappings=["mapping.toml"],
                     guards={"max_destructive": 20, **LENIENT_GUARDS},
                     sections={"passwords": PASSWORDS, "teaching": {"7A": [f"jdoe@{STAFF}"], "8A": ["JDO"]}})


def test_a_teachers_reset_sets_the_slips_password_in_entra(make_emulator: Callable[..., GraphEmulator],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job = load_job(write_school(tmp_path, emulator), today=TODAY, secrets=Secrets())
    try:
        assert run_sync(job).status == "ok"
        with job.open_connectors() as connectors:
            keys = {a.anchor: a.key for a in connectors["entra"].snapshot().accounts}
            before = {pid: emulator.directory.user(key).get("_passwordSha256") for pid, key in keys.items()}
            jane = SignedIn(f"jdoe@{STAFF}", "Jane Doe")
            outcome = reset_pupils(job, connectors, jane, pupils=["000201", "000205"], from_address="192.0.2.8")
            with pytest.raises(UserError, match=r"Jane Doe does not teach '7B' \(groups taught: 7A, 8A\)"):
                reset_pupils(job, connectors, jane, group="7B", from_address="192.0.2.8")
    finally:
        job.close()

    slips = {s.pupil.person_id: s for s in outcome.slips}
    assert sorted(slips) == ["000201", "000205"] and outcome.failed == ()
    for pid, slip in slips.items():
        user = emulator.directory.user(keys[pid])
        assert user["_passwordSha256"] == hashlib.sha256(slip.password.encode()).hexdigest() != before[pid]
    assert emulator.directory.user(keys["000201"])["_forceChangePasswordNextSignIn"] is False, "year 7: no change"
    assert emulator.directory.user(keys["000205"])["_forceChangePasswordNextSignIn"] is True
    assert emulator.directory.user(keys["000202"]).get("_passwordSha256") == before["000202"], "not Jane's pupil"
