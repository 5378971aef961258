"""`state rebuild` reads AD's Deleted Objects on a real Samba DC: a deleted pupil's sAMAccountName is reserved,
a deleted account that was never under base_dn is not, and a new starter with the deleted name gets another."""
# ruff: noqa: F811 - pytest fixtures imported from tests.integration.samba are parameters here

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets, load_job_config
from idlifecycle.job import load_job, run_sync
from tests.integration.samba import DomainController, samba_dc, samba_template  # noqa: F401 - fixtures
from tests.integration.test_ad_job import AMY, RORY, write_school
from tests.integration.test_rebuild_recycle_bins import delete_account, lose_the_state, new_username, rebuilt

pytestmark = pytest.mark.samba


def test_ad_a_deleted_pupils_name_is_not_reissued_after_a_rebuild(samba_dc: DomainController, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dc = samba_dc
    monkeypatch.setenv("IDLIFECYCLE_AD_BIND_PASSWORD", dc.admin_password)
    job_file = write_school(tmp_path, dc, [AMY, RORY])
    assert run_sync(load_job(job_file, today=date(2026, 9, 3), secrets=Secrets())).status == "ok"
    write_school(tmp_path, dc, [RORY])  # Amy left; her account was deleted at the end of retention
    gone = delete_account(job_file, "ad", "000201")
    # Deleted outside the managed tree (an office account in CN=Users): not the tool's to reserve.
    conn = dc.connection()
    outsider = f"CN=Office Temp,CN=Users,{dc.domain_dn}"
    assert conn.add(outsider, ["top", "person", "organizationalPerson", "user"], {"sAMAccountName": "officetemp"})
    assert conn.delete(outsider)
    conn.unbind()

    lose_the_state(load_job_config(job_file))
    lines, entry, names = rebuilt(job_file)
    assert "Recycle bins: ad: 1 usernames reserved." in lines, lines
    assert entry["recycle_bins"] == {"ad": 1}
    # Samba (no AD Recycle Bin feature) keeps sAMAccountName and lastKnownParent on a deleted object but not
    # employeeID: the name is reserved for nobody in the feed, which is enough never to reissue it.
    assert names[gone.lower()].startswith("deleted:ad:")
    assert "officetemp" not in names

    write_school(tmp_path, dc, [RORY, ["000301", *AMY[1:]]])
    given = new_username(job_file, "ad", "000301")
    assert given.lower() != gone.lower() and given.lower().startswith(gone.lower())
