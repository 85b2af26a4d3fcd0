"""Text and metadata out of a stored object, or a recorded reason why there is none.

One interface for every format: the type is detected from the content (magic bytes, the
members of a zip, an e-mail header block, a JSON parse, HTML markers), the file name's
extension is only a hint between text formats, so a mislabeled file is still read as what
it is. An unsupported, unreadable or over-limit object is an outcome (`Skipped`), not an
exception, so the operator sees why in the documents table.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from autotag.formats.base import Content, ExtractionBudget, ExtractionLimits, Refused
from autotag.formats.mail import looks_like_email, read_email
from autotag.formats.markup import html_text, markdown_text
from autotag.formats.ooxml import DOCX, PPTX, XLSX, ooxml_type, read_docx, read_pptx, read_xlsx
from autotag.formats.pdf import NO_TEXT_LAYER, read_pdf
from autotag.formats.rtf import read_rtf
from autotag.formats.text import decode, decode_noting, first_line, read_csv, read_json

__all__ = ["NO_TEXT_LAYER", "Extracted", "ExtractionLimits", "Skipped", "content_type_for", "detect_type", "extract"]

logger = logging.getLogger(__name__)

PLAIN, MARKDOWN, HTML, CSV, JSON = "text/plain", "text/markdown", "text/html", "text/csv", "application/json"
PDF, RTF, EMAIL = "application/pdf", "application/rtf", "message/rfc822"
UNKNOWN = "application/octet-stream"

# The extension says which text format a text file is in; for binary formats it is ignored.
EXTENSION_HINTS = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".csv": CSV,
    ".tsv": CSV,
    ".json": JSON,
    ".rtf": RTF,
    ".eml": EMAIL,
    ".pdf": PDF,
    ".docx": DOCX,
    ".pptx": PPTX,
    ".xlsx": XLSX,
}

# Formats recognised by their first bytes that autotag does not read.
_UNSUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document (.doc/.xls/.ppt/.msg)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"(\xb5/\xfd", "zstd archive"),
    (b"\x7fELF", "executable"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"RIFF", "RIFF media (WAV/AVI/WebP)"),
)
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL)
_HTML_TAGS = re.compile(rb"<(head|body|title)[\s>]", re.IGNORECASE)


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str
    content_type: str
    author: str | None = None
    created: datetime | None = None
    pages: int | None = None  # PDF pages or presentation slides
    note: str | None = None  # what a limit cut off, for the document's `reason`


@dataclass(frozen=True)
class Skipped:
    reason: str
    content_type: str


def content_type_for(key: str) -> str | None:
    """The type the key's extension suggests (a hint, confirmed or overruled by the content)."""
    return EXTENSION_HINTS.get(PurePosixPath(key).suffix.lower())


def detect_type(key: str, data: bytes) -> str:
    """The content type of `data`, sniffed from the bytes; raises Refused for what autotag cannot read."""
    head = data[:4096]
    if _is_pdf(head):
        return PDF
    if head.startswith(b"PK\x03\x04"):
        return _zip_type(data)
    for magic, kind in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise Refused(f"unsupported file type: {kind} ({_suffix(key)})")
    if head.lstrip().startswith(b"{\\rtf"):
        return RTF
    if looks_like_email(head):
        return EMAIL
    if _HTML_START.match(head):
        return HTML
    hint = content_type_for(key)
    if hint in (PLAIN, MARKDOWN, HTML, CSV, JSON):
        return hint
    # No text extension to go by (none, or one the content contradicts): weaker markers decide.
    if _HTML_TAGS.search(head):
        return HTML
    if head.lstrip()[:1] in (b"{", b"[") and _parses_as_json(data):
        return JSON
    return PLAIN


def _is_pdf(head: bytes) -> bool:
    """A PDF header at the start, or within the first 1,024 bytes after binary junk, as readers allow."""
    at = head.find(b"%PDF-", 0, 1024)
    junk = head[:at]
    return at >= 0 and (not junk.strip() or any(byte < 9 or byte > 127 for byte in junk))


