"""E-mail messages (RFC 822 / .eml): subject, sender, date and the readable body."""

from __future__ import annotations

import re
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from autotag.formats.base import Content, ExtractionBudget, Refused, clean
from autotag.formats.markup import html_text

_HEADER = re.compile(rb"^([A-Za-z][A-Za-z0-9-]*):[ \t]")
# Headers nearly every message has; two of them at the top make a file a message.
_MAIL_HEADERS = frozenset({b"from", b"to", b"subject", b"date", b"received", b"message-id", b"mime-version"})


def looks_like_email(head: bytes) -> bool:
    """True when `head` opens with an RFC 822 header block naming at least two mail headers."""
    names: set[bytes] = set()
    for line in head.replace(b"\r\n", b"\n").split(b"\n")[:40]:
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):  # folded continuation of the previous header
            continue
        match = _HEADER.match(line)
        if match is None:
            return False
        names.add(match.group(1).lower())
    return len(names & _MAIL_HEADERS) >= 2


def read_email(data: bytes, budget: ExtractionBudget) -> Content:
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        subject = clean(message.get("Subject")) or ""
        sender = clean(message.get("From"))
        body = _body(message)
    except (ValueError, LookupError, TypeError, AssertionError) as exc:
        raise Refused(f"corrupt file: unreadable e-mail message ({exc})") from None
    text = "\n\n".join(part for part in (subject, budget.take(body)) if part)
    return Content(text, subject, sender, _date(message))


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return html_text(content)[0]
    return content


def _date(message: EmailMessage) -> datetime | None:
    header = message.get("Date")
    try:
        return header.datetime if header is not None else None
    except (AttributeError, ValueError):
        return None
