"""The words of the access emails, as plain text and escaped HTML.

Text a requester typed (the reason) is shown as text, never as a link: its web addresses are
defanged (`hxxps://evil[.]example`), because mail clients turn a bare address into a link of their
own, and a request form open to anyone must not put a stranger's link beside the SIRO's Approve
button. The only link in an email is the one this service minted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from html import escape

from idlifecycle.access.records import AccessRequest, Grant
from idlifecycle.access.shares import Share


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


_SCHEME = re.compile(r"\b(h)(?:tt|xx)(ps?)(:|&#58;)//", re.IGNORECASE)
_OTHER_SCHEME = re.compile(r"\b(ftp|file|javascript|data|mailto|tel|sms|ms-[a-z-]+):", re.IGNORECASE)
_HOST = re.compile(r"\b((?:[\w-]+\.)+)([a-z]{2,}|xn--[\w-]+)\b", re.IGNORECASE)


def when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y %H:%M UTC")


def defang(text: str) -> str:
    """Free text with every web address made unclickable: `https://x.example/a` -> `hxxps://x[.]example/a`.

    Hosts without a scheme (`www.x.example`, an email address's domain) are defanged too, since mail
    clients link those as well.
    """
    text = _SCHEME.sub(lambda m: f"{m.group(1)}xx{m.group(2)}[:]//", text)
    text = _OTHER_SCHEME.sub(lambda m: f"{m.group(1)}[:]", text)
    return _HOST.sub(lambda m: m.group(1).replace(".", "[.]") + m.group(2), text)


def _html(paragraphs: list[str], rows: list[tuple[str, str]], link: tuple[str, str] | None = None) -> str:
    parts = ['<!DOCTYPE html><html><body style="font-family:sans-serif">']
    parts += [f"<p>{escape(p)}</p>" for p in paragraphs]
    if rows:
        parts.append('<table cellpadding="4">')
        parts += [f"<tr><th align=\"left\">{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows]
        parts.append("</table>")
    if link is not None:
        label, url = link
        parts.append(f'<p><a href="{escape(url, quote=True)}">{escape(label)}</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _text(paragraphs: list[str], rows: list[tuple[str, str]], link: tuple[str, str] | None = None) -> str:
    lines = [*paragraphs, ""]
    lines += [f"{k}: {v}" for k, v in rows]
    if link is not None:
        lines += ["", f"{link[0]}:", link[1]]
    return "\n".join(lines) + "\n"


def _email(subject: str, paragraphs: list[str], rows: list[tuple[str, str]],
           link: tuple[str, str] | None = None) -> Email:
    return Email(subject, _text(paragraphs, rows, link), _html(paragraphs, rows, link))


def request_rows(request: AccessRequest, share: Share, kind: str | None = None) -> list[tuple[str, str]]:
    """The request as the SIRO and the requester see it; `kind` is the person's kind in the MIS feed."""
    rows = [
        ("Request", f"#{request.request_id}"),
        ("Person", f"{request.person_name} ({request.person_id})"),
    ]
    if kind is not None:
        rows.append(("Pupil or staff (from the MIS)", kind))
    return [
        *rows,
        ("Share", f"{share.title} [{share.name}, {share.classification}]"),
        ("Information Asset Owner", share.owner),
        ("Reason", defang(request.reason)),
        ("For", f"{request.days} days from approval"),
        ("Requested by", request.requester),
        ("Requested at", when(request.requested_at)),
    ]


def approval_request(request: AccessRequest, share: Share, siro_name: str, url: str, expires: datetime,
                     kind: str) -> Email:
    return _email(
        f"Access request #{request.request_id}: {request.person_name} to {share.title}",
        [f"Dear {siro_name},",
         f"{request.requester} asks for {request.person_name} to be given access to the "
         f"{share.classification} share {share.title}. Opening the link shows the request and changes "
         f"nothing; you then choose Approve or Deny.",
         f"The link works once and until {when(expires)}. Do not forward it: it acts in your name.",
         "The reason was typed by the requester: web addresses in it are shown as text (hxxps, [.]) and "
         "are not part of this service; the only link is the one below."],
        request_rows(request, share, kind),
        ("Review the request", url),
    )


def request_received(request: AccessRequest, share: Share, siro_name: str) -> Email:
    return _email(
        f"Access request #{request.request_id} sent to {siro_name}",
        [f"Your request for {request.person_name} to have access to {share.title} has been sent to "
         f"{siro_name} (SIRO) for approval. You will get an email when it is decided.",
         "If you did not make this request, tell the SIRO."],
        request_rows(request, share),
    )


def decided(request: AccessRequest, share: Share, decision: str, approver: str, grant: Grant | None,
            notes: list[str]) -> Email:
    rows = [*request_rows(request, share), ("Decided by", approver)]
    if grant is not None:
        rows += [("Access until", when(grant.expires_at)), ("Grant", f"#{grant.grant_id}")]
    paragraphs = [f"Access request #{request.request_id} for {request.person_name} to {share.title} "
                  f"was {decision} by {approver}."]
    paragraphs += notes
    return _email(f"Access request #{request.request_id} {decision}", paragraphs, rows)


def grant_ended(grant: Grant, share: Share, why: str) -> Email:
    return _email(
        f"Access to {share.title} for {grant.person_name} has ended",
        [f"The access of {grant.person_name} to {share.title} (grant #{grant.grant_id}, approved by "
         f"{grant.approver}) has ended: {why}. Ask again if it is still needed."],
        [("Granted", when(grant.granted_at)), ("Was due to end", when(grant.expires_at)),
         ("Reason", defang(grant.reason))],
    )
