"""A connector's TOML table holds only keys the connector reads: a typo is one error naming the file and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from idlifecycle.connectors.ad import ADConnector
from idlifecycle.connectors.base import Connector
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.connectors.google import GoogleConnector
from idlifecycle.sandbox.launch import EntraSandbox, GoogleSandbox
from tests import jobfiles
from tests.e2e.school import write_pupils, write_staff
from tests.e2e.test_cli import STAFF, idl
from tests.factories import ROOT

CONNECTORS: dict[str, type[Connector]] = {"ad": ADConnector, "entra": EntraConnector, "google": GoogleConnector}
SANDBOXES: dict[str, type[Connector]] = {"entra-sandbox": EntraSandbox, "google-sandbox": GoogleSandbox}
LAUNCHER = ROOT / "src" / "idlifecycle" / "sandbox" / "launch.py"


def job_with(tmp: Path, connector_file: Path) -> None:
    write_pupils(tmp / "pupils.csv", 5)
    write_staff(tmp / "staff.csv", STAFF)
    jobfiles.write_job(tmp / "job.toml", connectors=[connector_file], mappings=[ROOT / "mappings" / "school.toml"])


@pytest.mark.parametrize(("shipped", "typo", "meant"), [
    ("ad.toml", "tls_verfy = false", "tls_verify"),
    ("ad.toml", "conections = 4", "connections"),
    ("entra.toml", "timeout_secs = 5", "timeout_seconds"),
    ("google.toml", "quota_per_minit = 100", "quota_per_minute"),
])
def test_a_mistyped_connector_option_is_one_error_naming_the_file_and_the_key(
        tmp_path: Path, shipped: str, typo: str, meant: str) -> None:
    connector_file = tmp_path / shipped
    connector_file.write_text((ROOT / "connectors" / shipped).read_text(encoding="utf-8") + f"\n{typo}\n",
                              encoding="utf-8")
    job_with(tmp_path, connector_file)
    result = idl(tmp_path, "plan")
    key = typo.split(" = ")[0]
    assert result.returncode == 1
    assert result.stderr.strip() == f"idlifecycle: {connector_file}: {key}: unknown option; did you mean {meant!r}?"


def _keys_read(module: Path) -> set[str]:
    # Every way the connectors read their table: context.option("key"), GoogleOptions' text()/number(),
    # and `"key" in context.options`.
    source = module.read_text(encoding="utf-8")
    return set(re.findall(r'\b(?:option|text|number)\("([a-z_]+)"', source)) | set(
        re.findall(r'"([a-z_]+)" in context\.options', source))


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_every_option_a_connector_reads_and_every_shipped_key_is_declared(kind: str) -> None:
    declared = CONNECTORS[kind].option_keys
    connectors = ROOT / "src" / "idlifecycle" / "connectors"
    # A connector is a module (connectors/KIND*.py) or a package (connectors/KIND/).
    modules = sorted(connectors.glob(f"{kind}*.py")) + sorted((connectors / kind).glob("*.py"))
    assert modules, f"no source of the {kind} connector found"
    read = set().union(*(_keys_read(m) for m in modules))
    assert read - declared == set(), f"read by the {kind} connector but refused in its TOML table"


@pytest.mark.parametrize("kind", sorted(SANDBOXES))
def test_every_option_a_sandbox_launcher_reads_is_declared_and_the_rest_are_its_connectors(kind: str) -> None:
    declared = SANDBOXES[kind].option_keys
    assert _keys_read(LAUNCHER) - set().union(*(c.option_keys for c in SANDBOXES.values())) == set()
    real = CONNECTORS[kind.removesuffix("-sandbox")].option_keys
    assert declared - real <= _keys_read(LAUNCHER), f"the {kind} type declares keys nothing reads"


@pytest.mark.parametrize("shipped", sorted((ROOT / "connectors").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_key_is_declared_by_the_type_it_names(shipped: Path) -> None:
    table = tomllib.loads(shipped.read_text(encoding="utf-8"))
    declared = {**CONNECTORS, **SANDBOXES}[table["type"]].option_keys
    keys = set(table) - {"name", "type"}
    assert keys <= declared, f"{shipped.name} holds keys its connector does not read: {keys - declared}"
