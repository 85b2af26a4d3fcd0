"""Rich Text Format: the text with striprtf, title/author/creation time from the {\\info} group."""

from __future__ import annotations

import re
from datetime import datetime

from striprtf.striprtf import rtf_to_text as _rtf_to_text

from autotag.formats.base import Content, ExtractionBudget, Refused, clean

_INFO_TEXT = re.compile(r"\{\\(title|author)\s+([^{}]*)\}")
_CREATED = re.compile(r"\{\\creatim\\yr(\d+)\\mo(\d+)\\dy(\d+)(?:\\hr(\d+))?(?:\\min(\d+))?")


def rtf_to_text(rtf: str) -> str:
    text: str = _rtf_to_text(rtf, errors="replace")  # type: ignore[no-untyped-call]
    return text


def read_rtf(text: str, budget: ExtractionBudget) -> Content:
    try:
        plain = rtf_to_text(text)
    except (ValueError, IndexError, LookupError) as exc:
        raise Refused(f"corrupt file: unreadable RTF ({exc})") from None
    info = {name: clean(rtf_to_text(value)) for name, value in _INFO_TEXT.findall(text[:65536])}
    return Content(budget.take(plain), info.get("title") or "", info.get("author"), _created(text))


def _created(text: str) -> datetime | None:
    match = _CREATED.search(text[:65536])
    if match is None:
        return None
    year, month, day, hour, minute = (int(part or 0) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute)  # RTF records local time, without a zone
    except (ValueError, OverflowError):  # a year like 99999999999 overflows the C date
        return None
