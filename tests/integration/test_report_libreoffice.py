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
