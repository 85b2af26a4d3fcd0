"""What the embed function does with a batch of object changes.

Order of work per invocation: decide cheaply what needs embedding (sequencer and ETag
against the stored row), fetch and extract those objects, embed every chunk of every
document in one provider call sequence, then write each document in its own transaction.
A failure is confined to its document: the rest of the batch goes on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any

import psycopg
from botocore.exceptions import ClientError

from autotag.chunking import Chunk, ChunkedText, chunk_text
from autotag.database import CONNECT_TIMEOUT_SECONDS
from autotag.embeddings import Embedder, EmbeddingInputError, Vectors, document_vector, embed_documents
from autotag.events import ChangeKind, ObjectChange, sequencer_is_older
from autotag.extraction import Extracted, ExtractionLimits, Skipped, extract
from autotag.settings import Settings
from autotag.store import DocumentStatus, EmbeddedContent, ObjectRef, ObjectVersion, Store, StoredDocument

logger = logging.getLogger(__name__)

# The most a reconnect can take: the connect timeout, twice (again with the secret re-read).
RECONNECT_SECONDS = 2 * CONNECT_TIMEOUT_SECONDS
# The share of an invocation's time kept for embedding and writing what was already fetched and
# extracted: a batch of slow documents (large PDFs take up to the extraction budget each) stops
# preparing more and hands the rest back to the queue, instead of extracting until the deadline
# and then having no time left to embed any of them, receive after receive.
EMBED_RESERVE_SHARE = 0.25


class OutOfTimeError(RuntimeError):
    """Raised for documents the invocation has no time left for."""


def _raise(exc: Exception) -> Step:
    raise exc


class Result(StrEnum):
    EMBEDDED = "embedded"
    UNCHANGED = "unchanged"  # same content and model as stored: nothing re-embedded
    SKIPPED = "skipped"  # recorded with a reason (unsupported type, empty, too large...)
    DELETED = "deleted"
    IGNORED = "ignored"  # nothing to record: no workspace, stale event, object already gone
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    change: ObjectChange | None
    result: Result
    reason: str = ""


@dataclass
class _Work:
    """One created object on its way through fetch → extract → chunk → embed → write."""

    item: str
    change: ObjectChange
    ref: ObjectRef
    version: ObjectVersion
    sha256: str = ""
    extracted: Extracted | None = None
    chunked: ChunkedText | None = None
    vectors: Vectors | None = None


# What one step of the pipeline yields for a change: a final outcome, work to continue, or nothing.
Step = Outcome | _Work | None


@dataclass
class BatchReport:
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)

    def add(self, item: str, outcome: Outcome) -> None:
        self.outcomes.setdefault(item, []).append(outcome)
        log = logger.warning if outcome.result is Result.FAILED else logger.info
        change = outcome.change
        log(
            "%s %s",
            outcome.result.value,
            change.key if change else item,
            extra={"result": outcome.result.value, "reason": outcome.reason, "item": item},
        )

    def failures(self) -> dict[str, str]:
        """Items (SQS message ids) with at least one failed change, and why."""
        return {
            item: "; ".join(o.reason for o in outcomes if o.result is Result.FAILED)
            for item, outcomes in self.outcomes.items()
            if any(o.result is Result.FAILED for o in outcomes)
        }

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((r.value for r in Result), 0)
        for outcomes in self.outcomes.values():
            for outcome in outcomes:
                counts[outcome.result.value] += 1
        return counts


@dataclass(frozen=True)
class ChunkWindows:
    """How documents are cut for the model in use: window and overlap in tokens, and a chunk cap."""

    tokens: int
    overlap: int
    max_chunks: int


def chunk_windows(settings: Settings, max_input_tokens: int) -> ChunkWindows:
    tokens = min(settings.chunk_tokens, max_input_tokens)
    # Settings check the overlap against AUTOTAG_CHUNK_TOKENS, but the window may be cut to the
    # model's input limit here; an overlap as large as the window would never advance.
    overlap = min(settings.chunk_overlap_tokens, tokens // 2)
    if overlap < settings.chunk_overlap_tokens:
        logger.warning(
            "AUTOTAG_CHUNK_OVERLAP_TOKENS=%d exceeds half of the %d-token window the model allows; using %d",
            settings.chunk_overlap_tokens,
            tokens,
            overlap,
        )
    # Windows advance by at least (tokens - overlap) tokens and a token is at least one
    # character, so this many chunks always cover the whole text within the character limit.
    max_chunks = settings.max_chunks_per_document or math.ceil(settings.max_extracted_chars / (tokens - overlap)) + 1
    return ChunkWindows(tokens, overlap, max_chunks)


def _one_per_content(report: BatchReport, work: list[_Work]) -> list[_Work]:
    """The units of a batch with one per object and content: the newest-sequenced.

    S3 delivers at least once, so a burst can bring the same event, or several events of an
    object that did not change, into one batch; embedding its content once is enough.
    """
    kept: dict[tuple[ObjectRef, str], _Work] = {}
    for unit in work:
        key = (unit.ref, unit.sha256)
        other = kept.setdefault(key, unit)
        if other is unit:
            continue
        if _ordered_before(unit.version.sequencer, other.version.sequencer):
            unit, other = other, unit
        kept[key] = unit
        report.add(
            other.item, Outcome(other.change, Result.UNCHANGED, "the same object as another event of this batch")
        )
    return list(kept.values())


def _ordered_before(sequencer: str | None, other: str | None) -> bool:
    """Whether an event with `sequencer` should give way to one with `other`: S3's older
    sequencer does, and so does an event without one (a reconcile's) to an event with one,
    so the row keeps the ordering guard."""
    if not sequencer:
        return bool(other)
    return bool(other) and sequencer_is_older(sequencer, other)


def _object_size(response: dict[str, Any]) -> int:
    """The whole object's size: a ranged GetObject's Content-Range ends with it ("bytes 0-9/5000")."""
    total = str(response.get("ContentRange") or "").rpartition("/")[2]
    return int(total) if total.isdigit() else int(response.get("ContentLength", 0))


class EmbedPipeline:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        s3: Any,
        *,
        deadline: float | None = None,
        reconnect: Callable[[], Store] | None = None,
    ) -> None:
        """`deadline` (time.monotonic()) is when work must stop so the invocation can still report;
        `reconnect` gives a store on a new connection when the database connection is lost."""
        self.deadline = deadline
        self._embed_reserve = 0.0 if deadline is None else max(0.0, deadline - time.monotonic()) * EMBED_RESERVE_SHARE
        self.reconnect = reconnect
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.s3 = s3
        self.windows = chunk_windows(settings, embedder.max_input_tokens)
        self._stored: dict[ObjectRef, StoredDocument | None] = {}
        self.limits = ExtractionLimits(
            max_pages=settings.max_pages,
            max_chars=settings.max_extracted_chars,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            time_budget_seconds=settings.extraction_time_budget_seconds,
        )

    def process(self, items: Sequence[tuple[str, Sequence[ObjectChange]]]) -> BatchReport:
        """Process every change of every item (an SQS message id, or one direct invocation)."""
        report = BatchReport()
        work: list[_Work] = []
        self._stored = self._look_up_stored([change for _, changes in items for change in changes])
        for item, changes in items:
            for change in changes:
                prepared = self._guarded(report, item, change, partial(self._prepare, change))
                if prepared is not None:
                    work.append(prepared)
        work = _one_per_content(report, work)
        self._embed(report, work)
        for unit in work:
            if unit.vectors is not None:
                self._guarded(report, unit.item, unit.change, partial(self._write_embedded, unit))
        return report

    def _look_up_stored(self, changes: Sequence[ObjectChange]) -> dict[ObjectRef, StoredDocument | None]:
        """The stored state of every created object of the batch, in one query instead of one each.

        Only a first, cheap decision rests on it (skip an unchanged or older event before
        fetching); every write re-reads the row under the key's lock. If the query fails,
        each document reads its own row, and fails or retries alone.
        """
        refs = [
            ObjectRef(c.workspace, c.bucket, c.key)
            for c in changes
            if c.workspace is not None and c.kind is ChangeKind.CREATED and not c.is_folder
        ]
        if not refs:
            return {}
        try:
            found = self.store.get_documents(refs)
        except Exception:
            logger.warning("could not read the batch's stored documents at once; reading them one each", exc_info=True)
            self.store.rollback()
            return {}
        return {ref: found.get(ref) for ref in refs}

    def _stored_document(self, ref: ObjectRef) -> StoredDocument | None:
        # A key's second event in one batch reads the row again: the first may have written it.
        if ref in self._stored:
            return self._stored.pop(ref)
        return self.store.get_document(ref)

    def _guarded(self, report: BatchReport, item: str, change: ObjectChange, step: Callable[[], Step]) -> _Work | None:
        try:
            result = self._reconnecting(step)
        except Exception as exc:  # one document's failure must not fail the batch
            reason = f"{type(exc).__name__}: {exc}"
            logger.exception("failed %s", change.key)
            self._record_failure(change, reason)
            report.add(item, Outcome(change, Result.FAILED, reason))
            return None
        if isinstance(result, Outcome):
            if result.change is None:
                result = replace(result, change=change)
            report.add(item, result)
            return None
        if isinstance(result, _Work):
            result.item = item
            return result
        return None

    def _reconnecting(self, step: Callable[[], Step]) -> Step:
        try:
            return step()
        except psycopg.OperationalError:
            if self.reconnect is None or not (self.store.conn.broken or self.store.conn.closed):
                raise
        # The connection died under this step (a failover, a restarted proxy, a killed backend).
        # The step's transaction died with it, whole, so it runs again on a new connection, and
        # the documents after it in the batch do not all fail with it.
        if self.deadline is not None and self.deadline - time.monotonic() < RECONNECT_SECONDS:
            raise
        logger.warning("database connection lost; reconnecting")
        reconnect, self.reconnect = self.reconnect, None
        # Once per invocation: if the database stays away, the records go back to the queue
        # now rather than each waiting out its own connect timeout past the Lambda's end.
        self.store = reconnect()
        self.reconnect = reconnect
        return step()

    def _prepare(self, change: ObjectChange) -> Outcome | _Work:
        workspace = change.workspace
        if change.is_folder:
            return Outcome(change, Result.IGNORED, "folder placeholder (the key ends with '/'), not a document")
        if workspace is None:
            return Outcome(change, Result.IGNORED, f"key {change.key!r} has no workspace segment")
        self._check_time(reserve=self._embed_reserve)
        if change.kind is ChangeKind.DELETED:
            ref = ObjectRef(workspace, change.bucket, change.key)
            return self._delete(change, ref, ObjectVersion(None, change.version_id, change.sequencer, None))
        return self._created(change)

    def _created(self, change: ObjectChange) -> Outcome | _Work:
        assert change.workspace is not None
        ref = ObjectRef(change.workspace, change.bucket, change.key)
        version = ObjectVersion(change.etag, change.version_id, change.sequencer, change.size)
        stored = self._stored_document(ref)
        if stored is not None and sequencer_is_older(change.sequencer, stored.sequencer):
            return Outcome(change, Result.IGNORED, "event is older than the stored state of this key")
        if self._same_object(stored, change):
            return self._unchanged(ref, version)
        return self._fetch_and_extract(_Work("", change, ref, version), stored)

    def _same_object(self, stored: StoredDocument | None, change: ObjectChange) -> bool:
        return (
            stored is not None
            and change.etag is not None
            and stored.etag == change.etag
            and stored.status in (DocumentStatus.EMBEDDED, DocumentStatus.SKIPPED)
            and (stored.model == self.embedder.model or stored.status == DocumentStatus.SKIPPED)
        )

    def _unchanged(self, ref: ObjectRef, version: ObjectVersion) -> Outcome:
        with self.store.locked_document(ref) as current:
            if current is not None and sequencer_is_older(version.sequencer, current.sequencer):
                return Outcome(None, Result.IGNORED, "event is older than the stored state of this key")
            self.store.write_unchanged(ref, version)
        return Outcome(None, Result.UNCHANGED, "content and model unchanged")

    def _fetch_and_extract(self, unit: _Work, stored: StoredDocument | None) -> Outcome | _Work:
        change = unit.change
        fetched = self._fetch(change)
        if isinstance(fetched, Outcome):
            return fetched
        data, version = fetched
        unit.version = version
        unit.sha256 = hashlib.sha256(data).hexdigest()
        if (
            stored is not None
            and stored.status == DocumentStatus.EMBEDDED
            and stored.content_sha256 == unit.sha256
            and stored.model == self.embedder.model
        ):
            return self._unchanged(unit.ref, version)
        extracted = extract(change.key, data, self.limits, deadline=self.deadline)
        if isinstance(extracted, Skipped):
            return self._write_skipped(unit, extracted)
        unit.extracted = extracted
        unit.chunked = chunk_text(
            extracted.text,
            self.embedder.tokenizer,
            max_tokens=self.windows.tokens,
            overlap=self.windows.overlap,
            max_chunks=self.windows.max_chunks,
        )
        if not unit.chunked.chunks:
            return self._write_skipped(unit, Skipped("no text content", extracted.content_type))
        return unit

    def _fetch(self, change: ObjectChange) -> tuple[bytes, ObjectVersion] | Outcome:
        limit = self.settings.max_object_bytes
        if change.size is not None and change.size > limit and change.sequencer:
            # S3's event says how large the object is: it is not fetched at all, and the
            # sequencer keeps a stale event from overwriting a newer row. A reconcile event
            # (no sequencer) may describe an object overwritten since: it reads a range.
            version = ObjectVersion(change.etag, change.version_id, change.sequencer, change.size)
            return self._too_large(change, version, f"{change.size} bytes")
        try:
            # The current object, not the event's version: if it was overwritten meanwhile, the
            # newer content is what the drive shows, and its own event will then be "unchanged".
            response = self._get_bounded(change, limit)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                raise
            # Deleted (or overwritten) since the event; its own Object Deleted event follows.
            return Outcome(change, Result.IGNORED, "object no longer exists")
        body = response["Body"]
        size = _object_size(response)
        version = ObjectVersion(
            etag=str(response.get("ETag", change.etag or "")).strip('"') or change.etag,
            version_id=response.get("VersionId") or change.version_id,
            sequencer=change.sequencer,
            size_bytes=size,
        )
        # Decided on the response headers, before the body is read; the read itself is bounded
        # too, in case the length was not what the headers said.
        data = b"" if size > limit else body.read(limit + 1)
        body.close()
        if size > limit or len(data) > limit:
            return self._too_large(change, version, f"{size} bytes" if size > limit else f"more than {limit} bytes")
        return data, version

    def _get_bounded(self, change: ObjectChange, limit: int) -> Any:
        """GetObject of at most `limit` + 1 bytes: one more than allowed tells a large object apart."""
        try:
            return self.s3.get_object(Bucket=change.bucket, Key=change.key, Range=f"bytes=0-{limit}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                raise
        # S3 refuses every range of an empty object; the headers still decide before any read.
        return self.s3.get_object(Bucket=change.bucket, Key=change.key)

    def _too_large(self, change: ObjectChange, version: ObjectVersion, measured: str) -> Outcome:
        limit = self.settings.max_object_bytes
        ref = ObjectRef(change.workspace or "", change.bucket, change.key)
        reason = f"over the size limit: object is {measured}, AUTOTAG_MAX_OBJECT_BYTES={limit}"
        return self._write_skipped(_Work("", change, ref, version), Skipped(reason, "application/octet-stream"))

    def _write_skipped(self, unit: _Work, skipped: Skipped) -> Outcome:
        with self.store.locked_document(unit.ref) as current:
            if current is not None and sequencer_is_older(unit.version.sequencer, current.sequencer):
                return Outcome(unit.change, Result.IGNORED, "a newer event for this key was processed meanwhile")
            self.store.write_without_vector(
                unit.ref,
                unit.version,
                status=DocumentStatus.SKIPPED,
                reason=skipped.reason,
                content_sha256=unit.sha256 or None,
                content_type=skipped.content_type,
            )
        return Outcome(unit.change, Result.SKIPPED, skipped.reason)

    def _delete(self, change: ObjectChange, ref: ObjectRef, version: ObjectVersion) -> Outcome | _Work:
        if self._object_exists(change):
            # The key still has a current object: an older version was deleted or expired, a
            # delete marker was removed, or the key was written again since. Whatever the
            # event, the drive shows that object, so it is processed as created.
            return self._created(replace(change, kind=ChangeKind.CREATED, etag=None, size=None))
        with self.store.locked_document(ref) as current:
            if current is not None and sequencer_is_older(version.sequencer, current.sequencer):
                return Outcome(None, Result.IGNORED, "event is older than the stored state of this key")
            # A tombstone (also for a key never recorded) keeps the sequencer, so an older
            # Object Created still in flight cannot bring the file back.
            self.store.write_without_vector(ref, version, status=DocumentStatus.DELETED, reason="object deleted")
        return Outcome(None, Result.DELETED)

    def _object_exists(self, change: ObjectChange) -> bool:
        try:
            self.s3.head_object(Bucket=change.bucket, Key=change.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _embed(self, report: BatchReport, work: list[_Work]) -> None:
        """All chunks of all documents in one embed call (batched per document by the
        providers whose vectors depend on what shares a batch: see `embed_documents`).

        When the provider rejects the input, each document is sent alone so only the bad one
        fails. Any other error (rate limit, outage, timeout) would fail each of them again,
        so it fails the batch's documents at once, to be retried by SQS.
        """
        if not work:
            return
        try:
            self._check_time()
            vectors = embed_documents(self.embedder, [self._chunks(unit) for unit in work], timeout=self._time_left())
        except EmbeddingInputError:
            logger.warning("the provider rejected the batch; embedding document by document", exc_info=True)
            for unit in work:
                self._guarded(report, unit.item, unit.change, partial(self._embed_one, unit))
            return
        except Exception as exc:
            for unit in work:
                self._guarded(report, unit.item, unit.change, partial(_raise, exc))
            return
        for unit, unit_vectors in zip(work, vectors, strict=True):
            unit.vectors = unit_vectors

    def _embed_one(self, unit: _Work) -> Step:
        self._check_time()
        (unit.vectors,) = embed_documents(self.embedder, [self._chunks(unit)], timeout=self._time_left())
        return None

    def _time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _check_time(self, *, reserve: float = 0.0) -> None:
        left = self._time_left()
        if left is not None and left <= reserve:
            raise OutOfTimeError("the invocation ran out of time before this document; it will be retried")

    @staticmethod
    def _chunks(unit: _Work) -> list[Chunk]:
        assert unit.chunked is not None
        return unit.chunked.chunks

    def _write_embedded(self, unit: _Work) -> Outcome:
        assert unit.extracted is not None and unit.chunked is not None and unit.vectors is not None
        chunks = unit.chunked.chunks
        notes = [unit.extracted.note] if unit.extracted.note else []
        if unit.chunked.truncated:
            embedded_tokens = sum(c.token_count for c in chunks)
            notes.append(f"only the first {embedded_tokens} of {unit.chunked.total_tokens} tokens were embedded")
        note = "; ".join(notes) or None
        content = EmbeddedContent(
            content_sha256=unit.sha256,
            content_type=unit.extracted.content_type,
            title=unit.extracted.title,
            model=self.embedder.model,
            token_count=unit.chunked.total_tokens,
            chunks=chunks,
            chunk_vectors=unit.vectors,
            vector=document_vector(unit.vectors, [c.token_count for c in chunks]),
            note=note,
            author=unit.extracted.author,
            created=unit.extracted.created,
            page_count=unit.extracted.pages,
        )
        with self.store.locked_document(unit.ref) as current:
            if current is not None and sequencer_is_older(unit.version.sequencer, current.sequencer):
                return Outcome(unit.change, Result.IGNORED, "a newer event for this key was processed meanwhile")
            self.store.write_embedded(unit.ref, unit.version, content, replaces=current is not None)
        return Outcome(unit.change, Result.EMBEDDED, f"{len(chunks)} chunks" + (f"; {note}" if note else ""))

    def _record_failure(self, change: ObjectChange, reason: str) -> None:
        if change.workspace is None or change.kind is ChangeKind.DELETED:
            return
        ref = ObjectRef(change.workspace, change.bucket, change.key)
        version = ObjectVersion(change.etag, change.version_id, None, change.size)
        try:
            self._reconnecting(lambda: self.store.write_failure(ref, version, reason))
        except Exception:  # the database itself may be what failed; the log line stands
            logger.exception("could not record the failure of %s", change.key)
            self.store.rollback()
