"""`open_job` closes the job however the command ends, and the older sandbox spelling names the same types."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlifecycle.checkpoint import read_checkpoint
from idlifecycle.config import load_job_config
from idlifecycle.connectors.base import ConnectorContext, named_type
from idlifecycle.job import open_job
from tests.factories import ROOT
from tests.jobfiles import write_connector, write_job


def demo_job(tmp_path: Path, connector: Path) -> Path:
    return write_job(tmp_path / "job.toml", connectors=[connector], mappings=[ROOT / "mappings" / "school.toml"])


def test_a_command_that_fails_still_closes_its_job_and_keeps_a_checkpoint_of_what_it_recorded(
        tmp_path: Path) -> None:
    job_file = demo_job(tmp_path, ROOT / "connectors" / "entra-sandbox.toml")
    with pytest.raises(RuntimeError, match="the command failed"), open_job(job_file) as job:
        job.store.audit("password-reset-refused", {"person_id": "P1"}, actor="test")
        checkpoint_path = job.config.checkpoint_path
        raise RuntimeError("the command failed")
    kept = read_checkpoint(checkpoint_path)
    assert kept is not None
    assert kept.audit_seq >= 1
    # The store was closed with it: the next command opens it again, checked against that checkpoint.
    with open_job(job_file) as again:
        assert again.store.audit_entries()[-1].event == "password-reset-refused"


@pytest.mark.parametrize(("type_", "options", "demo"), [
    ("entra-sandbox", {}, True),
    ("entra", {"sandbox": True}, True),
    ("google", {"sandbox": True}, True),
    ("entra", {"sandbox": False}, False),
    ("entra", {}, False),
])
def test_a_job_of_sandbox_types_alone_is_the_demo_in_either_spelling(
        tmp_path: Path, type_: str, options: dict[str, bool], demo: bool) -> None:
    connector = write_connector(tmp_path / "directory.toml", "entra", type_, options)
    assert load_job_config(demo_job(tmp_path, connector)).sandbox_only is demo


def test_the_older_spelling_is_read_as_the_sandbox_type_without_its_sandbox_key(tmp_path: Path) -> None:
    def context(type_: str, **options: object) -> ConnectorContext:
        return ConnectorContext(name="entra", type=type_, options=options, source="entra.toml", cursors=None,  # type: ignore[arg-type]
                                state_dir=tmp_path)

    older = named_type(context("entra", sandbox=True, seed="seed.json"))
    assert (older.type, dict(older.options)) == ("entra-sandbox", {"seed": "seed.json"})
    real = named_type(context("entra", sandbox=False, tenant_id="t"))
    assert (real.type, dict(real.options)) == ("entra", {"tenant_id": "t"})
    assert named_type(context("ad", sandbox=True)).options == {"sandbox": True}
