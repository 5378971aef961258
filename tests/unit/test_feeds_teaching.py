"""Who teaches whom, read from the feeds: SDS v2.1 and OneRoster classes.csv + enrollments.csv (Microsoft's own
SDS sample, and a OneRoster 1.1 export with deliberate bad references), and a MIS staff report's tutor group."""

from __future__ import annotations

import shutil
from pathlib import Path

from idlifecycle.feeds import FeedSpec, format_report, read_feed
from idlifecycle.model import Kind

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
MICROSOFT = DATA / "sds_v2_microsoft_sample"
ROSTER = DATA / "oneroster_classes"


def people(fmt: str, path: Path, **options: object) -> dict[str, tuple[Kind, tuple[str, ...], tuple[str, ...]]]:
    result = read_feed(FeedSpec(fmt, path, options, "jobs/nightly.toml"))
    return {p.person_id: (p.kind, p.classes, p.teaches) for p in result.people}


def test_microsofts_sds_sample_gives_pupils_their_classes_and_the_teacher_both_of_hers() -> None:
    read = people("sds-v2", MICROSOFT)
    assert read["221001"] == (Kind.PUPIL, ("7C Computing",), ())
    assert read["221008"] == (Kind.PUPIL, ("12B Biology",), ())
    assert read["221010"] == (Kind.STAFF, (), ("7C Computing", "12B Biology"))
    assert read["221011"] == (Kind.STAFF, (), ()), "staff with no enrolment teach no class"
    assert read_feed(FeedSpec("sds-v2", MICROSOFT)).notes == ()


def test_an_sds_folder_without_class_files_has_no_classes_and_no_note() -> None:
    result = read_feed(FeedSpec("sds-v2", DATA / "sds_v2"))
    assert result.notes == () and all(p.classes == () and p.teaches == () for p in result.people)


def test_oneroster_enrolments_by_role_and_status_with_shared_titles_told_apart() -> None:
    read = people("oneroster", ROSTER)
    # Two sets share the title "Year 7 Maths": each keeps its id, or one set's teacher would reset the other's.
    assert read["u-001234"] == (Kind.PUPIL, ("Year 7 Maths (c-7maths1)", "7R Registration"), ())
    assert read["u-t01"] == (Kind.STAFF, (), ("Year 7 Maths (c-7maths1)",))
    assert read["u-t02"] == (Kind.STAFF, (), ("Year 7 Maths (c-7maths2)", "7R Registration")), "an aide too"


def test_bad_oneroster_references_are_notes_that_name_the_line_and_refuse_no_row() -> None:
    result = read_feed(FeedSpec("oneroster", ROSTER))
    plain = read_feed(FeedSpec("oneroster", DATA / "oneroster"))
    assert [p.person_id for p in result.people] == [p.person_id for p in plain.people]
    assert [(e.line, e.field, e.message) for e in result.errors] == [
        (e.line, e.field, e.message) for e in plain.errors], "an enrolment never refuses or holds anyone"
    file = ROSTER / "enrollments.csv"
    assert result.notes == (
        f"{file}:8: classSourcedId 'c-gone' is not a class in classes.csv; enrolment left out",
        f"{file}:9: userSourcedId 'u-nobody' is nobody the feed provisions; enrolment left out",
        f"{file}:11: 'u-t01' is staff but enrolled as student; enrolment left out",
    ), "the tobedeleted enrolment (line 7) and the guardian's (line 10) are left out silently"
    assert f"note: {file}:8: classSourcedId 'c-gone'" in format_report(result)


def test_one_class_file_without_the_other_is_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "roster"
    shutil.copytree(ROSTER, folder)
    (folder / "enrollments.csv").unlink()
    result = read_feed(FeedSpec("oneroster", folder))
    assert result.notes == (f"{folder}: classes.csv without enrollments.csv: no classes read, so teachers reset "
                            "only the registration groups the job's [teaching] table gives them",)
    assert all(p.teaches == () for p in result.people)


def test_a_broken_enrolments_file_is_a_note_not_a_stopped_night(tmp_path: Path) -> None:
    folder = tmp_path / "roster"
    shutil.copytree(ROSTER, folder)
    (folder / "enrollments.csv").write_text('classSourcedId,userSourcedId,role\n"c-7reg,u-t01,teacher\n')
    result = read_feed(FeedSpec("oneroster", folder))
    assert len(result.notes) == 1 and "the CSV is broken" in result.notes[0] and "no classes read" in result.notes[0]
    assert [p.person_id for p in result.people] == ["u-001234", "u-000987", "u-t01", "u-t02", "u-000990"]


def test_a_missing_enrolment_column_is_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "roster"
    shutil.copytree(ROSTER, folder)
    (folder / "enrollments.csv").write_text("classSourcedId,userSourcedId\nc-7reg,u-t01\n")
    assert read_feed(FeedSpec("oneroster", folder)).notes == (
        f"{folder / 'enrollments.csv'}: missing column 'role'; no classes read",)


def test_a_mis_staff_reports_tutor_group_column_is_what_they_teach(tmp_path: Path) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_text('"Staff Code","Forename","Surname","Role","Tutor Group"\n'
                     '"JDO","Jane","Doe","Teacher","7A"\n"ABE","Al","Bell","Teacher","8A; 8B"\n'
                     '"OFF","Olu","Fisher","Office Manager",""\n', encoding="utf-8")
    read = people("mis-csv", staff, kind="staff")
    assert read == {"JDO": (Kind.STAFF, (), ("7A",)), "ABE": (Kind.STAFF, (), ("8A", "8B")),
                    "OFF": (Kind.STAFF, (), ())}
