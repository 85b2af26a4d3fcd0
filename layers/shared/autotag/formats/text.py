"""Plain text in any common encoding, CSV and JSON."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator

from charset_normalizer import from_bytes

from autotag.formats.base import Content, ExtractionBudget, Refused

# Share of control characters above which "text" is really binary data.
_MAX_CONTROL_RATIO = 0.05
_SAMPLE = 8192
# Byte order marks, longest first: UTF-32's LE mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


LEGACY_ENCODING_NOTE = "not valid UTF-8: read as a legacy 8-bit encoding (Windows-1252 unless another script fits)"


def decode(data: bytes) -> str | None:
    """`data` as text, or None when it is not text in any encoding we recognise."""
    return decode_noting(data)[0]


def decode_noting(data: bytes) -> tuple[str | None, str | None]:
    """`data` as text (None: not text), with a note for the document when it was not clean Unicode."""
    text, note = _decode(data)
    if text is None:
        return None, None
    sample = text[:_SAMPLE]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    if sample and controls / len(sample) > _MAX_CONTROL_RATIO:
        return None, None
    return text, note


def _decode(data: bytes) -> tuple[str | None, str | None]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), None
            except UnicodeDecodeError:
                return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:_SAMPLE]:
        return _utf16_without_bom(data), None
    # UTF-8 with a few broken sequences (a cut multi-byte character, one stray Latin-1 byte):
    # read as a legacy code page, every correct accented character would turn into two wrong ones.
    lenient = data.decode("utf-8", errors="replace")
    broken = lenient.count("\ufffd")
    if sum(1 for ch in lenient if ord(ch) > 0x7F) - broken > broken:
        return lenient, f"not valid UTF-8: {broken} invalid byte sequence(s) replaced"
    return _legacy_single_byte(data), LEGACY_ENCODING_NOTE


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text without a byte order mark: ASCII-range text has a NUL in every other byte."""
    sample = data[: _SAMPLE - _SAMPLE % 2]
    half = max(len(sample) // 2, 1)
    for encoding, zeros in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
        if zeros.count(0) / half > 0.3:
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


def _legacy_single_byte(data: bytes) -> str | None:
    """Windows-1252 (a superset of Latin-1's printable characters) unless the text is in another script.

    Detectors guess between Western code pages poorly on short documents (cp1250 or cp437
    for plain French), while the Western default is what legacy office text mostly is; a
    detector is trusted only when it finds a non-Latin script such as Cyrillic or Greek.
    """
    best = from_bytes(data[: 64 * 1024]).best()
    if best is not None:
        guessed = str(best)
        letters = [ch for ch in guessed if ch.isalpha()]
        if letters and sum(1 for ch in letters if ord(ch) > 0x24F) / len(letters) > 0.5:
            try:
                return data.decode(best.encoding)
            except (UnicodeDecodeError, LookupError):
                return guessed
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return None if best is None else str(best)


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def read_csv(text: str, budget: ExtractionBudget) -> Content:
    """Each row's non-empty cells joined by tabs, within the character budget."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:_SAMPLE], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows: list[str] = []
    try:
        for row in csv.reader(io.StringIO(text), dialect):
            cells = [cell.strip() for cell in row if cell.strip()]
            if cells:
                rows.append(budget.take("\t".join(cells)))
                if budget.full:
                    break
    except csv.Error as exc:
        raise Refused(f"corrupt file: unreadable CSV ({exc})") from None
    return Content("\n".join(rows))  # a header row is no title: the file name is


# Keys whose value names the document, in order of preference.
_TITLE_KEYS = ("title", "name", "subject", "headline")
_AUTHOR_KEYS = ("author", "creator", "owner")


def read_json(text: str, budget: ExtractionBudget) -> Content:
    """Every string value (with its key), in document order, within the character budget."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise Refused(f"corrupt file: invalid JSON ({exc})") from None
    lines: list[str] = []
    for key, string in _strings(value, ""):
        lines.append(budget.take(f"{key}: {string}" if key else string))
        if budget.full:
            break
    title, author = "", None
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        title = next((str(lowered[k]) for k in _TITLE_KEYS if isinstance(lowered.get(k), str)), "")
        author = next((str(lowered[k]) for k in _AUTHOR_KEYS if isinstance(lowered.get(k), str)), None)
    return Content("\n".join(lines), title[:200], author)


def _strings(value: object, key: str) -> Iterator[tuple[str, str]]:
    # Numbers and booleans say little about what a document is about; strings carry its words.
    if isinstance(value, str):
        if value.strip():
            yield key, value.strip()
    elif isinstance(value, dict):
        for child_key, child in value.items():
            yield from _strings(child, str(child_key))
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child, key)
