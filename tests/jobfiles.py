"""Writes the TOML files a test school needs: a job naming its feeds, connectors and mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TWO_FEEDS = (("pupils.csv", "pupil"), ("staff.csv", "staff"))
"""The usual MIS export: one CSV of pupils and one of staff, beside the job file."""

LENIENT_GUARDS = {"max_destructive_percent": 100, "max_feed_drop_percent": 100}
"""Small test schools lose a large share of people in one night; the count limit still applies."""


def toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_table(values: Mapping[str, Any]) -> str:
    return "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())


def write_connector(path: Path, name: str, type_: str, options: Mapping[str, Any]) -> Path:
    path.write_text(toml_table({"name": name, "type": type_, **options}), encoding="utf-8")
    return path


def write_job(
    path: Path,
    *,
    connectors: Sequence[str | Path],
    mappings: Sequence[str | Path],
    feeds: Sequence[tuple[str | Path, str]] = TWO_FEEDS,
    state_dir: str | Path = "state",
    guards: Mapping[str, Any] = LENIENT_GUARDS,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "nightly",
) -> Path:
    """The job file; paths may be relative to it. `sections` adds [passwords], [access], … tables."""
    text = "[job]\n" + toml_table({"name": name, "state_dir": str(state_dir),
                                   "connectors": [str(c) for c in connectors],
                                   "mappings": [str(m) for m in mappings]})
    for feed, kind in feeds:
        # The test schools write UK dates that could all be mm/dd (01/09/2020): say the order.
        text += "\n[[job.feeds]]\n" + toml_table(
            {"format": "mis-csv", "path": str(feed), "kind": kind, "date_order": "dmy"})
    for title, table in {"guards": guards, **(sections or {})}.items():
        if table:
            text += f"\n[{title}]\n" + toml_table(table)
    path.write_text(text, encoding="utf-8")
    return path
