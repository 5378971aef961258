"""A small school on disk for CLI and crash tests: feed CSVs, a job file and a test-double directory."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

from tests import jobfiles
from tests.factories import ROOT
from tests.jobfiles import write_connector

PUPIL_HEADER = ["Adno", "UPN", "Legal Forename", "Preferred Forename", "Legal Surname", "Year", "Reg Group",
                "Admission Date", "Leaving Date"]
STAFF_HEADER = ["Staff Code", "Forename", "Surname", "Role", "Start Date", "End Date"]


def write_pupils(path: Path, count: int, *, leaving: dict[int, str] | None = None, first: int = 1) -> None:
    leaving = leaving or {}
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(PUPIL_HEADER)
        for i in range(first, first + count):
            year = str(7 + i % 5)
            writer.writerow([f"{i:06d}", "", "Pupil", "", f"Number{i}", year, f"{year}A", "01/09/2020",
                             leaving.get(i, "")])


def write_staff(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(STAFF_HEADER)
        for code, first, last, role in rows:
            writer.writerow([code, first, last, role, "01/09/2019", ""])


def write_job(tmp: Path) -> Path:
    """A job on the test double (a directory in a SQLite file), with the default guards."""
    (tmp / "connectors").mkdir(exist_ok=True)
    write_connector(tmp / "connectors" / "double.toml", "ad", "tests.doubles:FileDirectory",
                    {"path": str(tmp / "directory.sqlite")})
    return jobfiles.write_job(tmp / "job.toml", connectors=["connectors/double.toml"],
                              mappings=[ROOT / "mappings" / "school.toml"], guards={})


def slip_passwords(folder: Path, pattern: str = "*.pdf") -> list[tuple[str, str]]:
    """(username, password) on every slip sheet, oldest sheet first, read as a class teacher would."""
    found: list[tuple[str, str]] = []
    for pdf in sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime_ns):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                              text=True).stdout
        found += list(zip(re.findall(r"Username:\s+(\S+)", text), re.findall(r"Password:\s+(\S+)", text),
                          strict=True))
    return found
