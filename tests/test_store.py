"""Tests for the schema migrations (autotag.database) and the Store against a real PostgreSQL + pgvector."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pytest

from autotag.chunking import Chunk
from autotag.database import SchemaMismatchError, connect, migrate, migration_files
from autotag.embeddings import normalise
from autotag.store import (
    Assignment,
    CategoryRecord,
    DocumentStatus,
    EmbeddedContent,
    ObjectRef,
    ObjectVersion,
    Store,
)

DIMENSIONS = 8
MODEL = "test-model"
BUCKET = "drive"

Connection = psycopg.Connection[Any]


# --- helpers ---------------------------------------------------------------------------


def query(conn: Connection, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Run a read and end the implicit transaction, so later `conn.transaction()` blocks really commit."""
    rows = conn.execute(statement, params).fetchall()
    conn.commit()
    return rows


def versions(conn: Connection, workspace: str) -> tuple[int, int]:
    rows = query(conn, "SELECT change_version, clustered_version FROM workspaces WHERE workspace = %s", (workspace,))
    assert len(rows) == 1
    return int(rows[0][0]), int(rows[0][1])


def document(conn: Connection, ref: ObjectRef) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT id, etag, version_id, sequencer, status, reason, model, title, content_sha256, token_count,"
            " chunk_count, embedding, embedded_at FROM documents WHERE workspace = %s AND bucket = %s AND key = %s",
            (ref.workspace, ref.bucket, ref.key),
        )
        row = cur.fetchone()
    conn.commit()
    assert row is not None, f"no document row for {ref}"
    return row


def count(conn: Connection, table: str, document_id: int) -> int:
    assert table in {"chunks", "document_categories"}
    rows = query(conn, f"SELECT count(*) FROM {table} WHERE document_id = %s", (document_id,))
    return int(rows[0][0])


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    return normalise(rng.standard_normal((n, DIMENSIONS)))


def content_for(rng: np.random.Generator, texts: Sequence[str], *, title: str = "A title") -> EmbeddedContent:
    chunks = [Chunk(ordinal=i, text=text, token_count=len(text.split())) for i, text in enumerate(texts)]
    chunk_vectors = unit_vectors(rng, len(chunks))
    vector = normalise(chunk_vectors.mean(axis=0, keepdims=True))[0]
    return EmbeddedContent(
        content_sha256="0" * 64,
        content_type="text/plain",
        title=title,
        model=MODEL,
        token_count=sum(chunk.token_count for chunk in chunks),
        chunks=chunks,
        chunk_vectors=chunk_vectors,
        vector=vector,
    )


def version_of(n: int) -> ObjectVersion:
    return ObjectVersion(etag=f"etag-{n}", version_id=f"v{n}", sequencer=f"{n:016X}", size_bytes=100 + n)


def embed(store: Store, ref: ObjectRef, content: EmbeddedContent, n: int = 1) -> int:
    with store.locked_document(ref):
        store.write_embedded(ref, version_of(n), content)
    stored = store.get_document(ref)
    assert stored is not None
    return stored.id


def category(cat_id: str, label: str, document_ids: Sequence[int], rng: np.random.Generator) -> CategoryRecord:
    return CategoryRecord(
        id=cat_id,
        label=label,
        keywords=[label.lower(), "other"],
        centroid=unit_vectors(rng, 1)[0],
        size=len(document_ids),
        document_ids=list(document_ids),
    )


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    connection = connect(database_url)
    yield connection
    connection.close()


@pytest.fixture
def store(conn: Connection) -> Store:
    migrate(conn, dimensions=DIMENSIONS, model=MODEL)
    return Store(conn)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- migrations ------------------------------------------------------------------------


def test_migrate_applies_initial_migration_once(conn: Connection) -> None:
    shipped = [version for version, _ in migration_files()]
    assert shipped[0] == "0001_initial"

    assert migrate(conn, dimensions=DIMENSIONS, model=MODEL) == shipped
    assert migrate(conn, dimensions=DIMENSIONS, model=MODEL) == []

    assert query(conn, "SELECT version FROM schema_migrations ORDER BY version") == [(v,) for v in shipped]
    assert query(conn, "SELECT embedding_dimensions, embedding_model FROM deployment") == [(DIMENSIONS, MODEL)]


