"""`autotag run` end to end on the demo drive: moto S3 → EventBridge → SQS, the real handlers
under the template's queue rules, the local all-MiniLM-L6-v2 model, embedded PostgreSQL."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from autotag.cli import main
from autotag.local.run import run
from tests.conftest import ROOT, TEMPLATE

DEMO = ROOT / "demo" / "drive"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[dict[str, Any]]:
    """One run over a copy of the demo drive in a fresh database, shared by this module's tests."""
    base = tmp_path_factory.mktemp("demo")
    docs = base / "docs"
    shutil.copytree(DEMO, docs)
    name = f"demo_{base.name.replace('-', '_')}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(postgres_url, dbname=name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        patch.delenv("AUTOTAG_EMBEDDING_PROVIDER", raising=False)
        err = io.StringIO()
        result = run(docs, "demo", base / "out", template=TEMPLATE, data_dir=base / "state", err=err)
        yield {"result": result, "docs": docs, "base": base, "url": url, "err": err.getvalue()}


def test_assignments_file_has_the_documented_shape(demo_run: dict[str, Any]) -> None:
    written = json.loads((demo_run["base"] / "out" / "assignments.json").read_text(encoding="utf-8"))

    assert written == demo_run["result"]
    assert written["workspace"] == "demo"
    for category in written["categories"]:
        assert set(category) == {"id", "label", "keywords", "size"}
        assert 1 <= len(category["label"].split()) <= 4 and category["keywords"]
    files = {p.relative_to(demo_run["docs"]).as_posix() for p in demo_run["docs"].rglob("*") if p.is_file()}
    assert {d["key"] for d in written["documents"]} == files
    for document in written["documents"]:
        assert {"key", "category_id", "label", "score", "status"} <= set(document)
        assert (document["category_id"] is not None) == (document["status"] == "embedded")


def test_every_document_is_embedded_or_skipped_with_a_reason(demo_run: dict[str, Any]) -> None:
    documents = demo_run["result"]["documents"]
    statuses = Counter(d["status"] for d in documents)

    assert statuses == {"embedded": 53, "skipped": 2}
    assert {d["key"]: d["reason"] for d in documents if d["status"] == "skipped"} == {
        "engineering/architecture-diagram.png": "unsupported file type: PNG image (.png)",
        "engineering/whiteboard-photo-sprint-14-retro.pdf": "no text layer; OCR not enabled",
    }


def test_pdf_and_word_documents_are_categorised_with_their_folders(demo_run: dict[str, Any]) -> None:
    documents = demo_run["result"]["documents"]
    majority: dict[str, Counter[str]] = {}
    for document in documents:
        if document["category_id"]:
            majority.setdefault(document["key"].split("/")[0], Counter())[document["category_id"]] += 1
    office = [d for d in documents if d["key"].endswith((".pdf", ".docx")) and d["status"] == "embedded"]
    assert {d["key"].rsplit(".", 1)[1] for d in office} == {"pdf", "docx"} and len(office) >= 8
    for document in office:
        folder = document["key"].split("/")[0]
        assert document["category_id"] == majority[folder].most_common(1)[0][0], document["key"]


def test_categories_follow_the_kinds_of_documents(demo_run: dict[str, Any]) -> None:
    """Each folder of the demo drive (legal, finance, people, engineering) is mostly one category."""
    result = demo_run["result"]
    assert 4 <= len(result["categories"]) <= 8
    by_folder: dict[str, Counter[str]] = {}
    for document in result["documents"]:
        if document["category_id"]:
            by_folder.setdefault(document["key"].split("/")[0], Counter())[document["category_id"]] += 1
    majority = {folder: counts.most_common(1)[0] for folder, counts in by_folder.items()}
    assert len({category for category, _ in majority.values()}) == 4  # four folders, four categories
    for folder, (_, count) in majority.items():
        assert count / sum(by_folder[folder].values()) >= 0.7, (folder, by_folder[folder])


