"""The night after the access review, on a real Samba DC: two SENCos (in the SEN share's baseline by
role) the SIRO marked Remove stay out, the plan says why, a later approval puts one back, and the
next review shows the decision with its date."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from idlifecycle.access.records import AccessRecords
from idlifecycle.access.service import Access
from idlifecycle.cli import main
from idlifecycle.job import run_sync
from idlifecycle.model import Action
from idlifecycle.reports.access_review import KEPT_OUT, RESTRICTED
from idlifecycle.reports.decisions import DECIDED_EVENT
from tests.integration.access_support import (
    Mailbox,
    School,
    approve_by_link,
    decide_in_workbook,
    mailbox,
    members_of,
    review_rows,
    running_school,
)
from tests.integration.samba import DomainController, samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template"]

SEN_GROUP = "Share-SEN-Restricted"
TWO_SENCOS = """Staff Code,Forename,Surname,Role,Start Date,End Date
HCA,Helen,Carter,Head Teacher,01/09/2015,
SEV,Siân,Evans,SENCo,01/09/2018,
TBR,Tom,Brown,SENCo,01/09/2020,
"""


@pytest.fixture(scope="module")
def sencos(samba_dc: DomainController, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    yield from running_school(samba_dc, mailbox, tmp_path_factory.mktemp("sencos"), staff_csv=TWO_SENCOS)


def test_sencos_the_siro_removed_stay_out_the_night_after_the_review_until_a_grant_is_approved(
        sencos: School, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(sencos.job_path)
    first = run_sync(sencos.job())
    assert first.status == "ok", first.failures
    assert members_of(sencos.job(), SEN_GROUP) == {"SEV", "TBR"}  # the baseline: the SENCo role

    review = tmp_path / "review-2026.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(review)]) == 0
    decide_in_workbook(review, {
        ("sen-records", "ad", "SEV"): ("Remove", "Left the SEN team in July"),
        ("sen-records", "ad", "TBR"): ("Remove", ""),
        ("staff-shared", "ad", "HCA"): ("Keep", "Head Teacher"),
    })
    plan_file = tmp_path / "decisions.json"
    assert main(["--config", config, "report", "apply-decisions", str(review), "--out", str(plan_file)]) == 0
    assert main(["--config", config, "apply", str(plan_file)]) == 0
    assert members_of(sencos.job(), SEN_GROUP) == set()
    assert main(["--config", config, "apply", str(plan_file)]) == 0  # the same file again: nothing more
    decided = [(d["person_id"], d["decision"], d["note"]) for d in sencos.audit(DECIDED_EVENT)]
    assert len(decided) == 3
    assert set(decided) == {("SEV", "Remove", "Left the SEN team in July"), ("TBR", "Remove", ""),
                            ("HCA", "Keep", "Head Teacher")}

    night = run_sync(sencos.job())
    assert members_of(sencos.job(), SEN_GROUP) == set()
    assert not [c for c in night.plan.changes if c.group == SEN_GROUP], [c.to_json() for c in night.plan.changes]
    kept_out = [n for n in night.plan.notes if "kept out of Share-SEN-Restricted" in n]
    assert len(kept_out) == 2 and all("by the SIRO's decision of" in n and review.name in n for n in kept_out)
    assert any("(SEV)" in n for n in kept_out) and any("(TBR)" in n for n in kept_out)
    capsys.readouterr()
    assert main(["--config", config, "access", "list", "--share", "sen-records"]) == 0
    assert "(nobody holds any share's group)" in capsys.readouterr().out  # not "baseline" for either SENCo
    # The saved plan applied with `idlifecycle apply` dated the rows' last review.
    again = tmp_path / "review-next.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(again)]) == 0
    staff_area = {r["Person ID"]: r for r in review_rows(again, RESTRICTED) if r["Share"] == "staff-shared"}
    assert staff_area["HCA"]["Last reviewed"] is not None
    assert str(staff_area["HCA"]["Earlier decision"]).startswith("Keep on ")

    # Tom is asked for again through the access flow and the SIRO approves: the grant puts him back.
    request_id = sencos.request(person="TBR", reason="Covering annual reviews", days=14)
    approve_by_link(sencos.link_for(request_id))
    assert members_of(sencos.job(), SEN_GROUP) == {"TBR"}
    night = run_sync(sencos.job())
    assert members_of(sencos.job(), SEN_GROUP) == {"TBR"}
    assert not [c for c in night.plan.changes if c.action is Action.REMOVE_MEMBER and c.group == SEN_GROUP]

    final = tmp_path / "review-after.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(final)]) == 0
    sen = {r["Person ID"]: r for r in review_rows(final, RESTRICTED) if r["Share"] == "sen-records"}
    job = sencos.job()
    try:
        grant = next(g for g in AccessRecords(job.store).open_grants() if g.person_id == "TBR")
        decisions = {d.person_id: d for d in job.store.access_decisions()}
    finally:
        job.close()
    assert sen["SEV"]["Basis"] == KEPT_OUT
    day = decisions["SEV"].decided_at[:10]
    uk = f"{day[8:10]}/{day[5:7]}/{day[0:4]}"
    assert sen["SEV"]["Earlier decision"] == (f"Remove on {uk} by Dr Ada Okafor ({review.name}): "
                                              "Left the SEN team in July")
    assert str(sen["SEV"]["Last reviewed"])[:10] == day
    assert sen["TBR"]["Basis"] == f"grant #{grant.grant_id}"
    assert sen["TBR"]["Earlier decision"] == f"Remove on {uk} by Dr Ada Okafor ({review.name})"
    saved = json.loads(plan_file.read_text())
    assert {row["person_id"] for row in saved["decisions"]["rows"]} == {"SEV", "TBR", "HCA"}

    # At the next review the SIRO shortens Tom's grant: it now ends after the day written in Expires.
    last_day = date.today() + timedelta(days=3)
    decide_in_workbook(final, {("sen-records", "ad", "TBR"): ("Change expiry", "Reviews done by then")},
                       expires={("sen-records", "ad", "TBR"): last_day})
    assert main(["--config", config, "report", "apply-decisions", str(final), "--apply"]) == 0
    job = sencos.job()
    try:
        changed = AccessRecords(job.store).grant(grant.grant_id)
    finally:
        job.close()
    assert changed is not None and changed.expires_at == datetime.combine(last_day + timedelta(days=1), time(), UTC)
    assert [e["grant_id"] for e in sencos.audit("grant-expiry-changed")] == [grant.grant_id]
    assert members_of(sencos.job(), SEN_GROUP) == {"TBR"}

    # The grant revoked early: the baseline does not cover Tom (the SIRO removed him), so he goes at once.
    job = sencos.job()
    try:
        _, notes = Access(job).revoke(grant.grant_id, "siro@school.example.org")
    finally:
        job.close()
    assert notes == [f"ad: tbrown removed from {SEN_GROUP}"]
    assert members_of(sencos.job(), SEN_GROUP) == set()
