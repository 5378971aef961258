"""docs/ARCHITECTURE.md matches the code (issue 15): the dependency rules it states are the contracts
`lint-imports` checks, in the same words, and its layout names every part of src/idlifecycle/.

The design document is what a maintainer reads first; a rule or a module it does not mention is one they
will break or duplicate without knowing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
SRC = ROOT / "src" / "idlifecycle"


def plain(text: str) -> str:
    """The text without Markdown emphasis and line breaks, so a rule may wrap or be bold."""
    return re.sub(r"\s+", " ", text.replace("**", "").replace("`", ""))


def test_every_dependency_rule_is_stated_in_the_design_document_in_the_contracts_words() -> None:
    document = plain(DOC).lower()  # a rule may open a sentence in the document
    missing = [c["name"] for c in CONTRACTS if plain(c["name"]).lower() not in document]
    assert missing == []


def test_the_pure_core_the_document_names_is_the_one_the_contract_checks() -> None:
    [core] = [c for c in CONTRACTS if c["id"] == "core-is-pure"]
    modules = {m.removeprefix("idlifecycle.") for m in core["source_modules"]}
    stated = re.search(r"the core \(([^)]*)\) imports nothing", plain(DOC))
    assert stated is not None, "the document no longer states the core's rule"
    assert set(re.split(r",\s*", stated.group(1))) == modules


def test_the_layout_names_every_part_of_the_package() -> None:
    layout = DOC.split("## Layout", 1)[1].split("\n## ", 1)[0]
    parts = sorted(p.stem if p.is_file() else p.name for p in SRC.iterdir()
                   if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
                   or (p.is_dir() and (p / "__init__.py").exists()))
    unnamed = [part for part in parts if not re.search(rf"\b{re.escape(part)}(\.py|/|\b)", layout)]
    assert unnamed == []
