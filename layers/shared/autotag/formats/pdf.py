"""Text layer, title, author and creation date of a PDF, with pypdf (pure Python)."""

from __future__ import annotations

import io
import logging
from datetime import datetime

from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError, PyPdfError

from autotag.formats.base import Content, ExtractionBudget, Refused, clean

NO_TEXT_LAYER = "no text layer; OCR not enabled"

# pypdf logs every recoverable defect of a damaged file as a warning; the outcome says enough.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def read_pdf(data: bytes, budget: ExtractionBudget) -> Content:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        _open(reader)
        page_count = len(reader.pages)
    except Refused:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        # pypdf reports damaged structure as its own errors and, deeper down, as plain ones.
        raise Refused(f"corrupt PDF: {_describe(exc)}") from None
    if page_count == 0:
        raise Refused("corrupt PDF: no pages")
    texts: list[str] = []
    for number in range(budget.pages_allowed(page_count)):
        texts.append(budget.take(_page_text(reader, number)))
        if budget.full or budget.time_is_up():
            break
    text = "\n\n".join(t for t in texts if t.strip())
    if not text.strip() and budget.truncated_by:  # stopped early: the rest may have text
        raise Refused(f"no text in the pages read: {'; '.join(budget.truncated_by)}")
    if not text.strip():
        raise Refused(NO_TEXT_LAYER)
    info = _info(reader)
    return Content(
        text=text,
        title=clean(info.get("title")) or "",
        author=clean(info.get("author")),
        created=info.get("created"),  # type: ignore[arg-type]
        pages=page_count,
    )


def _open(reader: PdfReader) -> None:
    if not reader.is_encrypted:
        return
    try:
        # Many PDFs are encrypted only to restrict printing or copying: they open with the
        # empty user password, and their text is as readable as an unencrypted file's.
        opened = reader.decrypt("")
    except DependencyError:
        raise Refused("encrypted PDF: its AES encryption needs the cryptography package to read") from None
    if not opened:
        raise Refused("encrypted PDF: a password is required to open it")


def _page_text(reader: PdfReader, number: int) -> str:
    try:
        return reader.pages[number].extract_text() or ""
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise Refused(f"corrupt PDF: page {number + 1}: {_describe(exc)}") from None


def _info(reader: PdfReader) -> dict[str, str | datetime | None]:
    """Title, author and creation date from the document information dictionary, if readable."""
    try:
        meta = reader.metadata
    except (PdfReadError, ValueError, KeyError, TypeError):
        return {}
    if meta is None:
        return {}
    try:
        created = meta.creation_date
    except (ValueError, TypeError):  # a malformed date string is not worth failing the document
        created = None
    return {"title": meta.title, "author": meta.author, "created": created}


def _describe(exc: BaseException) -> str:
    message = str(exc).strip() or type(exc).__name__
    return message[:200]
