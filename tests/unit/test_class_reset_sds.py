"""A class reset on Microsoft's own SDS v2.1 sample school: the teacher's classes come from its
classes.csv + enrollments.csv, so Ravi Patel (teaching 7C Computing and 12B Biology) may reset their pupils
and no one else's. Test-double directories (tests/doubles.py), a real job and store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.errors import UserError
from idlifecycle.job import open_job
from idlifecycle.passwords.class_reset import reset_pupils
from tests import jobfiles
from tests.doubles import FileDirectory
from tests.factories import ROOT, account

SAMPLE = ROOT / "tests" / "data" / "feeds" / "sds_v2_microsoft_sample"
ABSENT = ["registration_group", "leave_date", "roles", "year_group"]
"""The column check looks at users.csv and roles.csv one by one, and each lacks some of what the example
mapping reads (users.csv has no dates or grades, roles.csv no names); SDS has no registration group."""


@dataclass(frozen=True)
class SignedIn:
    username: str
    name: str


def test_a_teacher_of_the_sds_sample_resets_the_pupils_of_her_classes_only(tmp_path: Path) -> None:
    ad = FileDirectory("ad", tmp_path / "ad.sqlite")
    for pid in ("221001", "221003", "221008", "221010"):
        ad.put(account(f"k{pid}", f"u{pid}", anchor=pid))
    jobfiles.write_connector(tmp_path / "ad.toml", "ad", "tests.doubles:FileDirectory",
                             {"path": str(tmp_path / "ad.sqlite")})
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        "[job]\n" + jobfiles.toml_table({"name": "nightly", "state_dir": "state", "connectors": ["ad.toml"],
                                         "mappings": [str(ROOT / "mappings" / "school.toml")]})
        + "\n[[job.feeds]]\n" + jobfiles.toml_table({"format": "sds-v2", "path": str(SAMPLE), "date_order": "mdy",
                                                               "absent": ABSENT})
        + "\n[passwords]\n" + jobfiles.toml_table({"school_name": "Northfield"}), encoding="utf-8")
    ravi = SignedIn("rpatel", "Ravi Patel")  # users.csv username rpatel@northfield.sch.uk
    with open_job(job_file, today=date(2026, 11, 23)) as job, job.open_connectors() as connectors:
        computing = reset_pupils(job, connectors, ravi, group="7C Computing", from_address="192.0.2.1")
        biology = reset_pupils(job, connectors, ravi, pupils=["221008"], from_address="192.0.2.1")
        with pytest.raises(UserError, match=r"Oskar Kowalski \(221003\) is not in a group Ravi Patel teaches"):
            reset_pupils(job, connectors, ravi, pupils=["221003"], from_address="192.0.2.1")
    assert [s.pupil.person_id for s in computing.slips] == ["221001"]
    assert [s.pupil.person_id for s in biology.slips] == ["221008"]
    assert ad.password_hashes("k221003") == [] and len(ad.password_hashes("k221001")) == 1
