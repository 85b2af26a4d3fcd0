"""Text out of a stored object, or a recorded reason why there is none.

Extraction is keyed by type; an unsupported or unreadable object is an outcome
(`Skipped`), not an exception, so the operator sees why in the documents table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath

TEXT_TYPES = {".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown"}
HTML_TYPES = {".html": "text/html", ".htm": "text/html"}

# Share of control characters above which "text" is really binary data with a text name.
_MAX_CONTROL_RATIO = 0.05


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str
    content_type: str


@dataclass(frozen=True)
class Skipped:
    reason: str
    content_type: str


def content_type_for(key: str) -> str | None:
    suffix = PurePosixPath(key).suffix.lower()
    return TEXT_TYPES.get(suffix) or HTML_TYPES.get(suffix)


def extract(key: str, data: bytes) -> Extracted | Skipped:
    """Extract readable text and a title from `data`, the content of object `key`."""
    content_type = content_type_for(key)
    if content_type is None:
        suffix = PurePosixPath(key).suffix.lower() or "(none)"
        return Skipped(f"unsupported file type {suffix}", "application/octet-stream")
    if not data.strip():
        return Skipped("empty document", content_type)
    decoded = _decode(data)
    if decoded is None:
        return Skipped("binary content in a text file", content_type)
    if content_type == "text/html":
        text, title = _html_text(decoded)
    elif content_type == "text/markdown":
        text, title = _markdown_text(decoded)
    else:
        text, title = decoded, _first_line(decoded)
    text = _normalise_whitespace(text)
    if not text:
        return Skipped("no text content", content_type)
    return Extracted(text=text, title=title or PurePosixPath(key).stem, content_type=content_type)


def _decode(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Legacy office files are mostly Windows-1252; anything still undecodable is not text.
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            return None
    sample = text[:8192]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    if sample and controls / len(sample) > _MAX_CONTROL_RATIO:
        return None
    return text


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKUP = re.compile(r"(^\s{0,3}(#{1,6}|>|[-*+]|\d+\.)\s+)|[*_`~|]+", re.MULTILINE)
_MD_RULE = re.compile(r"^\s*[-=:| ]{3,}\s*$", re.MULTILINE)


def _markdown_text(text: str) -> tuple[str, str]:
    heading = _MD_HEADING.search(text)
    title = heading.group(1).strip() if heading else _first_line(text)
    plain = _MD_LINK.sub(r"\1", text)
    plain = _MD_RULE.sub(" ", plain)
    plain = _MD_MARKUP.sub(" ", plain)
    return plain, _MD_MARKUP.sub("", _MD_LINK.sub(r"\1", title)).strip()


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "td", "th"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP and self._skip_depth:
            self._skip_depth -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip_depth:
            self.parts.append(data)


def _html_text(text: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts), " ".join("".join(parser.title_parts).split())


_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def _normalise_whitespace(text: str) -> str:
    text = _SPACES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()
