"""PDF and Office documents through the EmbedFunction into PostgreSQL: text, metadata, every chunk
in the document vector, and the skip reasons an operator sees on the row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from autotag.store import as_array
from tests import documents
from tests.aws import FakeAWS, fake_aws, invoke, query
from tests.documents import CREATED
from tests.support.openai_server import FakeOpenAIServer
from tests.test_embed_handler import created_event_for, sqs_batch

PDF_KEY = "demo/legal/msa-northwind.pdf"
DOCX_KEY = "demo/finance/budget memo.docx"


@pytest.fixture
def aws(openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with fake_aws(monkeypatch) as aws:
        yield aws


def embed(*keys: str) -> dict[str, Any]:
    return invoke("embed", sqs_batch(*(json.dumps(created_event_for(key, "0055AED6DCD90281E0")) for key in keys)))


def row(key: str) -> dict[str, Any]:
    columns = "status, reason, content_type, title, author, content_created_at, page_count, chunk_count, size_bytes"
    rows = query(f"SELECT {columns} FROM documents WHERE key = %s", key)
    assert len(rows) == 1
    return dict(zip([c.strip() for c in columns.split(",")], rows[0], strict=True))


def test_pdf_and_docx_are_embedded_with_title_and_metadata(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    pdf = documents.pdf(
        ["Master services agreement.", "The supplier invoices monthly.", "Either party may terminate."],
        title="Master Services Agreement",
        author="Legal Team",
    )
    docx = documents.docx_file(["Budget memo", "Travel spend is capped at 5%."], title="Budget Memo", author="CFO")
    aws.put(PDF_KEY, pdf)
    aws.put(DOCX_KEY, docx)

    response = embed(PDF_KEY, DOCX_KEY)

    assert response["batchItemFailures"] == []
    pdf_row, docx_row = row(PDF_KEY), row(DOCX_KEY)
    assert {k: pdf_row[k] for k in ("status", "reason", "content_type", "title", "author", "page_count")} == {
        "status": "embedded",
        "reason": None,
        "content_type": "application/pdf",
        "title": "Master Services Agreement",
        "author": "Legal Team",
        "page_count": 3,
    }
    assert pdf_row["content_created_at"] == CREATED and pdf_row["size_bytes"] == len(pdf)
    assert (docx_row["status"], docx_row["title"], docx_row["author"]) == ("embedded", "Budget Memo", "CFO")
    assert docx_row["content_created_at"] == CREATED
    embedded = openai_env.embedding_requests()[0].body["input"]
    assert "Master services agreement.\n\nThe supplier invoices monthly.\n\nEither party may terminate." in embedded
    assert "Budget memo\n\nTravel spend is capped at 5%." in embedded


def test_every_outcome_is_recorded_with_its_reason(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_MAX_OBJECT_BYTES", "100000")
    monkeypatch.setenv("AUTOTAG_MAX_DECOMPRESSED_BYTES", str(1 << 20))
    pdf = documents.pdf(["Confidential board minutes."])
    bomb = documents.with_extra_member(documents.docx_file(["Cover"]), "word/media/filler.bin", 2 << 20)
    cases = {
        "demo/legal/scan.pdf": (documents.image_only_pdf(1), "no text layer; OCR not enabled"),
        "demo/legal/locked.pdf": (
            documents.encrypted_pdf(pdf, user_password="pw"),
            "encrypted PDF: a password is required to open it",
        ),
        "demo/legal/cut.pdf": (pdf[: len(pdf) // 2], "corrupt PDF: "),
        "demo/legal/bomb.docx": (bomb, "over the decompressed-size limit: the archive declares 2"),
        "demo/legal/photo.txt": (b"\x89PNG\r\n\x1a\n" + bytes(64), "unsupported file type: PNG image (.txt)"),
        "demo/legal/huge.txt": (b"x " * 60000, "over the size limit: object is 120000 bytes, AUTOTAG_MAX_OBJECT_BYTES"),
    }
    for key, (body, _) in cases.items():
        aws.put(key, body)

    monkeypatch.setenv("AUTOTAG_MAX_PAGES", "2")
    aws.put("demo/legal/three-pages.pdf", documents.pdf(["Page one.", "Page two.", "Page three."]))

    response = embed(*cases, "demo/legal/three-pages.pdf")

    assert response["batchItemFailures"] == []
    cut = row("demo/legal/three-pages.pdf")
    assert (cut["status"], cut["reason"], cut["page_count"]) == (
        "embedded",
        "only the first 2 of 3 pages were read (page limit)",
        3,
    )
    for key, (_, reason) in cases.items():
        recorded = row(key)
        assert recorded["status"] == "skipped", key
        assert recorded["reason"].startswith(reason), (key, recorded["reason"])
        assert recorded["chunk_count"] is None


def test_a_long_document_is_embedded_whole_and_its_vector_is_the_mean_of_all_chunks(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small windows make a few thousand words into more chunks than the old cap of 64.
    monkeypatch.setenv("AUTOTAG_CHUNK_TOKENS", "24")
    monkeypatch.setenv("AUTOTAG_CHUNK_OVERLAP_TOKENS", "4")
    words = [f"clause{n % 97} obligation{n % 13}" for n in range(1500)]
    key = "demo/legal/long-contract.txt"
    aws.put(key, " ".join(words).encode())

    assert embed(key)["batchItemFailures"] == []

    recorded = row(key)
    assert recorded["status"] == "embedded" and recorded["reason"] is None
    assert recorded["chunk_count"] > 64
    chunks = query(
        "SELECT c.token_count, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id"
        " WHERE d.key = %s ORDER BY c.ordinal",
        key,
    )
    assert len(chunks) == recorded["chunk_count"]
    weights = np.array([count for count, _ in chunks], dtype=np.float64)
    vectors = np.vstack([as_array(vector) for _, vector in chunks]).astype(np.float64)
    expected = (vectors * weights[:, None]).sum(axis=0)
    expected /= np.linalg.norm(expected)
    stored = as_array(query("SELECT embedding FROM documents WHERE key = %s", key)[0][0])
    assert np.allclose(stored, expected, atol=1e-5)
    assert isinstance(query("SELECT updated_at FROM documents WHERE key = %s", key)[0][0], datetime)
