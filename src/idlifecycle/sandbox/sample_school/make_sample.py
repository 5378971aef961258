"""Regenerates the demo's sample school feed: pupils.csv and staff.csv as SIMS exports them.

Run `python -m idlifecycle.sandbox.sample_school.make_sample` (or this file) to rewrite the two
CSVs next to it. The seed is fixed, so the output is the same every time; the committed CSVs
are this script's output. "Today" for the demo is 2026-11-23: leavers have leaving dates
before it, starters admission dates in the weeks after it.
"""

from __future__ import annotations

import csv
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from idlifecycle.feeds._fields import upn_check_letter

HERE = Path(__file__).resolve().parent
SEED = 20261123
LA, ESTABLISHMENT = "801", "4012"
YEARS = ["Reception", *(f"Year {n}" for n in range(1, 12))]
PUPILS_PER_YEAR = 25

FIRST_NAMES = [
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo", "Freya",
    "Arthur", "Lily", "Muhammad", "Florence", "Oscar", "Grace", "Charlie", "Emily", "Jacob", "Poppy",
    "Alfie", "Ella", "Freddie", "Evie", "Theo", "Sophia", "Archie", "Ruby", "Henry", "Isabella",
    "Joshua", "Willow", "Finley", "Daisy", "Reuben", "Phoebe", "Aisha", "Hamza", "Priya", "Rhys",
    "Ffion", "Callum", "Niamh", "Kai", "Zara", "Ethan", "Megan", "Tyler",
]
SURNAMES = [
    "Jones", "Williams", "Brown", "Taylor", "Davies", "Wilson", "Evans", "Thomas", "Johnson", "Roberts",
    "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood",
    "Harris", "Lewis", "Martin", "Jackson", "Clarke", "Clark", "Turner", "Hill", "Scott", "Cooper",
    "Morris", "Ward", "Moore", "King", "Watson", "Baker", "Harrison", "Morgan", "Patel", "Young",
    "Allen", "Mitchell", "James", "Anderson", "Phillips", "Lee", "Bell", "Parker", "Davis", "Khan",
]
PREFERRED = {"Alexander": "Alex", "Elizabeth": "Libby", "William": "Will", "Katherine": "Kate", "Thomas": "Tom"}

SPECIAL_PUPILS = [
    # (year index, legal forename, preferred forename, surname): names that test transliteration
    # and username collisions.
    (5, "Zoë", "", "Adams"),
    (9, "Zoe", "", "Adams"),
    (8, "Łukasz", "", "Kowalski"),
    (6, "Văn An", "An", "Nguyễn"),
    (10, "Aoife", "", "O'Brien"),
    (3, "Harry", "", "Smith-Jones"),
    (4, "Daan", "", "van der Berg"),
    (2, "Seán", "", "Murphy"),
    (11, "Siân", "", "Williams"),
    (8, "José", "", "Fernández"),
    (1, "Mia", "", "Müller"),
    (7, "James", "", "Smith"),
    (7, "James", "", "Smith"),
]

LEAVING_DATES = ["22/07/2026"] * 5 + ["16/10/2026", "16/10/2026", "20/11/2026"]
STARTING_DATES = ["30/11/2026", "01/12/2026", "07/12/2026", "05/01/2027", "05/01/2027"]

STAFF = [
    # (title, forename, surname, role, start date, end date)
    ("Mrs", "Helen", "Carter", "Head Teacher", "01/09/2015", ""),
    ("Ms", "Siân", "Evans", "SENCo", "01/09/2018", ""),
    ("Mr", "Jon", "Smith", "Teacher", "01/09/2019", ""),
    ("Mr", "John", "Smith", "IT Technician", "04/01/2021", ""),
    ("Mrs", "Anja", "Müller", "Teacher", "01/09/2022", ""),
    ("Mr", "Ciarán", "O'Connor", "Teacher", "01/09/2016", ""),
    ("Mrs", "Patricia", "Hughes", "Office", "01/04/2012", ""),
    ("Mr", "Darren", "Price", "Teacher", "01/09/2017", "31/08/2026"),
    ("Ms", "Rebecca", "Lloyd", "Teacher", "05/01/2027", ""),
]
STAFF_ROLES = ["Teacher"] * 19 + ["Teaching Assistant"] * 8 + ["Office"] * 3 + ["IT Technician"]


