"""The access review's *Changes this year* sheet: the review year's audit entries, one row each (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from idlifecycle.reports.workbook import Column, ColumnKind, Sheet, Table, Value
from idlifecycle.store import AuditEntry

CHANGES = "Changes this year"

AUDIT_COLUMNS = ("directory", "action", "username", "person_id", "group", "reason")
HIDDEN_AUDIT_WORDS = ("password", "secret", "token")
"""Audit data never holds secrets; this is a second lock on the door for the workbook."""


def _audit_detail(data: Mapping[str, Any]) -> str:
    return "; ".join(
        f"{k}: {v}" for k, v in sorted(data.items())
        if k not in AUDIT_COLUMNS and not any(word in k.lower() for word in HIDDEN_AUDIT_WORDS)
    )


def changes_sheet(audit: Sequence[AuditEntry]) -> Sheet:
    """The *Changes this year* sheet: every audit entry of the review year, secrets never shown."""
    rows: list[list[Value]] = []
    for entry in audit:
        fields = [entry.data.get(k) for k in AUDIT_COLUMNS]
        rows.append([
            datetime.fromisoformat(entry.at), entry.event, entry.actor,
            *(None if v is None else str(v) for v in fields), _audit_detail(entry.data),
        ])
    columns = (Column("When", 16, ColumnKind.DATETIME), Column("Event", 18), Column("By", 18), Column("Directory", 11),
               Column("Action", 16), Column("Username", 18), Column("Person ID", 12), Column("Group", 20),
               Column("Reason", 40), Column("Detail", 40))
    return Sheet(CHANGES, (Table(columns, rows),))
