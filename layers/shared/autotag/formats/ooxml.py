"""Word, PowerPoint and Excel files (Office Open XML): the XML parts read straight from the zip.

Only the parts that carry text are read, with defusedxml's streaming parser (no entity
expansion, no external references), so a document costs what its text costs, and the
Lambda layer needs no lxml or Pillow (python-docx, python-pptx and openpyxl together
install about 47 MB; these readers need defusedxml, 0.2 MB).

A zip bomb is refused before anything is decompressed, from the sizes the archive itself
declares; reads are then bounded by the same limit in case a declaration lies.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from autotag.formats.base import Content, ExtractionBudget, Refused, clean

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# The part that makes a zip a document of each kind.
MAIN_PARTS = {"word/document.xml": DOCX, "ppt/presentation.xml": PPTX, "xl/workbook.xml": XLSX}

_SLIDE = re.compile(r"^ppt/slides/slide(\d+)\.xml$")
_SHEET = re.compile(r"^xl/worksheets/sheet(\d+)\.xml$")


def ooxml_type(names: list[str]) -> str | None:
    """The OOXML content type a zip with these member names holds, if any."""
    for part, content_type in MAIN_PARTS.items():
        if part in names:
            return content_type
    return None


class Package:
    """A zip opened under the decompressed-size limit."""

    def __init__(self, data: bytes, budget: ExtractionBudget) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
            raise Refused(f"corrupt file: not a readable zip archive ({exc})") from None
        self.limit = budget.limits.max_decompressed_bytes
        declared = sum(info.file_size for info in infos)
        if declared > self.limit:
            raise Refused(
                f"over the decompressed-size limit: the archive declares {declared} bytes uncompressed, "
                f"more than AUTOTAG_MAX_DECOMPRESSED_BYTES={self.limit} (zip bomb?)"
            )
        self.names = [info.filename for info in infos]
        self.read_bytes = 0

    def elements(self, name: str) -> Iterator[Element]:
        """Every element of part `name` as its end tag is parsed, tags without namespace."""
        stream = _Counted(self, self.zip.open(name))
        try:
            for _event, element in iterparse(stream, events=("end",)):
                element.tag = element.tag.rpartition("}")[2]
                yield element
        except (ParseError, DefusedXmlException) as exc:
            raise Refused(f"corrupt file: {name} is not well-formed XML ({exc})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise Refused(f"corrupt file: {name} cannot be decompressed ({exc})") from None
        finally:
            stream.close()

    def core_properties(self) -> tuple[str, str | None, datetime | None]:
        """Title, author and creation date from docProps/core.xml, where present."""
        if "docProps/core.xml" not in self.names:
            return "", None, None
        found: dict[str, str] = {}
        for element in self.elements("docProps/core.xml"):
            if element.tag in ("title", "creator", "created") and element.text:
                found[element.tag] = element.text
        return clean(found.get("title")) or "", clean(found.get("creator")), _w3c_date(found.get("created"))


class _Counted(io.RawIOBase):
    """A member's stream that counts what it yields against the package's decompressed limit."""

    def __init__(self, package: Package, raw: IO[bytes]) -> None:
        self.package = package
        self.raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(65536 if size is None or size < 0 else size)
        self.package.read_bytes += len(data)
        if self.package.read_bytes > self.package.limit:
            raise Refused(
                f"over the decompressed-size limit: more than AUTOTAG_MAX_DECOMPRESSED_BYTES="
                f"{self.package.limit} bytes decompressed"
            )
        return data

    def close(self) -> None:
        self.raw.close()
        super().close()


def _w3c_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _paragraphs(package: Package, part: str, paragraph_tag: str, budget: ExtractionBudget) -> list[str]:
    """The text of every paragraph of `part`, within the character budget."""
    paragraphs: list[str] = []
    pieces: list[str] = []
    for element in package.elements(part):
        tag = element.tag
        if tag == "t" and element.text:
            pieces.append(element.text)
        elif tag == "tab":
            pieces.append("\t")
        elif tag in ("br", "cr"):
            pieces.append("\n")
        elif tag == paragraph_tag:
            text = "".join(pieces).strip()
            pieces.clear()
            element.clear()  # the paragraph is read: keep memory flat on long documents
            if text:
                paragraphs.append(budget.take(text))
            if budget.full or budget.time_is_up():
                break
    return paragraphs


def read_docx(data: bytes, budget: ExtractionBudget) -> Content:
    package = Package(data, budget)
    paragraphs = _paragraphs(package, "word/document.xml", "p", budget)
    title, author, created = package.core_properties()
    return Content("\n\n".join(paragraphs), title or _first(paragraphs), author, created)


def read_pptx(data: bytes, budget: ExtractionBudget) -> Content:
    package = Package(data, budget)
    slides = _numbered(package.names, _SLIDE)
    texts: list[str] = []
    for part in slides[: budget.pages_allowed(len(slides))]:
        texts.append("\n".join(_paragraphs(package, part, "p", budget)))
        if budget.full or budget.time_is_up():
            break
    title, author, created = package.core_properties()
    first_slide = texts[0].splitlines() if texts else []
    return Content("\n\n".join(t for t in texts if t), title or _first(first_slide), author, created, len(slides))


def read_xlsx(data: bytes, budget: ExtractionBudget) -> Content:
    package = Package(data, budget)
    shared = _shared_strings(package) if "xl/sharedStrings.xml" in package.names else []
    names = _sheet_names(package)
    sheets = _numbered(package.names, _SHEET)
    texts: list[str] = []
    for index, part in enumerate(sheets):
        rows = _rows(package, part, shared, budget)
        name = names[index] if index < len(names) else f"Sheet {index + 1}"
        texts.append("\n".join([name, *rows]))
        if budget.full or budget.time_is_up():
            break
    title, author, created = package.core_properties()
    return Content("\n\n".join(texts), title, author, created)


def _numbered(names: list[str], pattern: re.Pattern[str]) -> list[str]:
    """Parts like slide3.xml in their number order (the order they were added to the file)."""
    matches = [(int(m.group(1)), name) for name in names if (m := pattern.match(name))]
    return [name for _, name in sorted(matches)]


def _shared_strings(package: Package) -> list[str]:
    strings: list[str] = []
    pieces: list[str] = []
    for element in package.elements("xl/sharedStrings.xml"):
        if element.tag == "t" and element.text:
            pieces.append(element.text)
        elif element.tag == "rPh":  # phonetic guide text repeats the cell in another script
            pieces.clear()
        elif element.tag == "si":
            strings.append("".join(pieces))
            pieces.clear()
            element.clear()
    return strings


def _sheet_names(package: Package) -> list[str]:
    return [e.get("name", "") for e in package.elements("xl/workbook.xml") if e.tag == "sheet"]


def _rows(package: Package, part: str, shared: list[str], budget: ExtractionBudget) -> list[str]:
    """Each row's non-empty cells, tab-separated, within the character budget."""
    rows: list[str] = []
    cells: list[str] = []
    value = ""
    for element in package.elements(part):
        tag = element.tag
        if tag in ("v", "t"):
            value += element.text or ""
        elif tag == "c":
            if value and element.get("t") == "s":
                value = shared[int(value)] if value.isdigit() and int(value) < len(shared) else ""
            if value.strip():
                cells.append(value.strip())
            value = ""
        elif tag == "row":
            element.clear()
            if cells:
                rows.append(budget.take("\t".join(cells)))
                cells = []
            if budget.full or budget.time_is_up():
                break
    return rows


def _first(lines: list[str]) -> str:
    return next((line.strip()[:200] for line in lines if line.strip()), "")
