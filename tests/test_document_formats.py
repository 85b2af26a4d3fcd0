"""Extraction of PDF, Office, RTF, e-mail, JSON, CSV and encoded text from real files made by each
format's own writer library, and every refusal: encrypted, scanned, corrupt, unsupported, over a limit."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from autotag.extraction import NO_TEXT_LAYER, Extracted, ExtractionLimits, Skipped, detect_type, extract
from autotag.formats.ooxml import DOCX, PPTX, XLSX
from tests import documents
from tests.documents import CREATED

CONTRACT_PAGES = [
    "Master services agreement between Northwind Analytics and Lumen Retail.",
    "Clause 4: the supplier invoices monthly; payment is due within thirty days.",
    "Clause 9: either party may terminate with ninety days written notice.",
]


def extracted(key: str, data: bytes, limits: ExtractionLimits | None = None) -> Extracted:
    result = extract(key, data, limits)
    assert isinstance(result, Extracted), result
    return result


def skipped(key: str, data: bytes, limits: ExtractionLimits | None = None) -> Skipped:
    result = extract(key, data, limits)
    assert isinstance(result, Skipped), result
    return result


@pytest.fixture(scope="module")
def contract_pdf() -> bytes:
    return documents.pdf(CONTRACT_PAGES, title="Master Services Agreement", author="Legal Team")


# --- PDF ------------------------------------------------------------------------------------------


def test_pdf_text_of_every_page_in_order_with_metadata(contract_pdf: bytes) -> None:
    result = extracted("ws/contract.pdf", contract_pdf)
    assert result.content_type == "application/pdf"
    assert result.text.split("\n\n") == CONTRACT_PAGES
    assert (result.title, result.author, result.created, result.pages) == (
        "Master Services Agreement",
        "Legal Team",
        CREATED,
        3,
    )
    assert result.note is None


def test_pdf_without_title_is_named_by_its_key() -> None:
    assert extracted("ws/scans/q3-board-minutes.pdf", documents.pdf(["Board minutes."])).title == "q3-board-minutes"


def test_pdf_pages_beyond_the_page_limit_are_not_read(contract_pdf: bytes) -> None:
    result = extracted("ws/contract.pdf", contract_pdf, ExtractionLimits(max_pages=2))
    assert result.text.split("\n\n") == CONTRACT_PAGES[:2]
    assert result.pages == 3
    assert result.note == "only the first 2 of 3 pages were read (page limit)"


def test_pdf_encrypted_only_against_editing_is_read(contract_pdf: bytes) -> None:
    result = extracted("ws/contract.pdf", documents.encrypted_pdf(contract_pdf, user_password=""))
    assert result.text.split("\n\n") == CONTRACT_PAGES


def test_pdf_that_needs_a_password_is_skipped(contract_pdf: bytes) -> None:
    result = skipped("ws/contract.pdf", documents.encrypted_pdf(contract_pdf, user_password="s3cret"))
    assert result == Skipped("encrypted PDF: a password is required to open it", "application/pdf")


def test_scanned_pdf_without_text_layer_is_skipped() -> None:
    assert skipped("ws/scan.pdf", documents.image_only_pdf()) == Skipped(NO_TEXT_LAYER, "application/pdf")
    assert NO_TEXT_LAYER == "no text layer; OCR not enabled"


def test_scanned_pages_within_a_limit_do_not_claim_the_whole_pdf_is_scanned() -> None:
    result = skipped("ws/scan.pdf", documents.image_only_pdf(2), ExtractionLimits(max_pages=1))
    assert result.reason == "no text in the pages read: only the first 1 of 2 pages were read (page limit)"


@pytest.mark.parametrize("keep", [0.5, 0.9], ids=["half", "tail-missing"])
def test_truncated_pdf_is_skipped_as_corrupt(contract_pdf: bytes, keep: float) -> None:
    result = skipped("ws/contract.pdf", contract_pdf[: int(len(contract_pdf) * keep)])
    assert result.reason.startswith("corrupt PDF: ")
    assert result.content_type == "application/pdf"


def test_text_that_mentions_the_pdf_header_is_text() -> None:
    result = extracted("ws/notes.txt", b"PDF files start with the bytes %PDF-1.7 and end with %%EOF.")
    assert result.content_type == "text/plain"


def test_pdf_header_after_binary_junk_is_a_pdf(contract_pdf: bytes) -> None:
    assert extracted("ws/contract.bin", b"\x00\x01\x02junk" + contract_pdf).text.split("\n\n") == CONTRACT_PAGES


def test_pdf_header_with_garbage_after_it_is_corrupt() -> None:
    assert skipped("ws/x.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8).reason.startswith("corrupt PDF")


# --- Word, PowerPoint, Excel -----------------------------------------------------------------------


def test_docx_paragraphs_tables_and_core_properties() -> None:
    data = documents.docx_file(
        ["Supplier agreement", "Greyfield Packaging supplies corrugated boxes.", "Prices are fixed for 2026."],
        title="Supplier Agreement Greyfield",
        author="Dana Whitfield",
        table=[["Item", "Unit price"], ["Box A4", "EUR 0.42"]],
    )
    result = extracted("ws/agreement.docx", data)
    assert result.content_type == DOCX
    assert result.text.split("\n\n") == [
        "Supplier agreement",
        "Greyfield Packaging supplies corrugated boxes.",
        "Prices are fixed for 2026.",
        "Item",
        "Unit price",
        "Box A4",
        "EUR 0.42",
    ]
    assert (result.title, result.author, result.created) == ("Supplier Agreement Greyfield", "Dana Whitfield", CREATED)


def test_docx_without_title_property_is_titled_by_its_first_paragraph() -> None:
    result = extracted("ws/memo.docx", documents.docx_file(["", "Office move on 3 March", "Details follow."]))
    assert result.title == "Office move on 3 March"


def test_pptx_slides_in_order_with_title_and_slide_count() -> None:
    data = documents.pptx_file(
        [("Roadmap 2026", "Launch the partner portal\nMigrate billing"), ("Hiring", "Two backend engineers")],
        title="Engineering Roadmap",
        author="CTO Office",
    )
    result = extracted("ws/roadmap.pptx", data)
    assert result.content_type == PPTX
    assert result.text == "Roadmap 2026\nLaunch the partner portal\nMigrate billing\n\nHiring\nTwo backend engineers"
    assert (result.title, result.author, result.pages) == ("Engineering Roadmap", "CTO Office", 2)


def test_pptx_slides_beyond_the_page_limit_are_not_read() -> None:
    data = documents.pptx_file([(f"Slide {n}", f"Point {n}") for n in range(1, 5)])
    result = extracted("ws/deck.pptx", data, ExtractionLimits(max_pages=2))
    assert result.text == "Slide 1\nPoint 1\n\nSlide 2\nPoint 2"
    assert result.title == "Slide 1"
    assert result.note == "only the first 2 of 4 pages were read (page limit)"


def test_xlsx_cells_of_every_sheet_with_names() -> None:
    data = documents.xlsx_file(
        {
            "Q3 Budget": [["Department", "Budget"], ["Marketing", 125000], ["Engineering", 480000.5]],
            "Notes": [["Approved by the finance committee"]],
        },
        title="Budget 2026",
    )
    result = extracted("ws/budget.xlsx", data)
    assert result.content_type == XLSX
    assert result.text == (
        "Q3 Budget\nDepartment Budget\nMarketing 125000\nEngineering 480000.5\n\n"
        "Notes\nApproved by the finance committee"
    )
    assert (result.title, result.author) == ("Budget 2026", "Finance Team")


def test_xlsx_cell_text_is_bounded_by_the_character_limit() -> None:
    data = documents.xlsx_file({"Ledger": [[f"Entry {n}", f"Account {n}"] for n in range(2000)]})
    result = extracted("ws/ledger.xlsx", data, ExtractionLimits(max_chars=200))
    assert len(result.text) <= 200
    assert result.text.startswith("Ledger\nEntry 0 Account 0\nEntry 1 Account 1")
    assert result.note == "text cut at the 200-character limit"


def test_docx_zip_bomb_is_refused_from_its_declared_sizes() -> None:
    # 201 MiB of spaces: about 200 kB compressed, over the default 200 MiB decompressed limit.
    bomb = documents.with_extra_member(documents.docx_file(["Harmless cover"]), "word/media/filler.bin", 201 << 20)
    assert len(bomb) < 1 << 20
    declared = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(bomb)).infolist())
    result = skipped("ws/bomb.docx", bomb)
    assert result.reason.startswith(f"over the decompressed-size limit: the archive declares {declared} bytes")
    assert "AUTOTAG_MAX_DECOMPRESSED_BYTES=209715200" in result.reason
    assert result.content_type == DOCX


def test_decompressed_size_limit_is_a_setting() -> None:
    data = documents.with_extra_member(documents.docx_file(["Cover"]), "word/media/filler.bin", 2 << 20)
    assert isinstance(extract("ws/a.docx", data), Extracted)
    result = skipped("ws/a.docx", data, ExtractionLimits(max_decompressed_bytes=1 << 20))
    assert "AUTOTAG_MAX_DECOMPRESSED_BYTES=1048576" in result.reason


def test_truncated_docx_is_skipped_as_corrupt() -> None:
    data = documents.docx_file(["Some text"])
    result = skipped("ws/broken.docx", data[: len(data) // 2])
    assert result.reason.startswith("corrupt file: not a readable zip archive")


def test_docx_with_malformed_xml_is_skipped_as_corrupt() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", "<w:document><w:body><w:p>unclosed")
    result = skipped("ws/bad.docx", out.getvalue())
    assert result.reason.startswith("corrupt file: word/document.xml is not well-formed XML")


def test_xml_entity_expansion_is_refused() -> None:
    laughs = '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;">]><d><p><t>&b;</t></p></d>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("word/document.xml", laughs)
    assert skipped("ws/laughs.docx", out.getvalue()).reason.startswith("corrupt file: word/document.xml")


# --- RTF, e-mail, JSON, CSV --------------------------------------------------------------------------

RTF = (
    rb"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}"
    rb"{\info{\title Parental leave memo}{\author People Team}{\creatim\yr2024\mo3\dy5\hr10\min30}}"
    rb"\f0 Parental leave is \b 26 weeks\b0  at full pay.\par Caf\'e9 vouchers continue.\par}"
)


def test_rtf_text_and_info_group() -> None:
    result = extracted("ws/memo.rtf", RTF)
    assert result.content_type == "application/rtf"
    assert result.text == "Parental leave is 26 weeks at full pay.\nCafé vouchers continue."
    assert (result.title, result.author, result.created) == (
        "Parental leave memo",
        "People Team",
        datetime(2024, 3, 5, 10, 30),
    )


def test_rtf_with_an_impossible_creation_date_is_still_read() -> None:
    result = extracted("ws/memo.rtf", RTF.replace(rb"\yr2024", rb"\yr99999999999999999999"))
    assert result.text.startswith("Parental leave is 26 weeks")
    assert result.created is None


def test_email_subject_sender_date_and_plain_body() -> None:
    message = (
        b"Received: from mail.example.com\r\nFrom: Ana Ruiz <ana@northwind.example>\r\nTo: ap@lumen.example\r\n"
        b"Subject: Invoice INV-2025-0112 overdue\r\nDate: Tue, 04 Mar 2025 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Please pay the outstanding balance of \xe2\x82\xac4,200 by Friday.\r\n"
    )
    result = extracted("ws/reminder.eml", message)
    assert result.content_type == "message/rfc822"
    assert result.text == "Invoice INV-2025-0112 overdue\n\nPlease pay the outstanding balance of €4,200 by Friday."
    assert (result.title, result.author) == ("Invoice INV-2025-0112 overdue", "Ana Ruiz <ana@northwind.example>")
    assert result.created == datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def test_email_with_only_an_html_body() -> None:
    message = EmailMessage()
    message["From"] = "hr@example.com"
    message["Subject"] = "Holiday policy"
    html = "<html><body><p>Staff get <b>25 days</b> of leave.</p><script>x()</script></body></html>"
    message.set_content(html, "html")
    result = extracted("ws/policy.eml", message.as_bytes())
    assert result.text == "Holiday policy\n\nStaff get 25 days of leave."


def test_json_string_values_with_their_keys() -> None:
    data = json.dumps(
        {"title": "Release notes 4.2", "author": "Platform team", "items": [{"summary": "Faster search"}], "build": 42}
    ).encode()
    result = extracted("ws/release.json", data)
    assert result.content_type == "application/json"
    assert result.text == "title: Release notes 4.2\nauthor: Platform team\nsummary: Faster search"
    assert (result.title, result.author) == ("Release notes 4.2", "Platform team")


def test_invalid_json_named_json_is_corrupt_but_bracketed_text_is_text() -> None:
    assert skipped("ws/broken.json", b'{"title": "unterminated').reason.startswith("corrupt file: invalid JSON")
    result = extracted("ws/notes.txt", b"[draft] agenda for Monday")
    assert (result.content_type, result.text) == ("text/plain", "[draft] agenda for Monday")


def test_csv_rows_with_a_sniffed_delimiter() -> None:
    result = extracted("ws/suppliers.csv", b"Supplier;Country;Terms\nGreyfield;UK;Net 30\nQuillstack;DE;Net 45\n")
    assert result.content_type == "text/csv"
    assert result.text == "Supplier Country Terms\nGreyfield UK Net 30\nQuillstack DE Net 45"
    assert result.title == "suppliers"


# --- text in any common encoding ---------------------------------------------------------------------

FRENCH = "Réunion du comité : la société prévoit 25 000 € d'économies, « objectif » atteint."


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (FRENCH.encode("utf-8"), FRENCH),
        (FRENCH.encode("utf-8-sig"), FRENCH),
        (FRENCH.encode("utf-16"), FRENCH),
        (FRENCH.encode("utf-16-le"), FRENCH),
        (FRENCH.encode("utf-16-be"), FRENCH),
        (FRENCH.replace("€", "EUR").encode("latin-1"), FRENCH.replace("€", "EUR")),
        (FRENCH.encode("cp1252"), FRENCH),
        ("Счёт на оплату услуг по договору поставки".encode("cp1251"), "Счёт на оплату услуг по договору поставки"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-bom", "utf-16-le", "utf-16-be", "latin-1", "cp1252", "cp1251"],
)
def test_text_encodings(data: bytes, text: str) -> None:
    assert extracted("ws/note.txt", data).text == text


# --- detection by content, not by name ------------------------------------------------------------


def test_mislabeled_files_are_read_as_what_they_are(contract_pdf: bytes) -> None:
    docx_data = documents.docx_file(["Quarterly sales review"])
    assert detect_type("ws/report.txt", contract_pdf) == "application/pdf"
    assert extracted("ws/report.txt", contract_pdf).text.split("\n\n") == CONTRACT_PAGES
    assert extracted("ws/review.pdf", docx_data).content_type == DOCX
    assert extracted("ws/review", docx_data).text == "Quarterly sales review"
    assert extracted("ws/page.txt", b"<!DOCTYPE html><title>Menu</title><p>Fish</p>").title == "Menu"
    assert extracted("ws/page.bin", b"<title>Menu</title><p>Fish</p>").content_type == "text/html"
    assert extracted("ws/data", b'{"subject": "Renewal"}').content_type == "application/json"
    assert extracted("ws/data.txt", b'{"subject": "Renewal"}').content_type == "text/plain"
    assert extracted("ws/notes.pdf", b"Plain notes saved with the wrong name").content_type == "text/plain"


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        ("ws/photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(64), "unsupported file type: PNG image (.txt)"),
        ("ws/photo.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "unsupported file type: PNG image (.png)"),
        ("ws/scan", b"\xff\xd8\xff\xe0" + bytes(64), "unsupported file type: JPEG image (no extension)"),
        (
            "ws/old.doc",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64),
            "unsupported file type: legacy Office document (.doc/.xls/.ppt/.msg) (.doc)",
        ),
        ("ws/data.txt", bytes(range(1, 32)) * 50, "unsupported file type: binary content"),
        ("ws/data.txt", b"hello\x00world" * 3, "unsupported file type: binary content"),
    ],
    ids=["png-named-txt", "png", "jpeg", "ole2", "control-chars", "nul-bytes"],
)
def test_unsupported_content_is_skipped_with_its_kind(key: str, data: bytes, reason: str) -> None:
    assert extract(key, data) == Skipped(reason, "application/octet-stream")


def test_zip_that_is_not_an_office_document_is_unsupported() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photos/readme.txt", "holiday pictures")
    assert skipped("ws/photos.zip", out.getvalue()).reason == "unsupported file type: ZIP archive"


# --- limits ------------------------------------------------------------------------------------------


def test_text_beyond_the_character_limit_is_cut_with_a_note() -> None:
    result = extracted("ws/long.txt", ("word " * 1000).encode(), ExtractionLimits(max_chars=100))
    assert len(result.text) <= 100
    assert result.note == "text cut at the 100-character limit"


def test_time_budget_stops_between_pages_and_keeps_what_was_read(contract_pdf: bytes) -> None:
    result = extracted("ws/contract.pdf", contract_pdf, ExtractionLimits(time_budget_seconds=1e-9))
    assert result.text == CONTRACT_PAGES[0]
    assert result.note == "extraction stopped at the 1e-09-second time budget"


def test_the_invocation_deadline_fails_the_document_for_a_retry(contract_pdf: bytes) -> None:
    with pytest.raises(TimeoutError, match="will be retried"):
        extract("ws/contract.pdf", contract_pdf, deadline=time.monotonic() - 1)


# --- real-world files shipped by Debian packages on this machine -------------------------------------

DEBIAN_PDFS = {
    # package: (file, first words of the text, pages)
    "shared-mime-info": ("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf", "Shared MIME-info Database", 17),
    "libtasn1-doc": ("/usr/share/doc/libtasn1-doc/libtasn1.pdf", "Libtasn1", 36),
}


@pytest.mark.parametrize("package", sorted(DEBIAN_PDFS))
def test_real_world_pdf_from_a_debian_package(package: str) -> None:
    path, opening, pages = DEBIAN_PDFS[package]
    if not Path(path).exists():
        pytest.skip(f"the Debian package {package} is not installed (apt-get install {package})")
    result = extracted(Path(path).name, Path(path).read_bytes())
    assert result.text.startswith(opening)
    assert result.pages == pages and len(result.text) > 20000
