"""Every read and write of documents, chunks, categories and workspace bookkeeping.

All queries are parameterised and scoped by workspace. Writes for one document happen in
one transaction under a per-key advisory lock, so concurrent events for the same object
(S3 delivers at least once and out of order) serialise instead of interleaving.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import class_row

from autotag.chunking import Chunk
from autotag.embeddings import Vectors

Connection = psycopg.Connection[Any]


def as_array(value: Any) -> Vectors:
    """A pgvector value as a float32 numpy array (the adapter returns its own Vector type)."""
    raw = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(raw, dtype=np.float32)


class DocumentStatus:
    EMBEDDED = "embedded"
    SKIPPED = "skipped"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True)
class ObjectRef:
    workspace: str
    bucket: str
    key: str


@dataclass(frozen=True)
class StoredDocument:
    id: int
    status: str
    etag: str | None
    sequencer: str | None
    content_sha256: str | None
    model: str | None


@dataclass(frozen=True)
class ObjectVersion:
    etag: str | None
    version_id: str | None
    sequencer: str | None
    size_bytes: int | None


@dataclass(frozen=True)
class EmbeddedContent:
    content_sha256: str
    content_type: str
    title: str
    model: str
    token_count: int
    chunks: Sequence[Chunk]
    chunk_vectors: Vectors
    vector: Vectors
    note: str | None = None  # e.g. that text beyond the chunk limit was not embedded
    author: str | None = None  # as the document declares it (PDF info, Office properties, From:)
    created: datetime | None = None  # when the document says it was created
    page_count: int | None = None  # PDF pages or presentation slides


@dataclass(frozen=True)
class CategoryRecord:
    id: str
    label: str
    keywords: list[str]
    centroid: Vectors
    size: int
    document_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    document_id: int
    category_id: str
    score: float


@dataclass(frozen=True)
class DocumentRow:
    id: int
    key: str
    title: str | None
    status: str
    reason: str | None
    category_id: str | None
    label: str | None
    score: float | None


@dataclass(frozen=True)
class RowState:
    """What a reconcile compares of a document row with the object in S3."""

    key: str
    status: str
    etag: str | None
    model: str | None
    sequencer: str | None
    failed_etag: str | None = None  # the version whose last attempt failed, if any


def _identity(ref: ObjectRef, version: ObjectVersion) -> tuple[object, ...]:
    """The leading INSERT values of a document row: where the object is and which version."""
    return (ref.workspace, ref.bucket, ref.key, version.etag, version.version_id, version.sequencer, version.size_bytes)


# Rows per round trip when streaming vectors (1536 floats: about 6 MB per fetch).
VECTOR_FETCH_ROWS = 1000


def _grown(matrix: Vectors, rows: int, dimensions: int) -> Vectors:
    grown = np.empty((rows, dimensions), dtype=np.float32)
    if matrix.size:
        grown[: matrix.shape[0]] = matrix
    return grown


class Store:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def rollback(self) -> None:
        """End a failed transaction, if the connection is still there to do it on."""
        if not self.conn.closed and not self.conn.broken:
            self.conn.rollback()

    # --- documents -----------------------------------------------------------------

    def get_document(self, ref: ObjectRef) -> StoredDocument | None:
        with self.conn.cursor(row_factory=class_row(StoredDocument)) as cur:
            cur.execute(
                "SELECT id, status, etag, sequencer, content_sha256, model FROM documents"
                " WHERE workspace = %s AND bucket = %s AND key = %s",
                (ref.workspace, ref.bucket, ref.key),
            )
            row = cur.fetchone()
        self.conn.commit()
        return row

    def get_documents(self, refs: Sequence[ObjectRef]) -> dict[ObjectRef, StoredDocument]:
        """The stored state of each of `refs` that has a row: one query per workspace and bucket."""
        keys: dict[tuple[str, str], list[str]] = {}
        for ref in refs:
            keys.setdefault((ref.workspace, ref.bucket), []).append(ref.key)
        found: dict[ObjectRef, StoredDocument] = {}
        for (workspace, bucket), names in keys.items():
            rows = self.conn.execute(
                "SELECT key, id, status, etag, sequencer, content_sha256, model FROM documents"
                " WHERE workspace = %s AND bucket = %s AND key = ANY(%s)",
                (workspace, bucket, sorted(set(names))),
            ).fetchall()
            for key, *state in rows:
                found[ObjectRef(workspace, bucket, key)] = StoredDocument(*state)
        self.conn.commit()
        return found

    @contextmanager
    def locked_document(self, ref: ObjectRef) -> Iterator[StoredDocument | None]:
        """A transaction holding the key's lock, yielding the document's current state."""
        with self.conn.transaction():
            # One round trip: the workspace row (for the foreign keys) and the key's lock.
            self.conn.execute(
                "WITH workspace AS (INSERT INTO workspaces (workspace) VALUES (%s) ON CONFLICT DO NOTHING)"
                " SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (ref.workspace, f"{ref.workspace}\n{ref.bucket}\n{ref.key}"),
            )
            with self.conn.cursor(row_factory=class_row(StoredDocument)) as cur:
                cur.execute(
                    "SELECT id, status, etag, sequencer, content_sha256, model FROM documents"
                    " WHERE workspace = %s AND bucket = %s AND key = %s",
                    (ref.workspace, ref.bucket, ref.key),
                )
                yield cur.fetchone()

    def write_embedded(
        self, ref: ObjectRef, version: ObjectVersion, content: EmbeddedContent, *, replaces: bool = True
    ) -> None:
        """Inside `locked_document`: store the document, its chunks and vectors; move the workspace on.

        `replaces=False` when `locked_document` found no row for the key: there are then no
        chunks to delete (every writer of chunks holds the key's lock).
        """
        row = self.conn.execute(
            "INSERT INTO documents (workspace, bucket, key, etag, version_id, sequencer, size_bytes,"
            " content_sha256, content_type, title, status, reason, model, token_count, chunk_count,"
            " embedding, embedded_at, author, content_created_at, page_count)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'embedded', %s, %s, %s, %s, %s, now(), %s, %s, %s)"
            " ON CONFLICT (workspace, bucket, key) DO UPDATE SET etag = EXCLUDED.etag,"
            # An event without S3's sequencer (a reconcile's) keeps the row's ordering guard.
            " version_id = EXCLUDED.version_id, sequencer = COALESCE(EXCLUDED.sequencer, documents.sequencer),"
            " size_bytes = EXCLUDED.size_bytes,"
            " content_sha256 = EXCLUDED.content_sha256, content_type = EXCLUDED.content_type,"
            " title = EXCLUDED.title, status = 'embedded', reason = EXCLUDED.reason, model = EXCLUDED.model,"
            " token_count = EXCLUDED.token_count, chunk_count = EXCLUDED.chunk_count,"
            " embedding = EXCLUDED.embedding, embedded_at = now(), updated_at = now(), failed_etag = NULL,"
            " author = EXCLUDED.author, content_created_at = EXCLUDED.content_created_at,"
            " page_count = EXCLUDED.page_count"
            # One statement, one row version: a second UPDATE for the metadata would, once the
            # page is full, write the row again and insert its vector into the HNSW index twice.
            " RETURNING id",
            (
                *_identity(ref, version),
                content.content_sha256,
                content.content_type,
                content.title,
                content.note,
                content.model,
                content.token_count,
                len(content.chunks),
                content.vector,
                content.author,
                content.created,
                content.page_count,
            ),
        ).fetchone()
        assert row is not None
        document_id = int(row[0])
        if replaces:
            self.conn.execute(
                "DELETE FROM chunks WHERE workspace = %s AND document_id = %s", (ref.workspace, document_id)
            )
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (document_id, workspace, ordinal, text, token_count, embedding)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (document_id, ref.workspace, chunk.ordinal, chunk.text, chunk.token_count, vector)
                    for chunk, vector in zip(content.chunks, content.chunk_vectors, strict=True)
                ],
            )
        self._bump(ref.workspace)

    def write_unchanged(self, ref: ObjectRef, version: ObjectVersion) -> None:
        """Inside `locked_document`: same content and model; only the object's identity moved on."""
        self.conn.execute(
            "UPDATE documents SET etag = %s, version_id = %s, sequencer = COALESCE(%s, sequencer), updated_at = now(),"
            " failed_etag = NULL"
            " WHERE workspace = %s AND bucket = %s AND key = %s",
            (version.etag, version.version_id, version.sequencer, ref.workspace, ref.bucket, ref.key),
        )

    def write_without_vector(
        self,
        ref: ObjectRef,
        version: ObjectVersion,
        *,
        status: str,
        reason: str,
        content_sha256: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Inside `locked_document`: a skipped or deleted object keeps a row (with its sequencer) but no vectors."""
        row = self.conn.execute(
            "INSERT INTO documents (workspace, bucket, key, etag, version_id, sequencer, size_bytes,"
            " content_sha256, content_type, status, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (workspace, bucket, key) DO UPDATE SET etag = EXCLUDED.etag,"
            # An event without S3's sequencer (a reconcile's) keeps the row's ordering guard.
            " version_id = EXCLUDED.version_id, sequencer = COALESCE(EXCLUDED.sequencer, documents.sequencer),"
            " size_bytes = EXCLUDED.size_bytes,"
            " content_sha256 = EXCLUDED.content_sha256, content_type = EXCLUDED.content_type,"
            " status = EXCLUDED.status, reason = EXCLUDED.reason, embedding = NULL, model = NULL,"
            " token_count = NULL, chunk_count = NULL, embedded_at = NULL, updated_at = now(),"
            " author = NULL, content_created_at = NULL, page_count = NULL, failed_etag = NULL"
            " RETURNING id, (SELECT status FROM documents WHERE workspace = %s AND bucket = %s AND key = %s)",
            (
                *_identity(ref, version),
                content_sha256,
                content_type,
                status,
                reason,
                ref.workspace,
                ref.bucket,
                ref.key,
            ),
        ).fetchone()
        assert row is not None
        document_id, previous_status = int(row[0]), row[1]
        self.conn.execute("DELETE FROM chunks WHERE workspace = %s AND document_id = %s", (ref.workspace, document_id))
        self.conn.execute(
            "DELETE FROM document_categories WHERE workspace = %s AND document_id = %s", (ref.workspace, document_id)
        )
        if previous_status == DocumentStatus.EMBEDDED:
            self._bump(ref.workspace)

    def write_failure(self, ref: ObjectRef, version: ObjectVersion, reason: str) -> None:
        """Record why the latest attempt failed, where an operator will look for it.

        A document that is already embedded keeps its vector and category until a retry
        succeeds; the sequencer is left alone so the retry of the same event is not "older".
        """
        with self.conn.transaction():
            self.conn.execute("INSERT INTO workspaces (workspace) VALUES (%s) ON CONFLICT DO NOTHING", (ref.workspace,))
            self.conn.execute(
                "INSERT INTO documents (workspace, bucket, key, etag, version_id, size_bytes, status, reason,"
                " failed_etag)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'failed', %s, %s)"
                " ON CONFLICT (workspace, bucket, key) DO UPDATE SET"
                " status = CASE WHEN documents.status = 'embedded' THEN 'embedded' ELSE 'failed' END,"
                " reason = EXCLUDED.reason, failed_etag = EXCLUDED.failed_etag, updated_at = now()",
                (
                    ref.workspace,
                    ref.bucket,
                    ref.key,
                    version.etag,
                    version.version_id,
                    version.size_bytes,
                    reason,
                    version.etag,
                ),
            )

    def _bump(self, workspace: str) -> None:
        self.conn.execute(
            "UPDATE workspaces SET change_version = change_version + 1 WHERE workspace = %s", (workspace,)
        )

    # --- workspaces ----------------------------------------------------------------

    def pending_workspaces(self, workspaces: Sequence[str]) -> dict[str, int]:
        """Workspaces among `workspaces` whose categories are behind their documents, with their version."""
        rows = self.conn.execute(
            "SELECT workspace, change_version FROM workspaces"
            " WHERE workspace = ANY(%s) AND change_version > clustered_version",
            (list(workspaces),),
        ).fetchall()
        self.conn.commit()
        return {str(workspace): int(version) for workspace, version in rows}

    @contextmanager
    def clustering_lock(self, workspace: str) -> Iterator[tuple[int, int]]:
        """A transaction holding the workspace's clustering lock, yielding (change, clustered) versions."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"cluster\n{workspace}",))
            row = self.conn.execute(
                "SELECT change_version, clustered_version FROM workspaces WHERE workspace = %s", (workspace,)
            ).fetchone()
            yield (int(row[0]), int(row[1])) if row else (0, 0)

    # --- clustering ------------------------------------------------------------------

    def load_embedded_vectors(self, workspace: str, model: str) -> tuple[list[int], list[str], Vectors]:
        """Ids, keys and the (n, dimensions) matrix of the workspace's documents embedded by `model`.

        Vectors of another model (before a model change is re-embedded) share no space with
        these, even at the same dimension, so they are left out rather than mixed in.
        """
        count_row = self.conn.execute(
            "SELECT count(*) FROM documents WHERE workspace = %s AND status = 'embedded' AND model = %s",
            (workspace, model),
        ).fetchone()
        # Rows stream from a server-side cursor in binary into one preallocated float32
        # matrix: at 100k documents a list of per-row arrays would hold the vectors twice.
        capacity = int(count_row[0]) if count_row else 0
        ids: list[int] = []
        keys: list[str] = []
        matrix = np.zeros((0, 0), dtype=np.float32)
        with self.conn.cursor(name=f"vectors_{id(self)}", binary=True) as cur:
            cur.itersize = VECTOR_FETCH_ROWS
            cur.execute(
                "SELECT id, key, embedding FROM documents"
                " WHERE workspace = %s AND status = 'embedded' AND model = %s ORDER BY key",
                (workspace, model),
            )
            while rows := cur.fetchmany(VECTOR_FETCH_ROWS):
                for doc_id, key, embedding in rows:
                    vector = as_array(embedding)
                    if len(ids) == matrix.shape[0]:
                        # The first row, or documents embedded since the count: room for the rest.
                        matrix = _grown(matrix, max(capacity, len(ids) + len(rows)), vector.shape[0])
                    matrix[len(ids)] = vector
                    ids.append(int(doc_id))
                    keys.append(str(key))
        if not ids:
            return [], [], np.zeros((0, 0), dtype=np.float32)
        return ids, keys, matrix[: len(ids)]

    def load_texts(self, workspace: str, document_ids: Sequence[int], *, max_chars: int) -> dict[int, str]:
        """Title plus the opening chunks of each document, up to `max_chars` characters."""
        rows = self.conn.execute(
            "SELECT d.id, coalesce(d.title, ''), string_agg(c.text, ' ' ORDER BY c.ordinal)"
            " FROM documents d JOIN chunks c ON c.document_id = d.id AND c.workspace = d.workspace"
            " WHERE d.workspace = %s AND d.id = ANY(%s) AND c.ordinal < 8"
            " GROUP BY d.id, d.title",
            (workspace, list(document_ids)),
        ).fetchall()
        return {int(doc_id): f"{title}\n{text}"[:max_chars] for doc_id, title, text in rows}

    def load_categories(self, workspace: str) -> list[CategoryRecord]:
        rows = self.conn.execute(
            "SELECT c.id, c.label, c.keywords, c.centroid, c.size,"
            " coalesce(array_agg(dc.document_id ORDER BY dc.document_id)"
            "   FILTER (WHERE dc.document_id IS NOT NULL), '{}')"
            " FROM categories c LEFT JOIN document_categories dc"
            "   ON dc.workspace = c.workspace AND dc.category_id = c.id"
            " WHERE c.workspace = %s GROUP BY c.workspace, c.id ORDER BY c.id",
            (workspace,),
        ).fetchall()
        return [
            CategoryRecord(
                id=row[0],
                label=row[1],
                keywords=list(row[2]),
                centroid=as_array(row[3]),
                size=int(row[4]),
                document_ids=[int(i) for i in row[5]],
            )
            for row in rows
        ]

    def save_clustering(
        self, workspace: str, version: int, categories: Sequence[CategoryRecord], assignments: Sequence[Assignment]
    ) -> None:
        """Inside `clustering_lock`: replace the workspace's categories and assignments atomically."""
        keep = [category.id for category in categories]
        self.conn.execute("DELETE FROM document_categories WHERE workspace = %s", (workspace,))
        self.conn.execute("DELETE FROM categories WHERE workspace = %s AND NOT (id = ANY(%s))", (workspace, keep))
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO categories (workspace, id, label, keywords, centroid, size)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (workspace, id) DO UPDATE SET label = EXCLUDED.label, keywords = EXCLUDED.keywords,"
                " centroid = EXCLUDED.centroid, size = EXCLUDED.size,"
                " updated_at = CASE WHEN (categories.label, categories.size) IS DISTINCT FROM"
                "   (EXCLUDED.label, EXCLUDED.size) THEN now() ELSE categories.updated_at END",
                [(workspace, c.id, c.label, c.keywords, c.centroid, c.size) for c in categories],
            )
            cur.executemany(
                "INSERT INTO document_categories (workspace, document_id, category_id, score)"
                " SELECT %s, d.id, %s, %s FROM documents d"
                " WHERE d.workspace = %s AND d.id = %s AND d.status = 'embedded'",
                [(workspace, a.category_id, a.score, workspace, a.document_id) for a in assignments],
            )
        self.conn.execute(
            "UPDATE workspaces SET clustered_version = %s, clustered_at = now() WHERE workspace = %s",
            (version, workspace),
        )

    # --- reporting -------------------------------------------------------------------

    def now(self) -> datetime:
        row = self.conn.execute("SELECT now()").fetchone()
        self.conn.commit()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    def embedded_since(self, workspace: str, since: datetime) -> int:
        """Documents of `workspace` whose vectors were (re)computed at or after `since`."""
        row = self.conn.execute(
            "SELECT count(*) FROM documents WHERE workspace = %s AND embedded_at >= %s", (workspace, since)
        ).fetchone()
        self.conn.commit()
        assert row is not None
        return int(row[0])

    def document_rows(self, workspace: str) -> list[DocumentRow]:
        with self.conn.cursor(row_factory=class_row(DocumentRow)) as cur:
            cur.execute(
                "SELECT d.id, d.key, d.title, d.status, d.reason, dc.category_id, c.label, dc.score"
                " FROM documents d"
                " LEFT JOIN document_categories dc ON dc.document_id = d.id AND dc.workspace = d.workspace"
                " LEFT JOIN categories c ON c.workspace = dc.workspace AND c.id = dc.category_id"
                " WHERE d.workspace = %s AND d.status <> 'deleted' ORDER BY d.key",
                (workspace,),
            )
            rows = cur.fetchall()
        self.conn.commit()
        return rows

    def workspaces(self) -> list[str]:
        """Every workspace the database knows (the operator's status view starts here)."""
        rows = self.conn.execute("SELECT workspace FROM workspaces ORDER BY workspace").fetchall()
        self.conn.commit()
        return [str(row[0]) for row in rows]

    def status_counts(self, workspace: str) -> dict[str, int]:
        """How many of the workspace's documents are embedded, skipped, failed, deleted."""
        rows = self.conn.execute(
            "SELECT status, count(*) FROM documents WHERE workspace = %s GROUP BY status ORDER BY status",
            (workspace,),
        ).fetchall()
        self.conn.commit()
        return {str(status): int(count) for status, count in rows}

    # --- reprocessing ----------------------------------------------------------------

    def rows_in_key_order(
        self, workspace: str, bucket: str, *, after: str | None, upto: str | None, limit: int
    ) -> list[RowState]:
        """Up to `limit` rows with after < key <= upto, in S3's listing order (UTF-8 bytes = "C")."""
        with self.conn.cursor(row_factory=class_row(RowState)) as cur:
            cur.execute(
                "SELECT key, status, etag, model, sequencer, failed_etag FROM documents"
                ' WHERE workspace = %s AND bucket = %s AND key COLLATE "C" > %s'
                ' AND (%s::text IS NULL OR key COLLATE "C" <= %s)'
                ' ORDER BY key COLLATE "C" LIMIT %s',
                (workspace, bucket, after or "", upto, upto, limit),
            )
            rows = cur.fetchall()
        self.conn.commit()
        return rows

    def failure_reason(self, ref: ObjectRef) -> str | None:
        """Why the document's last attempt failed, when its row says it did."""
        row = self.conn.execute(
            "SELECT reason FROM documents WHERE workspace = %s AND bucket = %s AND key = %s AND status = 'failed'",
            (ref.workspace, ref.bucket, ref.key),
        ).fetchone()
        self.conn.commit()
        return None if row is None else row[0]

    def workspaces_after(self, prefix: str | None, limit: int) -> list[str]:
        """Workspaces with a row here, in the order of their key prefix ('<workspace>/'), after `prefix`."""
        rows = self.conn.execute(
            "SELECT workspace FROM workspaces WHERE (workspace || '/') COLLATE \"C\" > %s"
            " ORDER BY (workspace || '/') COLLATE \"C\" LIMIT %s",
            (prefix or "", limit),
        ).fetchall()
        self.conn.commit()
        return [str(row[0]) for row in rows]

    def reconcile_cursor(self, workspace: str, bucket: str) -> str | None:
        """The last key an unfinished reconcile of the workspace compared; None: start from the top."""
        row = self.conn.execute(
            "SELECT after_key FROM reconcile_cursors WHERE workspace = %s AND bucket = %s", (workspace, bucket)
        ).fetchone()
        self.conn.commit()
        return None if row is None else row[0]

    def save_reconcile_cursor(self, workspace: str, bucket: str, after_key: str | None) -> None:
        """Record progress (`after_key`), or with None that the workspace's pass is complete."""
        self.conn.execute(
            "INSERT INTO reconcile_cursors AS c (workspace, bucket, after_key, started_at, completed_at)"
            " VALUES (%s, %s, %s, now(), CASE WHEN %s::text IS NULL THEN now() END)"
            " ON CONFLICT (workspace, bucket) DO UPDATE SET after_key = EXCLUDED.after_key,"
            " started_at = CASE WHEN c.after_key IS NULL THEN now() ELSE c.started_at END,"
            " completed_at = CASE WHEN EXCLUDED.after_key IS NULL THEN now() ELSE c.completed_at END,"
            " updated_at = now()",
            (workspace, bucket, after_key, after_key),
        )
        self.conn.commit()

    def sweep_position(self, bucket: str) -> str | None:
        """The last workspace prefix an unfinished reconcile of every workspace finished."""
        row = self.conn.execute("SELECT after_prefix FROM reconcile_sweeps WHERE bucket = %s", (bucket,)).fetchone()
        self.conn.commit()
        return None if row is None else row[0]

    def save_sweep_position(self, bucket: str, after_prefix: str | None) -> None:
        """Record the last workspace finished, or with None that the sweep is complete."""
        self.conn.execute(
            "INSERT INTO reconcile_sweeps AS s (bucket, after_prefix, started_at, completed_at)"
            " VALUES (%s, %s, now(), CASE WHEN %s::text IS NULL THEN now() END)"
            " ON CONFLICT (bucket) DO UPDATE SET after_prefix = EXCLUDED.after_prefix,"
            " started_at = CASE WHEN s.after_prefix IS NULL THEN now() ELSE s.started_at END,"
            " completed_at = CASE WHEN EXCLUDED.after_prefix IS NULL THEN now() ELSE s.completed_at END,"
            " updated_at = now()",
            (bucket, after_prefix, after_prefix),
        )
        self.conn.commit()
