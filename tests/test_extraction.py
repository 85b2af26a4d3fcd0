"""Tests for autotag.extraction: text and title out of txt, markdown and html, or a Skipped reason
(PDF, Office and the other formats: test_document_formats.py)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from autotag.extraction import Extracted, Skipped, content_type_for, extract

DEMO_DRIVE = Path(__file__).resolve().parent.parent / "demo" / "drive"


def extracted(key: str, data: bytes) -> Extracted:
    result = extract(key, data)
    assert isinstance(result, Extracted), result
    return result


def skipped(key: str, data: bytes) -> Skipped:
    result = extract(key, data)
    assert isinstance(result, Skipped), result
    return result


# --- content types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("ws/notes.txt", "text/plain"),
        ("ws/notes.text", "text/plain"),
        ("ws/README.md", "text/markdown"),
        ("ws/README.markdown", "text/markdown"),
        ("ws/page.html", "text/html"),
        ("ws/page.htm", "text/html"),
        ("ws/PAGE.HTM", "text/html"),
        ("ws/Notes.TXT", "text/plain"),
        ("ws/Read.Me.MD", "text/markdown"),
        ("ws/report.PDF", "application/pdf"),
        ("ws/image.png", None),
        ("ws/Makefile", None),
        ("ws/archive.txt.gz", None),
    ],
    ids=[
        "txt",
        "text",
        "md",
        "markdown",
        "html",
        "htm",
        "upper-htm",
        "upper-txt",
        "upper-md-dotted-stem",
        "pdf-hint",
        "png",
        "no-extension",
        "compressed-text",
    ],
)
def test_content_type_for(key: str, content_type: str | None) -> None:
    assert content_type_for(key) == content_type


# --- plain text ---------------------------------------------------------------------------------


def test_txt_title_is_first_non_empty_line() -> None:
    result = extracted("ws/memo.txt", b"\n\n   \n  Quarterly budget review  \nBody line one.\nBody line two.\n")
    assert result.title == "Quarterly budget review"
    assert result.text == "Quarterly budget review\nBody line one.\nBody line two."
    assert result.content_type == "text/plain"


def test_txt_whitespace_is_normalised() -> None:
    result = extracted("ws/memo.txt", b"a  \t b\r\nc\r\rd\n\n\n\n\ne")
    assert result.text == "a b\nc\n\nd\n\ne"


def test_txt_title_is_capped() -> None:
    result = extracted("ws/long.txt", b"x" * 500 + b"\nmore")
    assert result.title == "x" * 200


def test_txt_utf8_bom_is_stripped() -> None:
    result = extracted("ws/bom.txt", b"\xef\xbb\xbfHello BOM\nsecond line")
    assert result.title == "Hello BOM"
    assert result.text == "Hello BOM\nsecond line"
    assert "\ufeff" not in result.text


def test_txt_utf8_unicode_is_kept() -> None:
    result = extracted("ws/unicode.txt", "Café naïve — société, файл".encode())
    assert result.text == "Café naïve — société, файл"


def test_txt_cp1252_bytes_are_decoded() -> None:
    result = extracted("ws/legacy.txt", b"caf\xe9 \x80 price \x93quoted\x94")
    assert result.text == "café € price \u201cquoted\u201d"


# --- markdown -------------------------------------------------------------------------------------

MARKDOWN = b"""Draft, do not circulate

# The **Remote** Work _Policy_

