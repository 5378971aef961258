"""The night bench's AD side: a throw-away Samba AD DC beside the emulators, named in the night's job file.

Only where Samba can run (root, samba installed: `tests/integration/samba.py`'s own check). The domain
is provisioned into the bench's working folder and started as a copy on an address of its own
(127.x.y.z), so it never meets another run's DC. The AD connector's table is written next to the
Entra and Google ones; its bind password goes to the sync process's environment
(IDLIFECYCLE_AD_BIND_PASSWORD, as connectors/ad.toml says), never to a file. No latency is added: the
DC is a real LDAP server on this machine.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

from idlifecycle.sandbox.night import SchoolNight, _write_toml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.samba import DomainController, provision_template, unavailable_reason  # noqa: E402


def start_dc(work: Path) -> tuple[DomainController | None, str]:
    """A running DC of the bench's own, or None and the one line saying why not."""
    reason = unavailable_reason()
    if reason is not None:
        return None, f"  AD: not driven ({reason})"
    template = provision_template(work / "samba-template")
    dc = DomainController.copy_of(template, work / "samba-dc")
    dc.start()
    return dc, f"  AD: a Samba AD DC of this run's own on {dc.address} (no latency added)"


def add_to_job(school: SchoolNight, dc: DomainController) -> None:
    """The AD connector in the night's job, beside the others, as a school would name its DC."""
    table = school.folder / "ad.toml"
    _write_toml(table, {"name": "ad", "type": "ad", **dc.connector_options(), "timeout": 30})
    job = school.folder / "job.toml"
    text = job.read_text(encoding="utf-8")
    listed = tomllib.loads(text)["job"]["connectors"]
    line = re.compile(r"^connectors = .*$", re.MULTILINE)
    if len(line.findall(text)) != 1:
        raise RuntimeError(f"{job}: expected one connectors line to add AD to")
    named = ", ".join(json.dumps(c) for c in [*listed, str(table)])
    job.write_text(line.sub(lambda _: f"connectors = [{named}]", text), encoding="utf-8")
    assert tomllib.loads(job.read_text(encoding="utf-8"))["job"]["connectors"][-1] == str(table)
    school.env["IDLIFECYCLE_AD_BIND_PASSWORD"] = dc.admin_password
