"""The access-review workbook opens in LibreOffice (headless) without error, shows formula-looking names
as text, and is rendered to PNG pages in test-output/access-review/ for a person to look at."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from idlifecycle.reports.access_review import build_review
from idlifecycle.reports.workbook import write_xlsx
from tests.unit.test_report_school import INJECTION_NAMES, review_input

SOFFICE = shutil.which("soffice")
PDFTOPPM = shutil.which("pdftoppm")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "access-review"

pytestmark = pytest.mark.skipif(SOFFICE is None or PDFTOPPM is None,
                                reason="needs libreoffice-calc-nogui and poppler-utils (apt)")


def soffice(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A fresh profile: a shared one is locked by any other soffice running on the machine.
    profile = f"-env:UserInstallation=file://{tmp_path}/lo-profile"
    return subprocess.run([str(SOFFICE), profile, "--headless", *args], capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lo")
    path = tmp / "access-review.xlsx"
    write_xlsx(build_review(review_input(tmp)), path)
    return path


def test_the_workbook_converts_to_pdf_and_every_page_is_rendered_for_a_person_to_check(
        review: Path, tmp_path: Path) -> None:
    done = soffice(tmp_path, "--convert-to", "pdf", "--outdir", str(tmp_path), str(review))
    pdf = tmp_path / "access-review.pdf"
    assert done.returncode == 0 and pdf.exists(), done.stdout + done.stderr
    assert "Error" not in done.stderr
    if OUTPUT.exists():
        shutil.rmtree(OUTPUT)
    OUTPUT.mkdir(parents=True)
    shutil.copy(review, OUTPUT / review.name)
    shutil.copy(pdf, OUTPUT / pdf.name)
    subprocess.run([str(PDFTOPPM), "-png", "-r", "70", str(pdf), str(OUTPUT / "page")], check=True, timeout=120)
    pages = sorted(OUTPUT.glob("page-*.png"))
    # Six sheets, each at least one page wide-fitted page.
    assert len(pages) >= 6
    assert all(p.stat().st_size > 5_000 for p in pages)


def test_libreoffice_shows_formula_looking_names_as_the_text_they_are(review: Path, tmp_path: Path) -> None:
    sheets = {"people": 2, "changes": 6}
    texts: dict[str, list[str]] = {}
    for name, number in sheets.items():
        out = tmp_path / name
        out.mkdir()
        # Filter options: comma, double quote, UTF-8, from row 1, …, the sheet to export.
        spec = f"csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,{number}"
        done = soffice(tmp_path, "--convert-to", spec, "--outdir", str(out), str(review))
        assert done.returncode == 0, done.stderr
        [exported] = list(out.glob("*.csv"))
        with exported.open(encoding="utf-8", newline="") as handle:
            texts[name] = [value for row in csv.reader(handle) for value in row]
    for name in INJECTION_NAMES:
        assert f"{name} Smith" in texts["people"], name
    assert '=HYPERLINK("http://x")' in texts["changes"]
    assert "http://x" not in texts["changes"]
    assert not any(v.startswith(("#NAME", "Err:")) for v in texts["people"] + texts["changes"])


def test_libreoffice_shows_each_admins_second_factor_and_the_flag_on_privileged_roles(
        review: Path, tmp_path: Path) -> None:
    spec = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,4"  # Privileged roles
    done = soffice(tmp_path, "--convert-to", spec, "--outdir", str(tmp_path), str(review))
    assert done.returncode == 0, done.stderr
    [exported] = list(tmp_path.glob("*.csv"))
    with exported.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    shown = {row[header.index("Username")]: (row[header.index("Second factor")], row[header.index("Flag")])
             for row in rows[1:]}
    assert shown == {"bcox": ("unknown — AD does not record a second factor", ""), "alovelace": ("registered", ""),
                     "breakglass": ("none", "Admin without a second factor")}


HOSTILE_REASON = '\x01=HYPERLINK("http://evil.example/","Approve here")'
"""A reason typed into the anonymous request form, as the audit log keeps it."""
HOSTILE_SURNAME = "\u200b+1+1"
"""An MIS surname with a zero-width space in front of a formula."""


def hostile_review(tmp: Path) -> Path:
    from dataclasses import replace

    from idlifecycle.model import Kind, Person, RoleHolder
    from idlifecycle.store import Store
    from tests.unit.test_report_school import account

    data = review_input(tmp)
    pupil = Person("P666", Kind.PUPIL, "\x02=2+2", HOSTILE_SURNAME, year_group="8", registration_group="\x7f@SUM(1)")
    snapshots = dict(data.snapshots)
    entra = snapshots["entra"]
    hostile_accounts = (account("entra", "e-666", "pupil666", "P666", surname=HOSTILE_SURNAME),
                        replace(account("entra", "e-667", "ghost", None), display_name="\ufeff-3+3"))
    snapshots["entra"] = replace(entra, accounts=(*entra.accounts, *hostile_accounts))
    holders = dict(data.role_holders)
    holders["entra"] = [*holders["entra"], RoleHolder("entra", "Global Administrator", "pupil666",
                                                      "\x01=1+1", "P666")]
    restricted = [replace(data.restricted[0], display_name="\u202e=3+3", person_id="P666")]
    store = Store(tmp / "hostile-state.db")
    try:
        store.audit("access-requested", {"request_id": 1, "share": "sen", "person_id": "P666",
                                         "reason": HOSTILE_REASON, "days": 7, "requester": "x@school.example"},
                    actor="x@school.example")
        audit = [*data.audit, *store.audit_entries()]
    finally:
        store.close()
    hostile = replace(data, people=[*data.people, pupil], snapshots=snapshots, role_holders=holders,
                      restricted=restricted, audit=audit)
    path = tmp / "hostile-review.xlsx"
    write_xlsx(build_review(hostile), path)
    return path


def test_libreoffice_finds_no_formula_from_a_hostile_request_reason_or_mis_field_in_any_sheet(
        tmp_path: Path) -> None:
    review = hostile_review(tmp_path)
    done = soffice(tmp_path, "--convert-to", "fods", "--outdir", str(tmp_path), str(review))
    flat = tmp_path / "hostile-review.fods"
    assert done.returncode == 0 and flat.exists(), done.stdout + done.stderr
    assert "table:formula=" not in flat.read_text(encoding="utf-8")
    shown: dict[int, list[str]] = {}
    for number in (2, 3, 4, 5, 6):  # People, Restricted, Privileged, Exceptions, Changes
        out = tmp_path / f"sheet{number}"
        out.mkdir()
        spec = f"csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,{number}"
        converted = soffice(tmp_path, "--convert-to", spec, "--outdir", str(out), str(review))
        assert converted.returncode == 0, converted.stderr
        [exported] = list(out.glob("*.csv"))
        with exported.open(encoding="utf-8", newline="") as handle:
            shown[number] = [value for row in csv.reader(handle) for value in row]
    everything = [v for values in shown.values() for v in values]
    assert "=2+2 +1+1" in shown[2] and "@SUM(1)" in shown[2]
    assert "=3+3" in shown[3]
    assert "=1+1" in shown[4]
    assert "-3+3" in shown[5]
    assert '=HYPERLINK("http://evil.example/","Approve here")' in shown[6]
    # Evaluated, these would have shown as their results.
    assert "Approve here" not in everything
    assert "4" not in shown[2] and "6" not in shown[3] and "2" not in shown[4] and "0" not in shown[5]
    assert not any(v.startswith(("#NAME", "Err:")) for v in everything)