@pytest.mark.parametrize("table", ["documents", "chunks"], ids=["documents-embedding", "chunks-embedding"])
def test_migrate_creates_hnsw_cosine_index(conn: Connection, table: str) -> None:
    migrate(conn, dimensions=DIMENSIONS, model=MODEL)
    definitions = [
        row[0]
        for row in query(
            conn, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s", (table,)
        )
    ]
    hnsw = [d for d in definitions if "USING hnsw" in d and "vector_cosine_ops" in d and "(embedding " in d]
    assert len(hnsw) == 1, definitions


def test_migrate_creates_vector_columns_of_configured_dimension(conn: Connection) -> None:
    migrate(conn, dimensions=DIMENSIONS, model=MODEL)
    rows = query(
        conn,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE c.relname IN ('documents', 'chunks', 'categories') AND a.attname IN ('embedding', 'centroid')"
        " ORDER BY c.relname",
    )
    assert rows == [
        ("categories", "centroid", f"vector({DIMENSIONS})"),
        ("chunks", "embedding", f"vector({DIMENSIONS})"),
        ("documents", "embedding", f"vector({DIMENSIONS})"),
    ]


def test_migrate_with_other_dimensions_raises_schema_mismatch(conn: Connection) -> None:
    migrate(conn, dimensions=DIMENSIONS, model=MODEL)
    with pytest.raises(SchemaMismatchError) as info:
        migrate(conn, dimensions=384, model="all-MiniLM-L6-v2")
    message = str(info.value)
    assert f"{DIMENSIONS}-dimensional" in message
    assert "384" in message
    assert MODEL in message
    # The original deployment record is untouched.
    assert query(conn, "SELECT embedding_dimensions, embedding_model FROM deployment") == [(DIMENSIONS, MODEL)]


def test_concurrent_migrations_apply_once(database_url: str) -> None:
    connections = [connect(database_url), connect(database_url)]
    barrier = threading.Barrier(len(connections))
    applied: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(connection: Connection) -> None:
        try:
            barrier.wait(timeout=30)
            result = migrate(connection, dimensions=DIMENSIONS, model=MODEL)
            with lock:
                applied.append(result)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in connections]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        shipped = [version for version, _ in migration_files()]
        assert sorted(applied) == [[], shipped]
        check = connections[0]
        assert query(check, "SELECT version, count(*) FROM schema_migrations GROUP BY version") == [
            (v, 1) for v in shipped
        ]
        assert query(check, "SELECT count(*) FROM deployment") == [(1,)]
    finally:
        for connection in connections:
            connection.close()


