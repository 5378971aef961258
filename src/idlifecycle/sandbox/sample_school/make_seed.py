"""Writes entra-seed.json: the sample school's Microsoft 365 tenant as it was before idlifecycle.

The tenant the demo starts from is what a school typically has on its first night:
- staff accounts named by the school's convention but with no anchor (adopted by the "login"
  rule), except Jon and John Smith, whose shared base name "jsmith" cannot tell them apart;
- pupils in Years 1-11 already anchored by an earlier tool, but still in last year's year
  group (the September roll-over was never applied), a few with drifted names;
- July's leavers still enabled; a pupil who left and came back, still disabled;
- an IT technician synced from on-premises AD (hybrid: only cloud groups may change);
- accounts nobody in the feed matches (the office mailbox, the exams officer), an admin outside
  the managed domains, and last year's groups marked as the tool's.

Run `python -m idlifecycle.sandbox.sample_school.make_seed` after regenerating the CSVs.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from idlifecycle.config import load_mapping
from idlifecycle.feeds import FeedSpec, read_feeds
from idlifecycle.model import Kind, Person
from idlifecycle.naming import assign_usernames, base_username, year_label

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent.parent
TODAY = date(2026, 11, 23)
LAST_JULY = date(2026, 7, 1)
MARKER = "Managed by idlifecycle"
HYBRID_STAFF = "AHU"
RETURNED_PUPIL = "000150"


def _previous_year(year_group: str) -> str | None:
    if year_group in ("R", "N1", "N2"):
        return None
    return "R" if year_group == "1" else str(int(year_group) - 1)


def _user(upn: str, person: Person, **extra: Any) -> dict[str, Any]:
    return {"userPrincipalName": upn, "givenName": person.first_name, "surname": person.last_name,
            "displayName": person.display_name, "usageLocation": "GB", "accountEnabled": True,
            "mail": upn, **extra}


def _staff_user(person: Person, upn: str) -> dict[str, Any]:
    if person.person_id == HYBRID_STAFF:
        return _user(upn, person, employeeId=person.person_id, onPremisesSyncEnabled=True,
                     jobTitle="IT Technician", employeeType="staff")
    return _user(upn, person, jobTitle=(person.roles or ("",))[0])


def _pupil_user(person: Person, upn: str, label: str) -> dict[str, Any]:
    """A pupil with last year's details: the roll-over into this year was never applied."""
    extra: dict[str, Any] = {"employeeId": person.person_id, "department": label, "jobTitle": "Pupil",
                             "employeeType": "pupil"}
    if person.person_id == RETURNED_PUPIL:
        extra["accountEnabled"] = False
    user = _user(upn, person, **extra)
    if person.preferred_first_name and person.preferred_first_name != person.legal_first_name:
        # An older tool used the legal forename: the display name has drifted from the MIS.
        user["givenName"] = person.legal_first_name
        user["displayName"] = f"{person.legal_first_name} {person.last_name}"
    return user


def _unmatched_users(staff_domain: str) -> list[dict[str, Any]]:
    """Accounts nobody in the feed matches, and an admin outside the managed domains."""
    return [
        {"userPrincipalName": f"office@{staff_domain}", "givenName": "School", "surname": "Office",
         "displayName": "School Office", "mail": f"office@{staff_domain}"},
        {"userPrincipalName": f"exams.officer@{staff_domain}", "givenName": "Exams", "surname": "Officer",
         "displayName": "Exams Officer"},
        {"userPrincipalName": "it.admin@example.sch.uk", "givenName": "Ida", "surname": "Admin",
         "displayName": "Ida Admin (IT)", "usageLocation": "GB"},
    ]


def _other_groups(staff_domain: str) -> list[dict[str, Any]]:
    """The licence groups, marked as the tool's, and a group made by hand."""
    return [
        {"displayName": "Licence - Microsoft 365 A1 Students", "description": f"Group-based licensing. {MARKER}",
         "members": []},
        {"displayName": "Licence - Microsoft 365 A3 Faculty", "description": f"Group-based licensing. {MARKER}",
         "members": []},
        {"displayName": "Governors", "description": "Made by hand; not the tool's",
         "members": [f"office@{staff_domain}"]},
    ]


def build() -> dict[str, Any]:
    rules = load_mapping([ROOT / "mappings" / "school.toml"])
    feed = read_feeds([FeedSpec("mis-csv", HERE / "pupils.csv", {"kind": "pupil", "date_order": "dmy"}),
                       FeedSpec("mis-csv", HERE / "staff.csv", {"kind": "staff", "date_order": "dmy"})])
    users: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    staff_domain = rules.kinds[Kind.STAFF].domain
    pupil_domain = rules.kinds[Kind.PUPIL].domain
    seeded = [p for p in feed.people if not (p.start_date is not None and p.start_date > TODAY)]
    pupils = [p for p in seeded if p.kind is Kind.PUPIL]
    # The earlier tool numbered clashing pupils as idlifecycle does (19jsmith, 19jsmith2).
    pupil_names = assign_usernames(pupils, rules.naming, taken=(), today=TODAY)
    for person in seeded:
        if person.kind is Kind.STAFF:
            username = base_username(person, rules.naming, TODAY)
            if username == "jsmith":
                continue
            upn = f"{username}@{staff_domain}"
            users.append(_staff_user(person, upn))
            groups.setdefault("All Staff", []).append(upn)
            continue
        previous = _previous_year(person.year_group or "")
        if previous is None:
            continue
        upn = f"{pupil_names[person.person_id]}@{pupil_domain}"
        label = year_label(previous)
        users.append(_pupil_user(person, upn, label))
        groups.setdefault("All Pupils", []).append(upn)
        groups.setdefault(f"{label} Pupils", []).append(upn)
    users += _unmatched_users(staff_domain)
    group_list = [{"displayName": name, "description": MARKER, "members": sorted(members)}
                  for name, members in sorted(groups.items())]
    group_list += _other_groups(staff_domain)
    return {
        "tenant_id": "5c3d1a2e-0000-4000-8000-5c4001000001",
        "domains": [staff_domain, pupil_domain, "example.sch.uk"],
        "subscribedSkus": [
            {"skuId": "314c4481-f395-4525-be8b-2ec4bb1e9d91", "skuPartNumber": "STANDARDWOFFPACK_STUDENT"},
            {"skuId": "94763226-9b3c-4e75-a931-5c89701abe66", "skuPartNumber": "STANDARDWOFFPACK_FACULTY"},
        ],
        "users": users,
        "groups": group_list,
        "directoryRoles": [{"displayName": "Global Administrator", "members": ["it.admin@example.sch.uk"]}],
    }


def main() -> None:
    target = HERE / "entra-seed.json"
    target.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
