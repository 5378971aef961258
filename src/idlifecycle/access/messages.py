"""The words of the access emails, as plain text and escaped HTML."""

from __future__ import annotations

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


def when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y %H:%M UTC")


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


def request_rows(request: AccessRequest, share: Share) -> list[tuple[str, str]]:
    return [
        ("Request", f"#{request.request_id}"),
        ("Person", f"{request.person_name} ({request.person_id})"),
        ("Share", f"{share.title} [{share.name}, {share.classification}]"),
        ("Information Asset Owner", share.owner),
        ("Reason", request.reason),
        ("For", f"{request.days} days from approval"),
        ("Requested by", request.requester),
        ("Requested at", when(request.requested_at)),
    ]


def approval_request(request: AccessRequest, share: Share, siro_name: str, url: str, expires: datetime) -> Email:
    return _email(
        f"Access request #{request.request_id}: {request.person_name} to {share.title}",
        [f"Dear {siro_name},",
         f"{request.requester} asks for {request.person_name} to be given access to the "
         f"{share.classification} share {share.title}. Opening the link shows the request and changes "
         f"nothing; you then choose Approve or Deny.",
         f"The link works once and until {when(expires)}. Do not forward it: it acts in your name."],
        request_rows(request, share),
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
        [("Granted", when(grant.granted_at)), ("Was due to end", when(grant.expires_at)), ("Reason", grant.reason)],
    )
