"""Reconcile the documents bucket against the database, one workspace at a time.

What it finds for each key of a workspace, and what it does:

- missing: an object with no row, or only a tombstone (its Object Created event was lost)
  → re-enqueued;
- stale: a row whose ETag is not the object's current one (an overwrite's event was lost)
  → re-enqueued. The listing gives ETags, not version ids: a new version with the same bytes
  keeps its ETag and needs no new vectors (and a multipart upload of the same bytes, whose
  ETag differs, is found unchanged by its content hash);
- other model: a row embedded by another model than the configured one → re-enqueued, so it
  is embedded again (clustering leaves it out meanwhile);
- gone: a row of an object no longer in the bucket (its Object Deleted was lost) → tombstoned,
  as the embed path does for a delete.

A failed row of an unchanged object is counted and left alone: its message is in the ingest
DLQ, whose redrive caps the retries; re-enqueueing it here would retry it forever.

Re-enqueueing sends IngestQueue the EventBridge `Object Created` event S3 would have sent, so
the embed function does the work with all its rules (ETag, content hash, model, sequencer).
A duplicate (the object's own event was only late) costs one cheap "unchanged".

The listing and the rows are walked together in key order (S3 lists keys in UTF-8 byte order,
which is Python's string order and PostgreSQL's COLLATE "C"), a page at a time, and the last
key compared is saved after every page. So one key is the cursor of both walks, and a pass over
a bucket too large for one invocation continues in the next one where this one stopped.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from autotag.events import ChangeKind, ObjectChange, object_created_event
from autotag.store import DocumentStatus, ObjectRef, ObjectVersion, RowState, Store

logger = logging.getLogger(__name__)

SQS_BATCH = 10
# Workspace prefixes asked of S3 per call while looking for the next workspace.
PREFIX_PAGE = 100


class ReconcileError(RuntimeError):
    """A repair could not be made; the page is not marked done, so the next pass redoes it."""


class Finding(StrEnum):
    MISSING = "missing"
    STALE = "stale"
    OTHER_MODEL = "other_model"
    GONE = "gone"
    FAILED = "failed"  # left to the DLQ redrive


@dataclass
class ReconcileCounts:
    pages: int = 0
    objects: int = 0  # objects listed and compared
    rows: int = 0  # rows compared (tombstones included)
    missing: int = 0
    stale: int = 0
    other_model: int = 0
    gone: int = 0
    failed: int = 0
    enqueued: int = 0
    tombstoned: int = 0

    def add(self, finding: Finding) -> None:
        setattr(self, finding.value, getattr(self, finding.value) + 1)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str
    size: int


class Reconciler:
    def __init__(
        self,
        store: Store,
        s3: Any,
        sqs: Any,
        *,
        bucket: str,
        ingest_queue_url: str,
        model: str,
        page_size: int,
        deadline: float | None,
    ) -> None:
        """`deadline` (time.monotonic()) is when to stop starting pages; one page always runs."""
        self.store = store
        self.s3 = s3
        self.sqs = sqs
        self.bucket = bucket
        self.ingest_queue_url = ingest_queue_url
        self.model = model
        self.page_size = page_size
        self.deadline = deadline
        self.counts = ReconcileCounts()
        self.completed: list[str] = []  # workspaces whose pass finished in this invocation
        self.tombstoned_in: set[str] = set()  # workspaces whose categories may need a recompute

    # --- passes ----------------------------------------------------------------------

    def sweep(self) -> bool:
        """Reconcile every workspace, continuing an unfinished sweep. True when it finished."""
        position = self.store.sweep_position(self.bucket)
        while True:
            workspace = self._next_workspace(position)
            if workspace is None:
                self.store.save_sweep_position(self.bucket, None)
                return True
            if not self.reconcile_workspace(workspace):
                return False
            position = f"{workspace}/"
            self.store.save_sweep_position(self.bucket, position)

    def reconcile_workspace(self, workspace: str) -> bool:
        """Reconcile one workspace, continuing where an unfinished pass stopped. True when it finished."""
        cursor = self.store.reconcile_cursor(workspace, self.bucket)
        while self._may_start_page():
            cursor, done = self._page(workspace, cursor)
            self.store.save_reconcile_cursor(workspace, self.bucket, None if done else cursor)
            if done:
                self.completed.append(workspace)
                return True
        logger.info("out of time in %s; the next pass continues after %r", workspace, cursor)
        return False

    def _may_start_page(self) -> bool:
        # The first page always runs, so every invocation moves the pass on.
        return self.counts.pages == 0 or self.deadline is None or time.monotonic() < self.deadline

    # --- one page ----------------------------------------------------------------------

    def _page(self, workspace: str, cursor: str | None) -> tuple[str | None, bool]:
        """Compare the next keys after `cursor`; returns the new cursor and whether the workspace is done."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{workspace}/", "MaxKeys": self.page_size}
        if cursor is not None:
            request["StartAfter"] = cursor
        listing = self.s3.list_objects_v2(**request)
        objects = [
            ListedObject(o["Key"], str(o.get("ETag", "")).strip('"'), int(o.get("Size", 0)))
            for o in listing.get("Contents", [])
        ]
        # While S3 has more, this page covers keys up to its last one; the rows are bounded alike.
        upper = objects[-1].key if listing.get("IsTruncated") else None
        rows = self.store.rows_in_key_order(workspace, self.bucket, after=cursor, upto=upper, limit=self.page_size)
        if len(rows) == self.page_size:
            upper = rows[-1].key
        # Keys the embed path ignores (folder placeholders such as "<workspace>/reports/").
        objects = [
            o for o in objects if (upper is None or o.key <= upper) and _workspace_of(self.bucket, o.key) == workspace
        ]
        self.counts.pages += 1
        self.counts.objects += len(objects)
        self.counts.rows += len(rows)
        self._compare(workspace, objects, rows)
        return upper, upper is None

    def _compare(self, workspace: str, objects: list[ListedObject], rows: list[RowState]) -> None:
        listed = {o.key: o for o in objects}
        stored = {r.key: r for r in rows}
        to_enqueue: list[tuple[ListedObject, RowState | None]] = []
        for key in sorted(listed.keys() | stored.keys()):
            obj, row = listed.get(key), stored.get(key)
            finding = self._classify(obj, row)
            if finding is None:
                continue
            self.counts.add(finding)
            logger.info("%s: %s", finding.value, key, extra={"finding": finding.value, "workspace": workspace})
            if finding is Finding.GONE:
                assert row is not None
                self._tombstone(ObjectRef(workspace, self.bucket, key), row)
            elif finding is not Finding.FAILED:
                assert obj is not None
                to_enqueue.append((obj, row))
        self._enqueue(to_enqueue)

    def _classify(self, obj: ListedObject | None, row: RowState | None) -> Finding | None:
        if obj is None:
            return None if row is None or row.status == DocumentStatus.DELETED else Finding.GONE
        if row is None or row.status == DocumentStatus.DELETED:
            return Finding.MISSING
        # The listed version's own attempt failed: its DLQ message and the redrive's cap
        # decide whether it is tried again, not every reconcile pass.
        if row.failed_etag is not None and row.failed_etag == obj.etag:
            return Finding.FAILED
        if row.etag != obj.etag:
            return Finding.STALE
        if row.status == DocumentStatus.FAILED:
            return Finding.FAILED
        if row.status == DocumentStatus.EMBEDDED and row.model != self.model:
            return Finding.OTHER_MODEL
        return None

    # --- repairs -------------------------------------------------------------------------

    def _enqueue(self, items: list[tuple[ListedObject, RowState | None]]) -> None:
        for start in range(0, len(items), SQS_BATCH):
            chunk = items[start : start + SQS_BATCH]
            entries = [
                {"Id": str(i), "MessageBody": json.dumps(self._event(obj, row))} for i, (obj, row) in enumerate(chunk)
            ]
            response = self.sqs.send_message_batch(QueueUrl=self.ingest_queue_url, Entries=entries)
            self.counts.enqueued += len(response.get("Successful", []))
            if response.get("Failed"):
                # Raising keeps the cursor before this page: the next pass finds these keys again.
                raise ReconcileError(f"could not enqueue {len(response['Failed'])} objects: {response['Failed'][0]}")

    def _event(self, obj: ListedObject, row: RowState | None) -> dict[str, Any]:
        sequencer = row.sequencer if row is not None else None
        return object_created_event(
            self.bucket, obj.key, etag=obj.etag, size=obj.size, sequencer=sequencer, event_id=str(uuid.uuid4())
        )

    def _tombstone(self, ref: ObjectRef, seen: RowState) -> None:
        with self.store.locked_document(ref) as current:
            if current is None or (current.status, current.etag) != (seen.status, seen.etag):
                # The embed path wrote the key since the page was read: its events decide.
                return
            if self._still_listed(ref.key):
                # Uploaded (and maybe embedded) between the listing and the row read: not gone.
                return
            # The row's own sequencer stays: an upload made after the listing comes with a
            # newer one, so its event still brings the object back.
            version = ObjectVersion(None, None, current.sequencer, None)
            reason = "object no longer in the bucket (found by reprocessing)"
            self.store.write_without_vector(ref, version, status=DocumentStatus.DELETED, reason=reason)
        self.counts.tombstoned += 1
        self.tombstoned_in.add(ref.workspace)

    def _still_listed(self, key: str) -> bool:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(o["Key"] == key for o in listing.get("Contents", []))

    # --- workspaces ------------------------------------------------------------------------

    def _next_workspace(self, after_prefix: str | None) -> str | None:
        """The first workspace, in key-prefix order, after `after_prefix`: in S3 or in the database."""
        candidates = [f"{w}/" for w in self.store.workspaces_after(after_prefix, 1)]
        s3_prefix = self._next_s3_prefix(after_prefix)
        if s3_prefix is not None:
            candidates.append(s3_prefix)
        return min(candidates)[:-1] if candidates else None

    def _next_s3_prefix(self, after_prefix: str | None) -> str | None:
        request: dict[str, Any] = {"Bucket": self.bucket, "Delimiter": "/", "MaxKeys": PREFIX_PAGE}
        if after_prefix is not None:
            # Every key under "<w>/" sorts before "<w>0" ('0' follows '/'): start after all of them.
            request["StartAfter"] = after_prefix[:-1] + "0"
        while True:
            listing = self.s3.list_objects_v2(**request)
            prefixes = sorted(p["Prefix"] for p in listing.get("CommonPrefixes", []))
            valid = [p for p in prefixes if _workspace_of(self.bucket, f"{p}x") == p[:-1]]
            if valid:
                return str(valid[0])
            if not listing.get("IsTruncated"):
                return None
            request["ContinuationToken"] = listing["NextContinuationToken"]


def _workspace_of(bucket: str, key: str) -> str | None:
    """The workspace the embed path would file `key` under (None for keys it ignores)."""
    change = ObjectChange(bucket, key, ChangeKind.CREATED)
    return None if change.is_folder else change.workspace
