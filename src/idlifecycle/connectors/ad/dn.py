"""Distinguished names and attribute values as the DC writes them: pure functions, no LDAP.

DNs are compared by their RDNs, unescaped and case-folded (RFC 4514), never by string endings: the
scope rule (`within`) is the one no write may skip, and `CN=amy,OU=School\\,Evil` is not under
`OU=School`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from idlifecycle.connectors.base import ConnectorError

NEVER = {0, 0x7FFFFFFFFFFFFFFF}
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

RDNs = tuple[tuple[tuple[str, str], ...], ...]
"""A DN as comparable RDNs (see `dn_parts`), usable as a dict key."""


def split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    """An RFC 4514 value with its escapes undone (hex pairs are UTF-8 bytes)."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1:i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(value[i].encode())
        i += 1
    return out.decode("utf-8", errors="replace")


def dn_parts(dn: str) -> list[tuple[tuple[str, str], ...]]:
    """A DN as comparable RDNs: attribute names and unescaped values, case-folded, in DN order."""
    dn = plain_dn(dn)
    rdns = []
    for rdn in split_unescaped(dn, ","):
        avas = []
        for ava in split_unescaped(rdn, "+"):
            name, sep, value = ava.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"not a DN: {dn!r}")
            avas.append((name.strip().casefold(), unescape(value.strip()).casefold()))
        rdns.append(tuple(sorted(avas)))
    return rdns


def within(dn: str, base: str) -> bool:
    """True when `dn` is `base` or below it (compared by RDNs, never by string suffix)."""
    try:
        parts, base_parts = dn_parts(dn), dn_parts(base)
    except ValueError:
        return False
    return len(parts) >= len(base_parts) and parts[len(parts) - len(base_parts):] == base_parts


def plain_dn(dn: str) -> str:
    """The DN without the extended-DN control's prefix (`<GUID=..>;<SID=..>;CN=..`)."""
    return dn.rsplit(">;", 1)[-1] if dn.startswith("<") else dn


def parent_dn(dn: str) -> str:
    r"""The DN one level up, split at the first unescaped comma (`CN=Doe\, Jane,OU=Staff` -> `OU=Staff`)."""
    return ",".join(split_unescaped(plain_dn(dn), ",")[1:])


def first_rdn(dn: str) -> str:
    r"""The RDN exactly as the DC wrote it (`CN=Doe\, Jane`): split on unescaped commas only."""
    return split_unescaped(plain_dn(dn), ",")[0]


def same_dn(left: str, right: str) -> bool:
    try:
        return dn_parts(left) == dn_parts(right)
    except ValueError:
        return False


def rdn_values(dn: str) -> list[str]:
    """The (first) value of each RDN, unescaped, in DN order."""
    return [unescape(split_unescaped(rdn, "+")[0].partition("=")[2].strip())
            for rdn in split_unescaped(plain_dn(dn), ",")]


def guid(raw: bytes) -> str:
    """objectGUID's 16 bytes (little-endian fields) as the text form the store keeps."""
    return str(uuid.UUID(bytes_le=raw))


def checked_key(key: str) -> str:
    try:
        return str(uuid.UUID(key))
    except ValueError:
        raise ConnectorError(f"{key!r} is not an Active Directory objectGUID") from None


def guid_filter(key: str) -> str:
    raw = uuid.UUID(checked_key(key)).bytes_le
    return "(objectGUID=" + "".join(f"\\{b:02x}" for b in raw) + ")"


def filetime(value: str | None) -> datetime | None:
    """A FILETIME attribute (pwdLastSet, lastLogonTimestamp); None for never."""
    if not value:
        return None
    ticks = int(value)
    if ticks in NEVER or ticks < 0:
        return None
    return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)


def generalized(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def text(entry: Mapping[str, Any], name: str) -> str | None:
    """The first value of a raw attribute as text; None when absent."""
    values = entry.get(name) or []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def key_of(raw: Mapping[str, Any]) -> str:
    return guid(raw["objectGUID"][0])


def member_name(value: str) -> str:
    """The display name of a member from its extended DN: its CN (the first RDN's value)."""
    values = rdn_values(value)
    return values[0] if values else value


def member_guid(value: str) -> str | None:
    match = re.match(r"<GUID=([0-9a-fA-F-]+)>", value)
    if match is None:
        return None
    found = match[1]
    return str(uuid.UUID(found)) if "-" in found else str(uuid.UUID(bytes_le=bytes.fromhex(found)))


def members_of(raw: Mapping[str, Any]) -> dict[str, str]:
    """objectGUID -> CN of every member of a group read with the extended-DN control."""
    values = [v.decode() if isinstance(v, bytes) else v for v in raw.get("member", [])]
    return {g: member_name(v) for v in values if (g := member_guid(v)) is not None}
