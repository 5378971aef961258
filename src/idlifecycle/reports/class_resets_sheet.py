"""The access review's *Password resets* sheet: who reset whose password this year through a class reset
(a teacher for their own pupils, the office as a password admin, the IT desk for a teacher), and the
refusals, from the audit log's `class-reset` and `class-reset-refused` entries (pure). Never a password:
the audit holds none."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from idlifecycle.reports.workbook import Column, ColumnKind, Sheet, Table, Value
from idlifecycle.store import AuditEntry

CLASS_RESETS = "Password resets"


def class_resets_sheet(audit: Sequence[AuditEntry]) -> Sheet:
    rows: list[list[Value]] = []
    for entry in audit:
        if entry.event not in ("class-reset", "class-reset-refused"):
            continue
        data = entry.data
        done = entry.event == "class-reset"
        outcome = ("set in " + ", ".join(data.get("directories") or []) if data.get("directories")
                   else "set nowhere (every directory refused)") if done else f"refused: {data.get('reason', '')}"
        rows.append([datetime.fromisoformat(entry.at), entry.actor, str(data.get("teacher") or ""),
                     str(data.get("pupil_id") or ""), str(data.get("username") or ""), outcome,
                     str(data.get("from") or ""), str(data.get("operator") or "")])
    columns = (Column("When", 16, ColumnKind.DATETIME), Column("Asked by", 22), Column("Teacher", 10),
               Column("Pupil ID", 12), Column("Username", 18), Column("Outcome", 50), Column("From", 22),
               Column("Entered by", 14))
    return Sheet(CLASS_RESETS, (Table(columns, rows),))
