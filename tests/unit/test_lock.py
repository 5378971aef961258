"""requirements.lock pins every dependency pyproject.toml names (regenerate it with `bash .ci/lock`)."""

from __future__ import annotations

import re
import tomllib

from tests.factories import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_of_the_project_and_its_tests_is_pinned_in_the_lock_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_name(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]}
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pinned = {m.group(1).lower().replace("_", "-"): m.group(2)
              for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", lock, re.M)}
    assert wanted - set(pinned) == set(), "named in pyproject.toml but not in requirements.lock: run bash .ci/lock"
    # The pinned tools pyproject.toml names exactly are the ones locked.
    for requirement in project["optional-dependencies"]["test"]:
        if "==" in requirement:
            name, version = requirement.split("==")
            assert pinned[_name(name)] == version
    assert "--hash=sha256:" in lock