class Names:
    """Random names that never repeat, so the only clashes are the deliberate ones above."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used = {(p[1], p[3]) for p in SPECIAL_PUPILS} | {(s[1], s[2]) for s in STAFF}

    def pick(self, forenames: list[str]) -> tuple[str, str]:
        while True:
            name = (self.rng.choice(forenames), self.rng.choice(SURNAMES))
            if name not in self.used:
                self.used.add(name)
                return name


@dataclass
class Pupil:
    adno: str
    upn: str
    legal: str
    preferred: str
    surname: str
    year: str
    reg: str
    admitted: str
    left: str
    gender: str


def upn(serial: int, allocated: int) -> str:
    tail = f"{LA}{ESTABLISHMENT}{allocated % 100:02d}{serial:03d}"
    return upn_check_letter("?" + tail) + tail


def pupils(rng: random.Random, names: Names) -> list[Pupil]:
    specials = {index: [p for p in SPECIAL_PUPILS if p[0] == index] for index in range(len(YEARS))}
    result: list[Pupil] = []
    serial = 0
    for index, year in enumerate(YEARS):
        entry = 2026 - index
        for place in range(PUPILS_PER_YEAR):
            special = specials[index][place] if place < len(specials[index]) else None
            if special:
                _, legal, preferred, surname = special
            else:
                legal, surname = names.pick([*FIRST_NAMES, *PREFERRED])
                preferred = PREFERRED.get(legal, "") if rng.random() < 0.7 else ""
            serial += 1
            label = "R" if index == 0 else str(index)
            result.append(Pupil(
                adno=f"{serial + 100:06d}", upn=upn(serial, entry), legal=legal, preferred=preferred or legal,
                surname=surname, year=year, reg=f"{label}{'AB'[place % 2]}", admitted=f"01/09/{entry}", left="",
                gender=rng.choice("MF"),
            ))
    # The same year's pupils who left: Year 11 at the end of the summer term, others since.
    for number, left in enumerate(LEAVING_DATES):
        index = 11 if left == "22/07/2026" else rng.randrange(1, 11)
        serial += 1
        legal, surname = names.pick(FIRST_NAMES)
        result.append(Pupil(
            adno=f"{serial + 100:06d}", upn=upn(serial, 2026 - index), legal=legal, preferred=legal,
            surname=surname, year=YEARS[index], reg=f"{index}{'AB'[number % 2]}",
            admitted=f"01/09/{2026 - index}", left=left, gender=rng.choice("MF"),
        ))
    # Starters whose admission date is in the coming weeks: accounts are made ready for day one.
    for number, admitted in enumerate(STARTING_DATES):
        index = rng.randrange(0, 11)
        serial += 1
        legal, surname = names.pick(FIRST_NAMES)
        label = "R" if index == 0 else str(index)
        result.append(Pupil(
            adno=f"{serial + 100:06d}", upn=upn(serial, 2026), legal=legal, preferred=legal,
            surname=surname, year=YEARS[index], reg=f"{label}{'AB'[number % 2]}",
            admitted=admitted, left="", gender=rng.choice("MF"),
        ))
    return result


def staff(rng: random.Random, names: Names) -> list[tuple[str, ...]]:
    people = list(STAFF)
    for role in STAFF_ROLES:
        title = rng.choice(["Mr", "Mrs", "Miss", "Ms", "Dr"]) if role == "Teacher" else rng.choice(["Mr", "Mrs", "Ms"])
        start = f"01/09/{rng.randrange(2008, 2026)}"
        people.append((title, *names.pick(FIRST_NAMES), role, start, ""))
    codes: set[str] = set()
    rows: list[tuple[str, ...]] = []
    for title, forename, surname, role, start, end in people:
        # Staff codes are plain capitals in every MIS: initial plus the surname's first letters.
        letters = unicodedata.normalize("NFKD", forename[0] + surname).encode("ascii", "ignore").decode()
        base = "".join(char for char in letters if char.isalpha())[:3].upper()
        code, number = base, 1
        while code in codes:
            number += 1
            code = f"{base}{number}"
        codes.add(code)
        rows.append((code, title, forename, surname, role, start, end))
    return rows


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """As SIMS writes a report to CSV: UTF-8 with a BOM, every field quoted, CRLF line ends."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    rng = random.Random(SEED)  # noqa: S311 - made-up names, reproducible on purpose
    names = Names(rng)
    write(
        HERE / "pupils.csv",
        ["Adno", "UPN", "Legal Forename", "Preferred Forename", "Legal Surname", "Gender", "Year", "Reg Group",
         "Admission Date", "Leaving Date"],
        [[p.adno, p.upn, p.legal, p.preferred, p.surname, p.gender, p.year, p.reg, p.admitted, p.left]
         for p in pupils(rng, names)],
    )
    write(
        HERE / "staff.csv",
        ["Staff Code", "Title", "Forename", "Surname", "Role", "Start Date", "End Date"],
        [list(row) for row in staff(rng, names)],
    )


if __name__ == "__main__":
    main()