def test_concurrent_connect_and_migrate_on_fresh_database(database_url: str) -> None:
    """The real cold-start sequence (connect, then migrate) from two processes at once."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            connection = connect(database_url)
            try:
                applied.append(migrate(connection, dimensions=DIMENSIONS, model=MODEL))
            finally:
                connection.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert sorted(applied) == [[], [version for version, _ in migration_files()]]


# --- documents -------------------------------------------------------------------------


def test_write_embedded_stores_document_chunks_and_bumps_workspace(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "docs/a.txt")
    content = content_for(rng, ["first chunk text", "second chunk text", "third"], title="Doc A")
    with store.locked_document(ref) as current:
        assert current is None
        store.write_embedded(ref, version_of(1), content)

    row = document(store.conn, ref)
    assert row["status"] == DocumentStatus.EMBEDDED
    assert row["reason"] is None
    assert row["etag"] == "etag-1"
    assert row["sequencer"] == version_of(1).sequencer
    assert row["model"] == MODEL
    assert row["title"] == "Doc A"
    assert row["chunk_count"] == 3
    assert row["token_count"] == content.token_count
    assert row["embedded_at"] is not None
    np.testing.assert_allclose(row["embedding"].to_numpy(), content.vector, rtol=1e-6)

    chunks = query(
        store.conn,
        "SELECT ordinal, text, token_count, embedding, workspace FROM chunks WHERE document_id = %s ORDER BY ordinal",
        (row["id"],),
    )
    assert [(c[0], c[1], c[2], c[4]) for c in chunks] == [
        (0, "first chunk text", 3, "ws"),
        (1, "second chunk text", 3, "ws"),
        (2, "third", 1, "ws"),
    ]
    np.testing.assert_allclose(np.vstack([c[3].to_numpy() for c in chunks]), content.chunk_vectors, rtol=1e-6)

    assert versions(store.conn, "ws") == (1, 0)
    assert store.pending_workspaces(["ws", "other"]) == {"ws": 1}

    stored = store.get_document(ref)
    assert stored is not None
    assert (stored.id, stored.status, stored.etag, stored.model) == (row["id"], "embedded", "etag-1", MODEL)


def test_write_embedded_again_replaces_chunks(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "a.txt")
    first = embed(store, ref, content_for(rng, ["one", "two", "three"]), 1)
    second = embed(store, ref, content_for(rng, ["only chunk"]), 2)
    assert first == second
    assert query(store.conn, "SELECT ordinal, text FROM chunks WHERE document_id = %s", (first,)) == [(0, "only chunk")]
    assert document(store.conn, ref)["chunk_count"] == 1
    assert versions(store.conn, "ws") == (2, 0)


def test_write_unchanged_updates_identity_without_bump(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "a.txt")
    embed(store, ref, content_for(rng, ["text"]), 1)
    before = document(store.conn, ref)
    with store.locked_document(ref) as current:
        assert current is not None
        assert current.etag == "etag-1"
        store.write_unchanged(ref, version_of(2))

    after = document(store.conn, ref)
    assert (after["etag"], after["version_id"], after["sequencer"]) == ("etag-2", "v2", version_of(2).sequencer)
    assert after["status"] == DocumentStatus.EMBEDDED
    assert after["embedded_at"] == before["embedded_at"]
    assert versions(store.conn, "ws") == (1, 0)


def test_delete_of_embedded_document_clears_vectors_and_bumps(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "a.txt")
    doc_id = embed(store, ref, content_for(rng, ["one", "two"]), 1)
    with store.clustering_lock("ws") as (change, _):
        store.save_clustering(
            "ws", change, [category("cat_a", "Alpha", [doc_id], rng)], [Assignment(doc_id, "cat_a", 0.9)]
        )
    assert count(store.conn, "document_categories", doc_id) == 1
    assert versions(store.conn, "ws") == (1, 1)

    with store.locked_document(ref):
        store.write_without_vector(ref, version_of(2), status=DocumentStatus.DELETED, reason="object deleted")

    row = document(store.conn, ref)
    assert row["id"] == doc_id
    assert (row["status"], row["reason"]) == ("deleted", "object deleted")
    assert row["embedding"] is None
    assert row["model"] is None
    assert row["chunk_count"] is None
    assert row["sequencer"] == version_of(2).sequencer
    assert count(store.conn, "chunks", doc_id) == 0
    assert count(store.conn, "document_categories", doc_id) == 0
    assert versions(store.conn, "ws") == (2, 1)
    assert store.pending_workspaces(["ws"]) == {"ws": 2}
    assert store.document_rows("ws") == []


@pytest.mark.parametrize(
    "previous",
    [None, DocumentStatus.SKIPPED, DocumentStatus.FAILED],
    ids=["never-seen", "was-skipped", "was-failed"],
)
def test_write_without_vector_of_unembedded_document_does_not_bump(
    store: Store, rng: np.random.Generator, previous: str | None
) -> None:
    # Something embedded elsewhere in the workspace, so a bump would be visible.
    embed(store, ObjectRef("ws", BUCKET, "other.txt"), content_for(rng, ["x"]), 1)
    ref = ObjectRef("ws", BUCKET, "a.bin")
    if previous == DocumentStatus.SKIPPED:
        with store.locked_document(ref):
            store.write_without_vector(ref, version_of(1), status=DocumentStatus.SKIPPED, reason="binary")
    elif previous == DocumentStatus.FAILED:
        store.write_failure(ref, version_of(1), "boom")
    assert versions(store.conn, "ws") == (1, 0)

    with store.locked_document(ref):
        store.write_without_vector(ref, version_of(2), status=DocumentStatus.DELETED, reason="object deleted")

    row = document(store.conn, ref)
    assert (row["status"], row["reason"]) == ("deleted", "object deleted")
    assert versions(store.conn, "ws") == (1, 0)


def test_skipped_document_keeps_row_with_reason(store: Store) -> None:
    ref = ObjectRef("ws", BUCKET, "image.png")
    with store.locked_document(ref):
        store.write_without_vector(
            ref, version_of(1), status=DocumentStatus.SKIPPED, reason="unsupported type", content_type="image/png"
        )
    row = document(store.conn, ref)
    assert (row["status"], row["reason"], row["embedding"]) == ("skipped", "unsupported type", None)
    assert versions(store.conn, "ws") == (0, 0)
    assert store.pending_workspaces(["ws"]) == {}
    [report] = store.document_rows("ws")
    assert (report.key, report.status, report.reason, report.category_id) == (
        "image.png",
        "skipped",
        "unsupported type",
        None,
    )


def test_write_failure_on_new_document_marks_failed(store: Store) -> None:
    ref = ObjectRef("ws", BUCKET, "broken.pdf")
    store.write_failure(ref, version_of(1), "extraction failed: bad xref")
    row = document(store.conn, ref)
    assert (row["status"], row["reason"]) == ("failed", "extraction failed: bad xref")
    assert row["embedding"] is None
    assert row["sequencer"] is None
    assert versions(store.conn, "ws") == (0, 0)


def test_write_failure_on_embedded_document_keeps_it_embedded(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "a.txt")
    content = content_for(rng, ["one", "two"])
    doc_id = embed(store, ref, content, 1)
    store.write_failure(ref, version_of(2), "embedding provider timed out")

    row = document(store.conn, ref)
    assert (row["status"], row["reason"]) == ("embedded", "embedding provider timed out")
    assert row["sequencer"] == version_of(1).sequencer  # a retry of the failed event is not "older"
    np.testing.assert_allclose(row["embedding"].to_numpy(), content.vector, rtol=1e-6)
    assert count(store.conn, "chunks", doc_id) == 2
    assert versions(store.conn, "ws") == (1, 0)

    # A later success clears the reason.
    embed(store, ref, content_for(rng, ["three"]), 3)
    assert document(store.conn, ref)["reason"] is None


def test_locked_document_rolls_back_on_error(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "a.txt")

    def write_then_fail() -> None:
        with store.locked_document(ref):
            store.write_embedded(ref, version_of(1), content_for(rng, ["text"]))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert store.get_document(ref) is None
    assert query(store.conn, "SELECT count(*) FROM chunks") == [(0,)]


# --- workspaces ------------------------------------------------------------------------


def test_same_key_in_two_workspaces_is_two_documents(store: Store, rng: np.random.Generator) -> None:
    ref_a = ObjectRef("alpha", BUCKET, "shared/report.txt")
    ref_b = ObjectRef("beta", BUCKET, "shared/report.txt")
    content_a = content_for(rng, ["alpha text"], title="Alpha")
    content_b = content_for(rng, ["beta text one", "beta text two"], title="Beta")
    id_a = embed(store, ref_a, content_a)
    id_b = embed(store, ref_b, content_b)
    assert id_a != id_b
    assert versions(store.conn, "alpha") == (1, 0)
    assert versions(store.conn, "beta") == (1, 0)

    ids, keys, matrix = store.load_embedded_vectors("alpha", MODEL)
    store.conn.commit()
    assert (ids, keys) == ([id_a], ["shared/report.txt"])
    np.testing.assert_allclose(matrix, content_a.vector[None, :], rtol=1e-6)

    # A document id of the other workspace is not readable through this one.
    assert store.load_texts("alpha", [id_a, id_b], max_chars=1000) == {id_a: "Alpha\nalpha text"}
    store.conn.commit()

    # An assignment naming the other workspace's document is ignored.
    with store.clustering_lock("alpha") as (change, _):
        store.save_clustering(
            "alpha",
            change,
            [category("cat_same", "Alpha Things", [id_a], rng)],
            [Assignment(id_a, "cat_same", 0.7), Assignment(id_b, "cat_same", 0.6)],
        )
    with store.clustering_lock("beta") as (change, _):
        store.save_clustering(
            "beta", change, [category("cat_same", "Beta Things", [id_b], rng)], [Assignment(id_b, "cat_same", 0.5)]
        )

    [cat_a] = store.load_categories("alpha")
    [cat_b] = store.load_categories("beta")
    store.conn.commit()
    assert (cat_a.id, cat_a.label, cat_a.document_ids) == ("cat_same", "Alpha Things", [id_a])
    assert (cat_b.id, cat_b.label, cat_b.document_ids) == ("cat_same", "Beta Things", [id_b])

    [row_a] = store.document_rows("alpha")
    [row_b] = store.document_rows("beta")
    assert (row_a.id, row_a.title, row_a.label) == (id_a, "Alpha", "Alpha Things")
    assert row_a.score == pytest.approx(0.7)
    assert (row_b.id, row_b.title, row_b.label) == (id_b, "Beta", "Beta Things")
    assert row_b.score == pytest.approx(0.5)

    # Deleting in one workspace leaves the other alone.
    with store.locked_document(ref_a):
        store.write_without_vector(ref_a, version_of(2), status=DocumentStatus.DELETED, reason="object deleted")
    assert store.load_embedded_vectors("alpha", MODEL)[0] == []
    assert store.load_embedded_vectors("beta", MODEL)[0] == [id_b]
    store.conn.commit()
    assert count(store.conn, "chunks", id_b) == 2
    assert count(store.conn, "document_categories", id_b) == 1
    assert store.pending_workspaces(["alpha", "beta"]) == {"alpha": 2}


def test_stored_documents_are_read_per_workspace_and_bucket(store: Store, rng: np.random.Generator) -> None:
    alpha, beta = ObjectRef("alpha", BUCKET, "shared/report.txt"), ObjectRef("beta", BUCKET, "shared/report.txt")
    other_bucket = ObjectRef("alpha", "archive", "shared/report.txt")
    id_alpha = embed(store, alpha, content_for(rng, ["alpha text"]), n=3)
    id_other = embed(store, other_bucket, content_for(rng, ["archived text"]), n=4)
    never = ObjectRef("alpha", BUCKET, "never/written.txt")

    found = store.get_documents([alpha, beta, other_bucket, never, alpha])

    assert set(found) == {alpha, other_bucket}  # beta's key is another workspace's
    assert (found[alpha].id, found[alpha].status) == (id_alpha, "embedded")
    assert found[alpha].sequencer == version_of(3).sequencer
    assert found[other_bucket].id == id_other and found[other_bucket].etag == version_of(4).etag
    assert found[alpha] == store.get_document(alpha)
    assert store.get_documents([]) == {}


def test_re_embedding_replaces_the_chunks_of_the_row_it_found(store: Store, rng: np.random.Generator) -> None:
    ref = ObjectRef("ws", BUCKET, "notes.txt")
    document_id = embed(store, ref, content_for(rng, ["one", "two", "three"]))
    with store.locked_document(ref) as current:
        assert current is not None
        store.write_embedded(ref, version_of(2), content_for(rng, ["only"]), replaces=current is not None)
    assert count(store.conn, "chunks", document_id) == 1


def test_pending_workspaces_only_lists_requested_and_behind(store: Store, rng: np.random.Generator) -> None:
    for workspace in ("a", "b", "c"):
        embed(store, ObjectRef(workspace, BUCKET, "k"), content_for(rng, ["t"]))
    assert store.pending_workspaces(["a", "b", "missing"]) == {"a": 1, "b": 1}
    assert store.pending_workspaces([]) == {}


def test_clustering_lock_of_unknown_workspace_yields_zeros(store: Store) -> None:
    with store.clustering_lock("nobody") as state:
        assert state == (0, 0)


# --- clustering results ----------------------------------------------------------------


def test_save_clustering_stores_categories_and_assignments(store: Store, rng: np.random.Generator) -> None:
    ids = [
        embed(store, ObjectRef("ws", BUCKET, f"doc-{i}.txt"), content_for(rng, [f"text {i}"], title=f"T{i}"))
        for i in range(5)
    ]
    assert store.pending_workspaces(["ws"]) == {"ws": 5}

    categories = [
        category("cat_a", "Invoice and Payment", ids[:2], rng),
        category("cat_b", "Lease", ids[2:4], rng),
        category("cat_c", "Incident", ids[4:], rng),
    ]
    scores = [0.91, 0.82, 0.73, 0.64, 0.55]
    owners = ["cat_a", "cat_a", "cat_b", "cat_b", "cat_c"]
    with store.clustering_lock("ws") as (change, clustered):
        assert (change, clustered) == (5, 0)
        store.save_clustering(
            "ws", change, categories, [Assignment(i, c, s) for i, c, s in zip(ids, owners, scores, strict=True)]
        )

    assert versions(store.conn, "ws") == (5, 5)
    assert store.pending_workspaces(["ws"]) == {}
    assert query(store.conn, "SELECT clustered_at IS NOT NULL FROM workspaces WHERE workspace = 'ws'") == [(True,)]

    loaded = store.load_categories("ws")
    store.conn.commit()
    assert [(c.id, c.label, c.size, c.document_ids) for c in loaded] == [
        ("cat_a", "Invoice and Payment", 2, ids[:2]),
        ("cat_b", "Lease", 2, ids[2:4]),
        ("cat_c", "Incident", 1, ids[4:]),
    ]
    assert loaded[0].keywords == ["invoice and payment", "other"]
    np.testing.assert_allclose(loaded[1].centroid, categories[1].centroid, rtol=1e-6)
    assert loaded[1].centroid.dtype == np.float32

    label_of = {c.id: c.label for c in categories}
    rows = store.document_rows("ws")
    assert [(r.id, r.key, r.title, r.status, r.category_id, r.label) for r in rows] == [
        (ids[i], f"doc-{i}.txt", f"T{i}", "embedded", owners[i], label_of[owners[i]]) for i in range(5)
    ]
    assert [r.score for r in rows] == pytest.approx(scores)

    # A second clustering with fewer categories drops the missing one and moves its documents.
    late = embed(store, ObjectRef("ws", BUCKET, "doc-5.txt"), content_for(rng, ["late"]))
    assert store.pending_workspaces(["ws"]) == {"ws": 6}
    with store.clustering_lock("ws") as (change, clustered):
        assert (change, clustered) == (6, 5)
        store.save_clustering(
            "ws",
            change,
            [category("cat_a", "Invoice", ids[:3], rng), category("cat_c", "Incident", [*ids[3:], late], rng)],
            [Assignment(i, "cat_a" if n < 3 else "cat_c", 0.5) for n, i in enumerate([*ids, late])],
        )
    assert store.pending_workspaces(["ws"]) == {}
    loaded = store.load_categories("ws")
    store.conn.commit()
    assert [(c.id, c.label, c.size, c.document_ids) for c in loaded] == [
        ("cat_a", "Invoice", 3, ids[:3]),
        ("cat_c", "Incident", 3, [*ids[3:], late]),
    ]
    assert query(store.conn, "SELECT count(*) FROM categories WHERE id = 'cat_b'") == [(0,)]
    assert {r.label for r in store.document_rows("ws")} == {"Invoice", "Incident"}


def test_save_clustering_with_no_categories_clears_everything(store: Store, rng: np.random.Generator) -> None:
    doc_id = embed(store, ObjectRef("ws", BUCKET, "a.txt"), content_for(rng, ["a"]))
    with store.clustering_lock("ws") as (change, _):
        store.save_clustering("ws", change, [category("cat_a", "A", [doc_id], rng)], [Assignment(doc_id, "cat_a", 1.0)])
    with store.clustering_lock("ws") as (change, _):
        store.save_clustering("ws", change, [], [])
    assert store.load_categories("ws") == []
    store.conn.commit()
    [row] = store.document_rows("ws")
    assert (row.category_id, row.label, row.score) == (None, None, None)


def test_save_clustering_ignores_assignment_of_non_embedded_document(store: Store, rng: np.random.Generator) -> None:
    doc_id = embed(store, ObjectRef("ws", BUCKET, "a.txt"), content_for(rng, ["a"]))
    skipped = ObjectRef("ws", BUCKET, "b.png")
    with store.locked_document(skipped):
        store.write_without_vector(skipped, version_of(1), status=DocumentStatus.SKIPPED, reason="image")
    skipped_id = document(store.conn, skipped)["id"]
    with store.clustering_lock("ws") as (change, _):
        store.save_clustering(
            "ws",
            change,
            [category("cat_a", "A", [doc_id], rng)],
            [Assignment(doc_id, "cat_a", 1.0), Assignment(skipped_id, "cat_a", 1.0)],
        )
    [loaded] = store.load_categories("ws")
    store.conn.commit()
    assert loaded.document_ids == [doc_id]


def test_load_embedded_vectors_streams_every_row_in_key_order(
    store: Store, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More rows than one fetch holds: every vector lands in its row of one float32 matrix."""
    monkeypatch.setattr("autotag.store.VECTOR_FETCH_ROWS", 2)
    written = {}
    for name in ["e", "b", "g", "a", "d", "c", "f"]:
        content = content_for(rng, [f"text {name}"])
        written[f"docs/{name}.txt"] = (embed(store, ObjectRef("alpha", BUCKET, f"docs/{name}.txt"), content), content)
    embed(store, ObjectRef("beta", BUCKET, "docs/other.txt"), content_for(rng, ["other workspace"]))

    ids, keys, matrix = store.load_embedded_vectors("alpha", MODEL)
    store.conn.commit()
    assert keys == sorted(written)
    assert ids == [written[key][0] for key in keys]
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    np.testing.assert_allclose(matrix, np.vstack([written[key][1].vector for key in keys]), rtol=1e-6)
