"""Category ids and labels are the drive's filters: they must not churn as the drive changes.

On real text (BBC News articles, read in place from ../shared/corpora and embedded with the
local all-MiniLM-L6-v2 model), through the store and recompute_workspace:
- 5% new documents of existing kinds: at least 95% of the previous documents keep their
  category id, and categories that kept their id keep their label;
- 30 documents of a new kind: a new category appears for them, the others keep their ids;
- every document of a category deleted: the category disappears, the others stay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from autotag.categorize import recompute_workspace
from autotag.chunking import Chunk, chunk_text
from autotag.database import connect, migrate
from autotag.embeddings import Vectors, build_embedder, document_vector
from autotag.settings import LOCAL_MODEL, EmbeddingProvider, Settings
from autotag.store import CategoryRecord, DocumentStatus, EmbeddedContent, ObjectRef, ObjectVersion, Store
from tests.conftest import corpus

WORKSPACE = "news"
EXISTING_KINDS = ("business", "politics", "sport")
NEW_KIND = "entertainment"
PER_KIND = 40  # 120 documents before any change
ADDED_PER_KIND = 2  # 6 new documents: 5% of 120
NEW_KIND_DOCUMENTS = 30
# The opening of each article, one chunk: embedding ~160 articles takes seconds.
TEXT_CHARS = 700


@dataclass(frozen=True)
class Article:
    key: str
    kind: str
    text: str
    vector: Vectors


@pytest.fixture(scope="module")
def articles() -> dict[str, list[Article]]:
    """Articles per kind, embedded once for the module: the first files in name order."""
    bbc = corpus("bbc-news")
    settings = Settings(embedding_provider=EmbeddingProvider.LOCAL)
    embedder = build_embedder(settings)
    wanted = dict.fromkeys(EXISTING_KINDS, PER_KIND + ADDED_PER_KIND) | {NEW_KIND: NEW_KIND_DOCUMENTS}
    picked = [(kind, path) for kind, count in wanted.items() for path in sorted((bbc / kind).glob("*.txt"))[:count]]
    texts = [path.read_text(encoding="utf-8")[:TEXT_CHARS] for _, path in picked]
    chunked = [
        chunk_text(text, embedder.tokenizer, max_tokens=embedder.max_input_tokens, overlap=32, max_chunks=4).chunks
        for text in texts
    ]
    vectors = embedder.embed([chunk.text for chunks in chunked for chunk in chunks])
    result: dict[str, list[Article]] = {kind: [] for kind in wanted}
    start = 0
    for (kind, path), text, chunks in zip(picked, texts, chunked, strict=True):
        vector = document_vector(vectors[start : start + len(chunks)], [c.token_count for c in chunks])
        start += len(chunks)
        result[kind].append(Article(f"{WORKSPACE}/{kind}-{path.name}", kind, text, vector))
    return result


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    conn = connect(database_url)
    migrate(conn, dimensions=384, model=LOCAL_MODEL)
    yield Store(conn)
    conn.close()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("AUTOTAG_EMBEDDING_PROVIDER", raising=False)
    return Settings(embedding_provider=EmbeddingProvider.LOCAL, min_categories=2, max_categories=30)


class Drive:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.writes = 0

    def add(self, articles: list[Article]) -> None:
        for article in articles:
            self.writes += 1
            chunk = Chunk(0, article.text, len(article.text.split()))
            content = EmbeddedContent(
                content_sha256=hashlib.sha256(article.text.encode()).hexdigest(),
                content_type="text/plain",
                title=article.text.splitlines()[0],
                model=LOCAL_MODEL,
                token_count=chunk.token_count,
                chunks=[chunk],
                chunk_vectors=article.vector[None, :],
                vector=article.vector,
            )
            ref, version = self._ref(article.key), self._version()
            with self.store.locked_document(ref):
                self.store.write_embedded(ref, version, content)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            ref, version = self._ref(key), self._version()
            with self.store.locked_document(ref):
                self.store.write_without_vector(ref, version, status=DocumentStatus.DELETED, reason="object deleted")

    def recompute(self) -> dict[str, CategoryRecord]:
        """Categories after a recompute, by id; and each document key's category id in `self.assigned`."""
        version = self.store.pending_workspaces([WORKSPACE]).get(WORKSPACE, 0)
        result = recompute_workspace(self.store, self.settings, WORKSPACE, version)
        assert result.recomputed
        categories = {c.id: c for c in self.store.load_categories(WORKSPACE)}
        rows = self.store.document_rows(WORKSPACE)
        self.store.conn.commit()
        self.assigned = {row.key: row.category_id for row in rows if row.category_id}
        return categories

    def _ref(self, key: str) -> ObjectRef:
        return ObjectRef(WORKSPACE, "drive", key)

    def _version(self) -> ObjectVersion:
        self.writes += 1
        return ObjectVersion(f"etag-{self.writes}", None, f"{self.writes:016X}", 1000)


