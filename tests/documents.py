"""Real documents made in memory with each format's own writer library, for extraction tests."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import docx
import openpyxl
import pptx
from fpdf import FPDF
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

CREATED = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def pdf(pages: list[str], *, title: str | None = None, author: str | None = None) -> bytes:
    document = FPDF()
    if title:
        document.set_title(title)
    if author:
        document.set_author(author)
    document.set_creation_date(CREATED)
    document.set_font("helvetica", size=11)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 6, text)
    return bytes(document.output())


def encrypted_pdf(source: bytes, *, user_password: str, owner_password: str = "owner-secret") -> bytes:
    """`source` encrypted with pypdf (AES-256); an empty user password only restricts permissions."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def image_only_pdf(pages: int = 2) -> bytes:
    """A "scanned" PDF: each page is a picture of text, with no text layer."""
    document = FPDF()
    for number in range(pages):
        picture = Image.new("RGB", (400, 200), "white")
        ImageDraw.Draw(picture).text((20, 80), f"Scanned invoice page {number + 1}", fill="black")
        document.add_page()
        document.image(picture, x=10, y=10, w=180)
    return bytes(document.output())


def docx_file(
    paragraphs: list[str], *, title: str = "", author: str = "", table: list[list[str]] | None = None
) -> bytes:
    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = author
    document.core_properties.created = CREATED.replace(tzinfo=None)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_file(slides: list[tuple[str, str]], *, title: str = "", author: str = "") -> bytes:
    deck = pptx.Presentation()
    deck.core_properties.title = title
    deck.core_properties.author = author
    for heading, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = heading
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx_file(sheets: dict[str, list[list[object]]], *, title: str = "") -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    book.properties.title = title
    book.properties.creator = "Finance Team"
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def with_extra_member(package: bytes, name: str, size: int) -> bytes:
    """`package` plus a member of `size` spaces: compresses to almost nothing, declares `size`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        with target.open(name, "w", force_zip64=True) as member:
            block = b" " * (1 << 20)
            for _ in range(size >> 20):
                member.write(block)
            member.write(b" " * (size & ((1 << 20) - 1)))
    return out.getvalue()
