"""HTML and Markdown: their text without markup, and their title."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from autotag.formats.text import first_line

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKUP = re.compile(r"(^\s{0,3}(#{1,6}|>|[-*+]|\d+\.)\s+)|[*_`~|]+", re.MULTILINE)
_MD_RULE = re.compile(r"^\s*[-=:| ]{3,}\s*$", re.MULTILINE)


def markdown_text(text: str) -> tuple[str, str]:
    heading = _MD_HEADING.search(text)
    title = heading.group(1).strip() if heading else first_line(text)
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
        self.author: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            named = dict(attrs)
            if (named.get("name") or "").lower() == "author" and named.get("content"):
                self.author = named["content"]
        elif tag == "title":
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


def html_text(text: str) -> tuple[str, str, str | None]:
    """Body text, title and the author named in a `<meta name="author">`."""
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts), " ".join("".join(parser.title_parts).split()), parser.author