def initial(articles: dict[str, list[Article]]) -> list[Article]:
    return [a for kind in EXISTING_KINDS for a in articles[kind][:PER_KIND]]


def kept_share(before: dict[str, str], after: dict[str, str]) -> float:
    return sum(after.get(key) == category for key, category in before.items()) / len(before)


def test_five_percent_more_documents_keep_ids_and_labels(
    store: Store, settings: Settings, articles: dict[str, list[Article]]
) -> None:
    drive = Drive(store, settings)
    drive.add(initial(articles))
    before = drive.recompute()
    assigned_before = dict(drive.assigned)
    assert len(assigned_before) == 3 * PER_KIND and len(before) >= 3

    added = [a for kind in EXISTING_KINDS for a in articles[kind][PER_KIND : PER_KIND + ADDED_PER_KIND]]
    assert len(added) == round(0.05 * len(assigned_before))
    drive.add(added)
    after = drive.recompute()

    assert kept_share(assigned_before, drive.assigned) >= 0.95
    assert set(before) == set(after)  # no category lost or gained
    for category_id, category in after.items():
        assert category.label == before[category_id].label


def test_a_new_kind_of_document_gets_a_new_category(
    store: Store, settings: Settings, articles: dict[str, list[Article]]
) -> None:
    drive = Drive(store, settings)
    drive.add(initial(articles))
    before = drive.recompute()
    assigned_before = dict(drive.assigned)

    drive.add(articles[NEW_KIND])
    after = drive.recompute()

    new_ids = set(after) - set(before)
    assert new_ids, "no new category for the new kind of documents"
    assert set(before) <= set(after)  # every existing category keeps its id
    assert kept_share(assigned_before, drive.assigned) >= 0.95
    new_keys = {a.key for a in articles[NEW_KIND]}
    in_new = [key for key, category in drive.assigned.items() if category in new_ids]
    assert sum(key in new_keys for key in in_new) >= 0.8 * len(new_keys)  # most of them, found together
    assert sum(key in new_keys for key in in_new) >= 0.8 * len(in_new)  # and little else


def test_deleting_every_document_of_a_category_removes_it(
    store: Store, settings: Settings, articles: dict[str, list[Article]]
) -> None:
    drive = Drive(store, settings)
    drive.add(initial(articles))
    before = drive.recompute()
    assigned_before = dict(drive.assigned)
    # The category of most sport articles, with every document in it (whatever its kind).
    sport = {a.key for a in articles["sport"][:PER_KIND]}
    gone = max(before, key=lambda cid: sum(assigned_before[k] == cid and k in sport for k in assigned_before))
    members = [key for key, category in assigned_before.items() if category == gone]

    drive.delete(members)
    after = drive.recompute()

    assert gone not in after
    remaining = {key: category for key, category in assigned_before.items() if category != gone}
    assert kept_share(remaining, drive.assigned) >= 0.95
    assert set(drive.assigned) == set(remaining)
    assert np.isin(list(after), list(before)).all()  # no survivor was renamed to a fresh id