def test_second_run_changes_nothing(demo_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", demo_run["url"])
    base = demo_run["base"]
    with psycopg.connect(demo_run["url"]) as conn:
        before = conn.execute("SELECT key, embedded_at FROM documents ORDER BY key").fetchall()
        clustered = conn.execute("SELECT clustered_version, clustered_at FROM workspaces").fetchall()
    err = io.StringIO()

    again = run(demo_run["docs"], "demo", base / "out2", template=TEMPLATE, data_dir=base / "state", err=err)

    assert again == demo_run["result"]
    assert "0 documents embedded by this run" in err.getvalue()
    with psycopg.connect(demo_run["url"]) as conn:
        assert conn.execute("SELECT key, embedded_at FROM documents ORDER BY key").fetchall() == before
        assert conn.execute("SELECT clustered_version, clustered_at FROM workspaces").fetchall() == clustered


def test_invoke_runs_one_handler_on_an_event_file(
    demo_run: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", demo_run["url"])
    base = demo_run["base"]
    args = ["--template", str(TEMPLATE), "--data-dir", str(base / "state")]

    assert main([*args, "invoke", "cluster", "--event", str(ROOT / "events" / "cluster-request.json")]) == 0
    out = capsys.readouterr().out
    assert '"batchItemFailures": []' in out

    assert main([*args, "invoke", "embed", "--event", str(ROOT / "events" / "s3-object-deleted.json")]) == 0
    with psycopg.connect(demo_run["url"]) as conn:
        status = conn.execute(
            "SELECT status FROM documents WHERE key = %s", ("demo/engineering/search+indexing-design.md",)
        ).fetchone()
    # The sample event's sequencer predates the run's upload: S3 ordering says ignore it.
    assert status == ("embedded",)


def test_a_removed_file_is_deleted_from_the_categories(
    demo_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", demo_run["url"])
    base = demo_run["base"]
    removed = demo_run["docs"] / "finance" / "receipt-office-supplies-march-2025.txt"
    removed.unlink()

    result = run(demo_run["docs"], "demo", base / "out3", template=TEMPLATE, data_dir=base / "state", err=io.StringIO())

    assert "finance/receipt-office-supplies-march-2025.txt" not in {d["key"] for d in result["documents"]}
    assert sum(c["size"] for c in result["categories"]) == 52
    with psycopg.connect(demo_run["url"]) as conn:
        row = conn.execute(
            "SELECT status, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) FROM documents d WHERE key = %s",
            ("demo/finance/receipt-office-supplies-march-2025.txt",),
        ).fetchone()
    assert row == ("deleted", 0)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="is not a directory"):
        run(tmp_path / "nope", "demo", tmp_path / "out", template=TEMPLATE, data_dir=tmp_path, err=io.StringIO())


def test_report_shows_every_category_in_a_browser(demo_run: dict[str, Any], tmp_path: Path) -> None:
    """report.html, opened in headless Chromium: every category's label, its map and its table."""
    report = demo_run["base"] / "out" / "report.html"
    dom = render_in_chromium(report, tmp_path)

    categories = demo_run["result"]["categories"]
    table = dom.split('id="categories"', 1)[1].split("</table>", 1)[0]
    for category in categories:
        assert html.escape(category["label"]) in table, category["label"]
        assert f'<td class="num">{category["size"]}</td>' in table
    image = re.search(r'src="data:image/png;base64,([^"]+)"', dom)
    assert image is not None
    assert base64.b64decode(image.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
    assert 'id="low-confidence"' in dom


def render_in_chromium(page: Path, scratch: Path) -> str:
    """The DOM of `page` after headless Chromium (Debian's package; `make chromium` installs it) loaded it."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "Chromium is missing: run `make chromium` (apt-get install chromium)"
    completed = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={scratch / 'chromium-profile'}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return completed.stdout
