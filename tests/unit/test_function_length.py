"""Issue 15: no function over 60 lines (from `def` to its last line, nested functions included) anywhere in
src/idlifecycle/, and no module over 500 lines outside the emulators (sandbox/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "idlifecycle"
MAX_LINES = 60
CHECKED = tuple(sorted(p.name for p in (Path(__file__).resolve().parents[2] / "src" / "idlifecycle").iterdir()
                      if p.suffix == ".py" or (p / "__init__.py").exists()))
"""Every part of the package: each has been brought under the limit."""


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_LINES]


@pytest.mark.parametrize("part", CHECKED)
def test_no_function_over_60_lines(part: str) -> None:
    root = SRC / part
    assert root.exists(), f"{part} is not under src/idlifecycle: update CHECKED"
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert [f for p in files for f in long_functions(p)] == []


def test_a_long_nested_function_is_found(tmp_path: Path) -> None:
    """61 lines counted from `def`, the nested function's lines included; 60 pass."""
    inner = "\n".join(f"        x{n} = {n}" for n in range(MAX_LINES - 2))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def outer() -> None:\n    def inner() -> None:\n{inner}\n    inner()\n\n\n"
                     "async def fine() -> None:\n    pass\n", "utf-8")
    assert long_functions(probe) == [f"{probe}:1 outer (61 lines)"]


def test_no_module_outside_the_emulators_is_over_500_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in sorted(SRC.rglob("*.py")) if not p.is_relative_to(SRC / "sandbox")
            if (n := len(p.read_text("utf-8").splitlines())) > 500}
    assert long == {}