Read the [full handbook](https://example.com/handbook) and ![an org chart](chart.png).

> Quoted guidance

- first item
* second item
1. numbered item

---

| Column | Other |
|--------|-------|
| cell   | `code` |
"""


def test_markdown_title_is_first_heading_without_markup() -> None:
    assert extracted("ws/policy.md", MARKDOWN).title == "The Remote Work Policy"


def test_markdown_text_strips_markup_and_keeps_link_text() -> None:
    result = extracted("ws/policy.md", MARKDOWN)
    assert result.content_type == "text/markdown"
    for kept in ["full handbook", "an org chart", "Quoted guidance", "first item", "second item", "numbered item"]:
        assert kept in result.text
    for gone in ["https://example.com", "chart.png", "](", "**", "`", "#", "|", "---", "> ", "- first", "* second"]:
        assert gone not in result.text
    assert "The Remote Work Policy" in result.text
    assert "Column Other" in result.text


@pytest.mark.parametrize(
    ("heading", "title"),
    [
        ("# Plain", "Plain"),
        ("### Level three ###", "Level three"),
        ("## `code` and *emphasis*", "code and emphasis"),
        ("   # Indented up to three", "Indented up to three"),
    ],
    ids=["h1", "closed-atx", "inline-markup", "indented"],
)
def test_markdown_heading_variants(heading: str, title: str) -> None:
    assert extracted("ws/x.md", f"intro\n\n{heading}\n\nbody\n".encode()).title == title


def test_markdown_without_heading_uses_first_line() -> None:
    assert extracted("ws/x.md", b"\n  no heading here\nsecond").title == "no heading here"


def test_markdown_title_keeps_only_link_text() -> None:
    assert extracted("ws/x.md", b"# See [the guide](https://example.com/g)\n\nbody").title == "See the guide"


# --- html ---------------------------------------------------------------------------------------

HTML = b"""<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>  Caf&eacute;
     &amp; Bar Menu </title>
  <style>.secretStyleRule { color: red; }</style>
  <script>var secretScriptVar = document.querySelector("x");</script>
</head>
<body>
  <noscript>secretNoscriptText</noscript>
  <h1>Menu</h1>
  <p>Fish &amp; chips &mdash; &pound;9&nbsp;only &lt;today&gt;</p>
  <div>Block one</div><div>Block two</div>
  <p>line<br>break</p>
  <ul><li>tea</li><li>coffee</li></ul>
  <table><tr><td>cell a</td><td>cell b</td></tr></table>
  <script type="text/javascript">
    function secretHandler() { return 1 < 2 && "</p>"; }
  </script>
  <span>inline</span> <em>words</em> stay together
</body>
</html>
"""


def test_html_title_from_title_tag() -> None:
    result = extracted("ws/menu.html", HTML)
    assert result.title == "Café & Bar Menu"
    assert result.content_type == "text/html"


def test_html_script_style_noscript_are_dropped() -> None:
    text = extracted("ws/menu.html", HTML).text
    for secret in ["secretStyleRule", "secretScriptVar", "querySelector", "secretNoscriptText", "secretHandler"]:
        assert secret not in text
    assert "Café" not in text  # the title is not repeated in the body text


def test_html_entities_are_decoded() -> None:
    text = extracted("ws/menu.html", HTML).text
    assert "Fish & chips \u2014 £9\u00a0only <today>" in text
    assert "&amp;" not in text


def test_html_block_tags_become_line_breaks() -> None:
    lines = extracted("ws/menu.html", HTML).text.split("\n")
    for line in ["Menu", "Block one", "Block two", "line", "break", "tea", "coffee", "cell a", "cell b"]:
        assert line in lines
    assert "inline words stay together" in lines


@pytest.mark.parametrize("key", ["ws/PAGE.HTM", "ws/page.Html", "ws/page.htm"], ids=["upper-htm", "mixed-html", "htm"])
def test_html_extension_variants(key: str) -> None:
    result = extracted(key, b"<title>T</title><p>Hello <b>world</b></p>")
    assert (result.text, result.title, result.content_type) == ("Hello world", "T", "text/html")


def test_html_without_title_falls_back_to_key_stem() -> None:
    assert extracted("ws/deep/page-name.html", b"<p>Body only</p>").title == "page-name"


def test_html_with_implicitly_closed_head_keeps_body() -> None:
    data = b"<!doctype html><html><head><meta charset=utf-8><title>Doc</title>\n<body><p>Visible body</p></body></html>"
    assert extracted("ws/page.html", data).text == "Visible body"


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("finance/invoice-inv-2024-0588-brand-refresh.html", "Invoice INV-2024-0588 - Kestrel & Finch Creative"),
        ("people/anti-harassment-policy.html", "Anti-Harassment and Bullying Policy"),
    ],
    ids=["invoice", "anti-harassment-policy"],
)
def test_demo_html_with_script_leaks_no_javascript(name: str, title: str) -> None:
    data = (DEMO_DRIVE / name).read_bytes()
    assert b"<script" in data  # the point of picking this file
    result = extracted(name, data)
    assert result.title == title
    for js in ["addEventListener", "querySelectorAll", "setAttribute", "function", "var ", "window.", "document."]:
        assert js not in result.text
    assert not re.search(r"[{};]\s*$", result.text, re.MULTILINE)
    assert len(result.text) > 500


def test_demo_invoice_body_text() -> None:
    text = extracted(
        "invoice.html", (DEMO_DRIVE / "finance/invoice-inv-2024-0588-brand-refresh.html").read_bytes()
    ).text
    assert "Kestrel & Finch Creative" in text
    assert "Total payable: £7,260.00" in text
    assert "VAT registration: GB 000 3322 11 \u00b7 kestrelfinch.example" in text


# --- skipped ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        ("ws/photo.png", b"\x89PNG\r\n\x1a\n" + bytes(32), "unsupported file type: PNG image (.png)"),
        ("ws/PHOTO.PNG", b"\x89PNG\r\n\x1a\n" + bytes(32), "unsupported file type: PNG image (.png)"),
        ("ws/Makefile", b"GIF89a" + bytes(32), "unsupported file type: GIF image (no extension)"),
        ("ws/notes.txt.gz", b"\x1f\x8b\x08" + bytes(32), "unsupported file type: gzip archive (.gz)"),
    ],
    ids=["png", "upper-png", "no-extension", "compressed-text"],
)
def test_unsupported_types_are_skipped_naming_the_kind_and_suffix(key: str, data: bytes, reason: str) -> None:
    assert extract(key, data) == Skipped(reason, "application/octet-stream")


def test_text_with_an_unknown_extension_is_read_as_text() -> None:
    result = extracted("ws/Makefile", b"build:\n\tcc -o app main.c\n")
    assert (result.content_type, result.title) == ("text/plain", "build:")


@pytest.mark.parametrize(
    ("key", "data", "content_type"),
    [
        ("ws/empty.txt", b"", "text/plain"),
        ("ws/blank.txt", b" \t\r\n\n  ", "text/plain"),
        ("ws/blank.md", b"\n\n", "text/markdown"),
        ("ws/blank.html", b"   ", "text/html"),
    ],
    ids=["empty", "whitespace-txt", "newlines-md", "spaces-html"],
)
def test_empty_documents_are_skipped(key: str, data: bytes, content_type: str) -> None:
    assert extract(key, data) == Skipped("empty document", content_type)


def test_html_with_only_markup_has_no_text() -> None:
    result = skipped("ws/shell.html", b"<html><body><script>app()</script><div></div></body></html>")
    assert result.reason == "no text content"


@pytest.mark.parametrize(
    "data",
    [
        b"hello\x00world",
        b"\x00" * 16,
        random.Random(1234).randbytes(4096),
        bytes(range(1, 32)) * 50,
    ],
    ids=["nul-byte", "all-nul", "random-bytes", "control-chars"],
)
def test_binary_content_with_text_name_is_skipped(data: bytes) -> None:
    assert skipped("ws/data.txt", data) == Skipped("unsupported file type: binary content", "application/octet-stream")


def test_a_few_control_characters_are_tolerated() -> None:
    data = b"form\x0cfeed and a bell\x07 in a long enough line of ordinary text to stay below the ratio"
    assert "ordinary text" in extracted("ws/ok.txt", data).text
