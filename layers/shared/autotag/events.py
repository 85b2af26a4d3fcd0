"""Turn every event shape the embed function accepts into `ObjectChange`s.

Shapes (see DESIGN.md): an SQS batch whose bodies are EventBridge S3 events (production),
a raw EventBridge S3 event (`sam local invoke`), and a classic S3 `Records[]` notification,
direct or inside SQS. Powertools' data classes read the fields; this module decides what
they mean for us (kind, workspace, decoded key, event order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, S3EventBridgeNotificationEvent

CREATED_DETAIL_TYPE = "Object Created"
DELETED_DETAIL_TYPE = "Object Deleted"


class ChangeKind(StrEnum):
    CREATED = "created"
    DELETED = "deleted"


class EventParseError(ValueError):
    """The event (or one SQS message body) is not a shape the embed function understands."""


@dataclass(frozen=True)
class ObjectChange:
    """One object created or deleted in the documents bucket, with its key already decoded."""

    bucket: str
    key: str
    kind: ChangeKind
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    size: int | None = None

    @property
    def is_folder(self) -> bool:
        """A folder placeholder (the S3 console's "Create folder" writes `acme/reports/`), not a document."""
        return self.key.endswith("/")

    @property
    def workspace(self) -> str | None:
        """First path segment of the key; None when the key has no workspace segment."""
        head, sep, rest = self.key.partition("/")
        if not sep or not head or not rest or head in {".", ".."}:
            return None
        return head


def sequencer_is_older(candidate: str | None, stored: str | None) -> bool:
    """True when `candidate` was sequenced strictly before `stored` for the same key.

    S3 sequencers are hex strings of varying length; AWS documents comparing them after
    left-padding the shorter with zeros. A missing sequencer never wins or loses.
    """
    if not candidate or not stored:
        return False
    width = max(len(candidate), len(stored))
    return candidate.upper().rjust(width, "0") < stored.upper().rjust(width, "0")


def is_sqs_event(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and records[0].get("eventSource") == "aws:sqs"


def parse_sqs_body(body: str) -> list[ObjectChange]:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise EventParseError(f"SQS message body is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(payload, dict):
        raise EventParseError("SQS message body is JSON but not an object")
    return parse_notification(payload)


def parse_ingest_body(body: str, *, bucket: str) -> list[ObjectChange]:
    """An SQS body the embed function can act on, or EventParseError saying why it never can."""
    return attributable(parse_sqs_body(body), bucket=bucket)


def attributable(changes: list[ObjectChange], *, bucket: str) -> list[ObjectChange]:
    """`changes` if each names a document this deployment keeps, else EventParseError.

    A change for another bucket, or for a key outside any workspace, has no row to record a
    reason on: the message is rejected instead, so the reason is on it (log, then DLQ).
    """
    for change in changes:
        if change.bucket != bucket:
            raise EventParseError(f"event for bucket {change.bucket!r}, not the documents bucket {bucket!r}")
        if change.workspace is None and not change.is_folder:
            raise EventParseError(f"key {change.key!r} has no workspace segment (keys are <workspace>/<path>)")
    return changes


def parse_notification(payload: dict[str, Any]) -> list[ObjectChange]:
    """Parse one EventBridge S3 event or one classic S3 notification."""
    try:
        if payload.get("source") == "aws.s3" and "detail" in payload:
            return _from_eventbridge(S3EventBridgeNotificationEvent(payload))
        if isinstance(payload.get("Records"), list):
            return _from_classic(S3Event(payload))
        if payload.get("Event") == "s3:TestEvent":
            # S3 sends this once when a notification is configured; nothing to do.
            return []
    except EventParseError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EventParseError(f"malformed S3 event: missing or invalid field {exc}") from None
    raise EventParseError(
        "not an S3 event: expected an EventBridge event with source 'aws.s3' or a notification with Records[]"
    )


def _from_eventbridge(event: S3EventBridgeNotificationEvent) -> list[ObjectChange]:
    if event.detail_type == CREATED_DETAIL_TYPE:
        kind = ChangeKind.CREATED
    elif event.detail_type == DELETED_DETAIL_TYPE:
        kind = ChangeKind.DELETED
    else:
        raise EventParseError(f"unsupported S3 event type {event.detail_type!r}")
    obj = event.detail.object
    return [
        ObjectChange(
            bucket=event.detail.bucket.name,
            key=obj.key,  # Powertools URL-decodes EventBridge keys (AWS encodes them like classic ones)
            kind=kind,
            etag=obj.etag or None,
            version_id=_version(obj.get("version-id")),
            sequencer=obj.get("sequencer"),
            size=obj.size,
        )
    ]


def _from_classic(event: S3Event) -> list[ObjectChange]:
    changes = []
    for record in event.records:
        name = record.event_name
        if name.startswith("ObjectCreated:"):
            kind = ChangeKind.CREATED
        elif name.startswith("ObjectRemoved:"):
            kind = ChangeKind.DELETED
        else:
            raise EventParseError(f"unsupported S3 event type {name!r}")
        obj = record.s3.get_object
        changes.append(
            ObjectChange(
                bucket=record.s3.bucket.name,
                # classic notifications URL-encode keys form-style: '+' is a space, '%2B' a plus
                key=unquote_plus(obj.key),
                kind=kind,
                etag=obj.etag or None,
                version_id=_version(obj.version_id),
                sequencer=obj.get("sequencer"),
                size=obj.get("size"),
            )
        )
    return changes


def _version(value: object) -> str | None:
    # unversioned buckets report the literal string "null"
    return None if value in (None, "", "null") else str(value)


def object_created_event(
    bucket: str, key: str, *, etag: str, size: int, sequencer: str | None, event_id: str
) -> dict[str, Any]:
    """The EventBridge `Object Created` event S3 would send for `key`, for re-enqueueing it.

    The key is URL-encoded as AWS encodes it (the parser decodes it again). `sequencer` is the
    stored row's, if any: equal is not older, so the event is processed, and the row keeps its
    place in the key's event order.
    """
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "etag": etag}
    if sequencer:
        obj["sequencer"] = sequencer
    return {
        "version": "0",
        "id": event_id,
        "detail-type": CREATED_DETAIL_TYPE,
        "source": "aws.s3",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "reason": "AutotagReprocess"},
    }
