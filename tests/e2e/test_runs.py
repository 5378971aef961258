"""A run's identity is the run: a later night, reset or decision is never taken for an earlier one,
a saved plan is checked every time it is applied, and the date is checked against the last run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.doubles import FileDirectory
from tests.e2e.school import write_pupils
from tests.e2e.test_cli import idl, school
from tests.factories import ROOT


def directory(tmp: Path) -> FileDirectory:
    return FileDirectory("ad", tmp / "directory.sqlite")


def account_of(tmp: Path, person_id: str):
    return next(a for a in directory(tmp).accounts() if a.anchor == person_id)


def test_a_leaver_who_comes_back_and_leaves_again_is_disabled_again(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    left = idl(tmp_path, "sync")
    assert left.returncode == 0, left.stderr
    assert not account_of(tmp_path, "000003").enabled
    write_pupils(tmp_path / "pupils.csv", 40)
    back = idl(tmp_path, "sync")
    assert back.returncode == 0, back.stderr
    assert account_of(tmp_path, "000003").enabled
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    again = idl(tmp_path, "sync")
    assert again.returncode == 0, again.stderr
    assert not account_of(tmp_path, "000003").enabled, "the third night must disable the leaver again"
    assert "No changes" in idl(tmp_path, "sync").stdout
