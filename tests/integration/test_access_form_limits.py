"""The request form's limits and the refused-link audit grouping come from the job's `[web.limits]`: the app
built for the job (as `idlifecycle serve` builds it) under uvicorn on 127.0.0.1 holds a school's own
numbers, and a wrong one is one error line naming the file and the key (school's job on a Samba DC,
aiosmtpd for mail)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from idlifecycle.cli import main
from idlifecycle.job import load_job
from idlifecycle.web.app import app_for_job
from tests.integration.access_support import School, ServedApp, free_port, mailbox, school, serve, stop
from tests.integration.samba import samba_dc, samba_template
from tests.integration.test_access_form import Form

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template", "school"]

LIMITS = """
[web.limits]
form_burst_per_address = 2
form_per_address_per_hour = 1
form_burst_total = 3
form_total_per_hour = 1
refused_audit_window_seconds = 1
refused_audit_clients = 1
"""


def job_with(school: School, name: str, limits: str) -> Path:
    """A second job file beside the school's (same state), with `limits` after its `[web]` table."""
    path = school.job_path.with_name(name)
    path.write_text(school.job_path.read_text(encoding="utf-8") + limits, encoding="utf-8")
    return path


@pytest.fixture
def limited_app(school: School) -> Iterator[tuple[Path, ServedApp]]:
    path = job_with(school, "job-limits.toml", LIMITS)
    job = load_job(path)
    try:
        app = app_for_job(lambda: load_job(path), job)
    finally:
        job.close()
    served = serve(path, free_port(), app=app)
    try:
        yield path, served
    finally:
        stop(served)


def test_the_forms_rate_limits_are_the_schools_own(limited_app: tuple[Path, ServedApp]) -> None:
    _, served = limited_app
    form = Form(served.base_url)
    try:
        one = [form.send("NOBODY3", address="10.3.0.1").status_code for _ in range(4)]  # bounded
        assert one == [200, 200, 429, 429], one  # 2 in a row from one address, not the default 5
        others = [form.send("NOBODY3", address=f"10.3.1.{n}").status_code for n in range(1, 4)]
        assert others == [200, 429, 429], others  # 3 in a row for the whole form, not the default 30
    finally:
        form.close()


def test_refused_links_are_grouped_by_the_schools_window_naming_its_number_of_clients(
        school: School, limited_app: tuple[Path, ServedApp]) -> None:
    path, served = limited_app

    def rows(event: str) -> list[dict[str, object]]:
        job = load_job(path)
        try:
            return [e.data for e in job.store.audit_entries() if e.event == event and e.data.get("reason") == "forged"]
        finally:
            job.close()

    before, grouped_before = len(rows("approval-link-refused")), len(rows("links-refused"))
    for n in range(6):
        address = f"10.4.0.{n}"
        assert httpx.get(f"{served.base_url}/approve?t=forged{n}", headers={"x-forwarded-for": address}
                         ).status_code == 400
    time.sleep(1.2)  # past the school's 1-second window: the next refusal is written in full again
    assert httpx.get(f"{served.base_url}/approve?t=forged-late").status_code == 400
    assert len(rows("approval-link-refused")) - before == 2
    grouped = rows("links-refused")[grouped_before:]
    assert [(g["count"], len(g["clients"])) for g in grouped] == [(5, 1)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "key"), [
    ("form_burst_total = 0", "web.limits.form_burst_total"),
    ("form_burst_per_address = 10\nform_burst_total = 5", "web.limits.form_burst_total"),
    ("refused_audit_window_seconds = \"a minute\"", "web.limits.refused_audit_window_seconds"),
    ("form_per_adress_per_hour = 5", "web.limits.form_per_adress_per_hour"),
])
def test_a_wrong_limit_is_one_error_line_naming_the_file_and_the_key(
        school: School, capsys: pytest.CaptureFixture[str], line: str, key: str) -> None:
    path = job_with(school, "job-bad-limits.toml", f"\n[web.limits]\n{line}\n")
    capsys.readouterr()
    assert main(["--config", str(path), "serve", "--port", str(free_port())]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and key in err[0], err
    assert "Traceback" not in err[0]