def _parses_as_json(data: bytes) -> bool:
    text = decode(data)
    try:
        return text is not None and json.loads(text) is not None
    except (json.JSONDecodeError, RecursionError):
        return False


def _zip_type(data: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise Refused(f"corrupt file: not a readable zip archive ({exc})") from None
    found = ooxml_type(names)
    if found is None:
        kind = "OpenDocument file" if "mimetype" in names and "content.xml" in names else "ZIP archive"
        raise Refused(f"unsupported file type: {kind}")
    return found


def _suffix(key: str) -> str:
    return PurePosixPath(key).suffix.lower() or "no extension"


def extract(
    key: str, data: bytes, limits: ExtractionLimits | None = None, *, deadline: float | None = None
) -> Extracted | Skipped:
    """Readable text and metadata of `data`, the content of object `key`, within `limits`.

    `deadline` (time.monotonic()) is when the invocation must stop; the document's own time
    budget ends earlier if it comes first.
    """
    budget = ExtractionBudget.start(limits or ExtractionLimits(), deadline=deadline)
    hint = content_type_for(key) or UNKNOWN
    if not data.strip():
        return Skipped("empty document", hint)
    try:
        content_type = detect_type(key, data)
    except Refused as refused:
        return Skipped(refused.reason, hint if refused.reason.startswith("corrupt") else UNKNOWN)
    try:
        content = _READERS[content_type](data, budget)
    except Refused as refused:
        unsupported = refused.reason.startswith("unsupported")
        return Skipped(refused.reason, UNKNOWN if unsupported else content_type)
    except (TimeoutError, MemoryError):
        raise  # the invocation's trouble, not the document's: retried
    except Exception as exc:  # a reader's library choking on a malformed file: the same on every retry
        logger.warning("the %s reader failed on %s", content_type, key, exc_info=True)
        reason = f"corrupt file: the {content_type} reader failed ({type(exc).__name__}: {exc})"
        return Skipped(reason[:500], content_type)
    text = _normalise_whitespace(content.text)
    if len(text) > budget.limits.max_chars:  # the separators readers add between parts count too
        text = text[: budget.limits.max_chars].rstrip()
        budget.note(f"text cut at the {budget.limits.max_chars}-character limit")
    if not text:
        return Skipped("no text content", content_type)
    return Extracted(
        text=text,
        title=content.title or PurePosixPath(key).stem,
        content_type=content_type,
        author=content.author,
        created=content.created,
        pages=content.pages,
        note="; ".join(budget.truncated_by) or None,
    )


def _as_text(data: bytes, budget: ExtractionBudget) -> str:
    text, note = decode_noting(data)
    if text is None:
        raise Refused("unsupported file type: binary content")
    if note:
        budget.note(note)  # on the document's row: its text may show odd characters
    return text


def _read_plain(data: bytes, budget: ExtractionBudget) -> Content:
    text = budget.take(_as_text(data, budget))
    return Content(text, first_line(text))


def _read_markdown(data: bytes, budget: ExtractionBudget) -> Content:
    text, title = markdown_text(budget.take(_as_text(data, budget)))
    return Content(text, title)


def _read_html(data: bytes, budget: ExtractionBudget) -> Content:
    text, title, author = html_text(_as_text(data, budget))
    return Content(budget.take(text), title, author)


_READERS: dict[str, Callable[[bytes, ExtractionBudget], Content]] = {
    PLAIN: _read_plain,
    MARKDOWN: _read_markdown,
    HTML: _read_html,
    CSV: lambda data, budget: read_csv(_as_text(data, budget), budget),
    JSON: lambda data, budget: read_json(_as_text(data, budget), budget),
    RTF: lambda data, budget: read_rtf(_as_text(data, budget), budget),
    EMAIL: read_email,
    PDF: read_pdf,
    DOCX: read_docx,
    PPTX: read_pptx,
    XLSX: read_xlsx,
}


_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def _normalise_whitespace(text: str) -> str:
    text = _SPACES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()
