"""Tests for autotag.events: every event shape the embed function accepts becomes ObjectChanges.

Keys are URL-encoded form-style by AWS in both classic notifications and EventBridge events
(a space is `+`, a plus `%2B`); moto's raw EventBridge events carry the key unencoded and are
normalised by `autotag.local.stack.normalise_moto_event` before parsing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import pytest

from autotag.events import (
    ChangeKind,
    EventParseError,
    ObjectChange,
    is_sqs_event,
    parse_notification,
    parse_sqs_body,
    sequencer_is_older,
)
from autotag.local.stack import Sequencers, normalise_moto_event
from tests.conftest import load_event

BUCKET = "autotag-local-documents"
ETAG = "9b2cf535f27731c974343645a3985328"
SEQUENCER = "0055AED6DCD90281E5"
VERSION = "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"


# --- builders for each shape ------------------------------------------------------------


def aws_encode(key: str) -> str:
    """How AWS writes a key into an S3 event: form-style URL encoding, slashes kept."""
    return quote_plus(key, safe="/")


def eventbridge_event(
    encoded_key: str,
    *,
    detail_type: str = "Object Created",
    etag: str | None = ETAG,
    version_id: str | None = VERSION,
    sequencer: str | None = SEQUENCER,
    size: int | None = 42,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": encoded_key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["etag"] = etag
    if version_id is not None:
        obj["version-id"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-12T00:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "203.0.113.15",
            "reason": "PutObject",
        },
    }


def classic_record(
    encoded_key: str,
    *,
    event_name: str = "ObjectCreated:Put",
    etag: str | None = ETAG,
    version_id: str | None = None,
    sequencer: str | None = SEQUENCER,
    size: int | None = 42,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": encoded_key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-12T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
        "requestParameters": {"sourceIPAddress": "203.0.113.15"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "autotag-ingest",
            "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}},
            "object": obj,
        },
    }


def classic_notification(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def moto_eventbridge_body(raw_key: str) -> str:
    """The EventBridge event moto delivers: raw key, `eTag`, a constant sequencer."""
    return json.dumps(
        {
            "version": "0",
            "id": "f2f4e1b0-0000-0000-0000-000000000000",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": 1794974400.0,
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{BUCKET}"],
            "detail": {
                "version": "0",
                "bucket": {"name": BUCKET},
                "object": {
                    "key": raw_key,
                    "size": 42,
                    "eTag": ETAG,
                    "version-id": "null",
                    "sequencer": "617f08299329d189",
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "ObjectCreated",
            },
        }
    )


# --- the sample events in events/ ---------------------------------------------------------

SAMPLE_EVENTS: list[tuple[str, list[ObjectChange]]] = [
    (
        "eventbridge-object-created.json",
        [
            ObjectChange(
                bucket=BUCKET,
                key="demo/people/remote work policy.txt",
                kind=ChangeKind.CREATED,
                etag="b1946ac92492d2347c6235b4d2611184",
                version_id=VERSION,
                sequencer="0055AED6DCD90281E5",
                size=2291,
            )
        ],
    ),
    (
        "eventbridge-object-deleted.json",
        [
            ObjectChange(
                bucket=BUCKET,
                key="demo/engineering/search+indexing-design.md",
                kind=ChangeKind.DELETED,
                etag=None,
                version_id=None,
                sequencer="0055AED6DCD90281E6",
                size=None,
            )
        ],
    ),
    (
        "s3-object-created.json",
        [
            ObjectChange(
                bucket=BUCKET,
                key="demo/finance/payment reminder brightpath.txt",
                kind=ChangeKind.CREATED,
                etag="9b2cf535f27731c974343645a3985328",
                version_id=None,
                sequencer="0055AED6DCD90281E7",
                size=1530,
            )
        ],
    ),
    (
        "s3-object-deleted.json",
        [
            ObjectChange(
                bucket=BUCKET,
                key="demo/engineering/search+indexing-design.md",
                kind=ChangeKind.DELETED,
                etag=None,
                version_id=None,
                sequencer="0055AED6DCD90281E8",
                size=None,
            )
        ],
    ),
    (
        "sqs-eventbridge-batch.json",
        [
            ObjectChange(
                bucket=BUCKET,
                key="demo/legal/contrat-de-prestation-société.md",
                kind=ChangeKind.CREATED,
                etag="a3f1c2d4e5b6a7980f1e2d3c4b5a6978",
                version_id=VERSION,
                sequencer="0055AED6DCD90281F0",
                size=2750,
            ),
            ObjectChange(
                bucket=BUCKET,
                key="demo/finance/payment reminder brightpath.txt",
                kind=ChangeKind.CREATED,
                etag="9b2cf535f27731c974343645a3985328",
                version_id=VERSION,
                sequencer="0055AED6DCD90281F1",
                size=1530,
            ),
        ],
    ),
    (
        "sqs-s3-object-created.json",
        [
            ObjectChange(
                bucket=BUCKET,
                key="demo/engineering/load test results 2026-02.txt",
                kind=ChangeKind.CREATED,
                etag="5d41402abc4b2a76b9719d911017c592",
                version_id=None,
                sequencer="0055AED6DCD90281E7",
                size=2400,
            )
        ],
    ),
]


def parse_event_file(event: dict[str, Any]) -> list[ObjectChange]:
    if is_sqs_event(event):
        return [change for record in event["Records"] for change in parse_sqs_body(record["body"])]
    return parse_notification(event)


@pytest.mark.parametrize(("name", "expected"), SAMPLE_EVENTS, ids=[name for name, _ in SAMPLE_EVENTS])
def test_sample_event_files_parse_to_exact_changes(name: str, expected: list[ObjectChange]) -> None:
    assert parse_event_file(load_event(name)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sqs-eventbridge-batch.json", True),
        ("sqs-s3-object-created.json", True),
        ("cluster-request.json", True),
        ("eventbridge-object-created.json", False),
        ("eventbridge-object-deleted.json", False),
        ("s3-object-created.json", False),
        ("s3-object-deleted.json", False),
    ],
    ids=[
        "sqs-eventbridge",
        "sqs-classic",
        "sqs-cluster-request",
        "eb-created",
        "eb-deleted",
        "s3-created",
        "s3-deleted",
    ],
)
def test_is_sqs_event_for_sample_files(name: str, expected: bool) -> None:
    assert is_sqs_event(load_event(name)) is expected


@pytest.mark.parametrize(
    "event",
    [{}, {"Records": []}, {"Records": "nope"}, {"source": "aws.s3", "detail": {}}],
    ids=["empty-dict", "empty-records", "records-not-a-list", "eventbridge"],
)
def test_is_sqs_event_false_for_non_sqs_dicts(event: dict[str, Any]) -> None:
    assert is_sqs_event(event) is False


# --- awkward keys in every shape --------------------------------------------------------------

AWKWARD_KEYS = [
    "ws/a b.txt",
    "ws/a+b.txt",
    "ws/100% done.md",
    "ws/ünïcødé/файл.txt",
    "ws/deep/er/path/x.html",
    "ws/a %2B b+c.txt",
    "ws/q?x=1&y=2#frag.md",
]
KEY_IDS = ["space", "plus", "percent", "unicode", "nested", "literal-escape-text", "query-chars"]


def parse_eventbridge(key: str) -> list[ObjectChange]:
    return parse_notification(eventbridge_event(aws_encode(key)))


def parse_eventbridge_in_sqs(key: str) -> list[ObjectChange]:
    return parse_sqs_body(json.dumps(eventbridge_event(aws_encode(key))))


def parse_classic(key: str) -> list[ObjectChange]:
    return parse_notification(classic_notification(classic_record(aws_encode(key))))


def parse_classic_in_sqs(key: str) -> list[ObjectChange]:
    return parse_sqs_body(json.dumps(classic_notification(classic_record(aws_encode(key)))))


def parse_moto(key: str) -> list[ObjectChange]:
    return parse_notification(json.loads(normalise_moto_event(moto_eventbridge_body(key), "00A1")))


def parse_moto_in_sqs(key: str) -> list[ObjectChange]:
    return parse_sqs_body(normalise_moto_event(moto_eventbridge_body(key), "00A1"))


Parser = Callable[[str], list[ObjectChange]]

SHAPES: list[Parser] = [
    parse_eventbridge,
    parse_eventbridge_in_sqs,
    parse_classic,
    parse_classic_in_sqs,
    parse_moto,
    parse_moto_in_sqs,
]
SHAPE_IDS = ["eventbridge", "sqs-eventbridge", "classic", "sqs-classic", "moto", "sqs-moto"]


@pytest.mark.parametrize("key", AWKWARD_KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("parse", SHAPES, ids=SHAPE_IDS)
def test_awkward_keys_decode_to_original_in_every_shape(parse: Parser, key: str) -> None:
    changes = parse(key)
    assert [change.key for change in changes] == [key]
    assert changes[0].bucket == BUCKET
    assert changes[0].kind is ChangeKind.CREATED
    assert changes[0].etag == ETAG
    assert changes[0].workspace == "ws"


def test_encoding_actually_differs_from_raw_keys() -> None:
    # Guards the test above: the keys must really exercise decoding.
    assert all(aws_encode(key) != key for key in AWKWARD_KEYS if key != "ws/deep/er/path/x.html")


def test_moto_event_is_normalised_to_aws_field_names() -> None:
    event = json.loads(normalise_moto_event(moto_eventbridge_body("ws/a b.txt"), "00A1"))
    obj = event["detail"]["object"]
    assert "eTag" not in obj
    assert obj["etag"] == ETAG
    assert obj["key"] == "ws/a+b.txt"
    assert obj["sequencer"] == "00A1"
    [change] = parse_notification(event)
    assert change.version_id is None  # moto reports "null" for unversioned buckets


@pytest.mark.parametrize(
    ("detail_type", "kind"),
    [("Object Created", ChangeKind.CREATED), ("Object Deleted", ChangeKind.DELETED)],
    ids=["created", "deleted"],
)
def test_eventbridge_detail_type_sets_kind(detail_type: str, kind: ChangeKind) -> None:
    [change] = parse_notification(eventbridge_event("ws/x.txt", detail_type=detail_type))
    assert change.kind is kind


@pytest.mark.parametrize(
    ("event_name", "kind"),
    [
        ("ObjectCreated:Put", ChangeKind.CREATED),
        ("ObjectCreated:CompleteMultipartUpload", ChangeKind.CREATED),
        ("ObjectCreated:Copy", ChangeKind.CREATED),
        ("ObjectRemoved:Delete", ChangeKind.DELETED),
        ("ObjectRemoved:DeleteMarkerCreated", ChangeKind.DELETED),
    ],
    ids=["put", "multipart", "copy", "delete", "delete-marker"],
)
def test_classic_event_name_sets_kind(event_name: str, kind: ChangeKind) -> None:
    [change] = parse_notification(classic_notification(classic_record("ws/x.txt", event_name=event_name)))
    assert change.kind is kind


def test_classic_notification_with_several_records_keeps_order() -> None:
    event = classic_notification(
        classic_record("ws/first.txt", sequencer="01"),
        classic_record("ws/second+file.txt", event_name="ObjectRemoved:Delete", sequencer="02"),
    )
    changes = parse_notification(event)
    assert [(c.key, c.kind, c.sequencer) for c in changes] == [
        ("ws/first.txt", ChangeKind.CREATED, "01"),
        ("ws/second file.txt", ChangeKind.DELETED, "02"),
    ]


@pytest.mark.parametrize(
    ("version", "expected"),
    [("null", None), ("", None), ("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")],
    ids=["literal-null", "empty", "real-version"],
)
def test_version_id_null_means_unversioned(version: str, expected: str | None) -> None:
    [eb] = parse_notification(eventbridge_event("ws/x.txt", version_id=version))
    [classic] = parse_notification(classic_notification(classic_record("ws/x.txt", version_id=version)))
    assert eb.version_id == expected
    assert classic.version_id == expected


def test_missing_optional_fields_become_none() -> None:
    [change] = parse_notification(eventbridge_event("ws/x.txt", etag=None, version_id=None, sequencer=None, size=None))
    assert (change.etag, change.version_id, change.sequencer, change.size) == (None, None, None, None)


# --- workspace ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "workspace"),
    [
        ("demo/people/policy.txt", "demo"),
        ("ws/x.txt", "ws"),
        ("ws/deep/er/path/x.html", "ws"),
        ("ünïcødé ws/файл.txt", "ünïcødé ws"),
        ("no-workspace.txt", None),
        ("/leading.txt", None),
        ("ws/", None),
        ("../x.txt", None),
        ("./x.txt", None),
        ("", None),
    ],
    ids=[
        "two-levels",
        "simple",
        "nested",
        "unicode",
        "no-folder",
        "leading-slash",
        "folder-only",
        "parent-dir",
        "current-dir",
        "empty",
    ],
)
def test_workspace_is_first_segment(key: str, workspace: str | None) -> None:
    assert ObjectChange(bucket=BUCKET, key=key, kind=ChangeKind.CREATED).workspace == workspace


# --- sequencer ordering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "stored", "older"),
    [
        ("0A", "00B", True),
        ("00B", "0A", False),
        ("A", "0000B", True),
        ("FF", "100", True),
        ("100", "FF", False),
        ("0a", "0B", True),
        ("0b", "0A", False),
        ("0055aed6dcd90281e5", "0055AED6DCD90281E6", True),
        ("0A", "0A", False),
        ("0A", "000A", False),
        ("000a", "0A", False),
        (None, "0A", False),
        ("0A", None, False),
        (None, None, False),
        ("", "0A", False),
    ],
    ids=[
        "shorter-padded-older",
        "shorter-padded-newer",
        "much-shorter",
        "ff-before-100",
        "100-after-ff",
        "lowercase-older",
        "lowercase-newer",
        "mixed-case-real-sequencers",
        "equal",
        "equal-after-padding",
        "equal-after-padding-mixed-case",
        "candidate-none",
        "stored-none",
        "both-none",
        "candidate-empty",
    ],
)
def test_sequencer_is_older(candidate: str | None, stored: str | None, older: bool) -> None:
    assert sequencer_is_older(candidate, stored) is older


# --- errors -------------------------------------------------------------------------------------


def test_sqs_body_not_json() -> None:
    with pytest.raises(EventParseError, match="not JSON"):
        parse_sqs_body("{not json")


@pytest.mark.parametrize(
    "body", ["[]", "[1, 2]", '"text"', "42", "null"], ids=["empty-list", "list", "string", "number", "null"]
)
def test_sqs_body_json_but_not_object(body: str) -> None:
    with pytest.raises(EventParseError, match="not an object"):
        parse_sqs_body(body)


def test_unknown_eventbridge_detail_type() -> None:
    with pytest.raises(EventParseError, match="Object Restore Completed"):
        parse_notification(eventbridge_event("ws/x.txt", detail_type="Object Restore Completed"))


@pytest.mark.parametrize(
    "event",
    [
        eventbridge_event("ws/x.txt", detail_type="Object Restore Completed"),
        classic_notification(classic_record("ws/x.txt", event_name="ObjectRestore:Post")),
    ],
    ids=["eventbridge", "classic"],
)
def test_unsupported_type_message_is_not_reported_as_malformed(event: dict[str, Any]) -> None:
    with pytest.raises(EventParseError) as info:
        parse_notification(event)
    assert str(info.value).startswith("unsupported S3 event type")


def test_unknown_classic_event_name() -> None:
    event = classic_notification(classic_record("ws/x.txt", event_name="ObjectRestore:Post"))
    with pytest.raises(EventParseError, match="ObjectRestore:Post"):
        parse_notification(event)


def test_unknown_event_type_inside_sqs_body() -> None:
    body = json.dumps(classic_notification(classic_record("ws/x.txt", event_name="ObjectRestore:Completed")))
    with pytest.raises(EventParseError, match="ObjectRestore:Completed"):
        parse_sqs_body(body)


def test_eventbridge_missing_object_key() -> None:
    event = eventbridge_event("ws/x.txt")
    del event["detail"]["object"]["key"]
    with pytest.raises(EventParseError, match=r"malformed S3 event.*'key'"):
        parse_notification(event)


def test_classic_missing_object_key() -> None:
    record = classic_record("ws/x.txt")
    del record["s3"]["object"]["key"]
    with pytest.raises(EventParseError, match=r"malformed S3 event.*'key'"):
        parse_notification(classic_notification(record))


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"hello": "world"},
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        {"source": "aws.s3"},
    ],
    ids=["empty", "unrelated", "scheduled-event", "s3-source-without-detail"],
)
def test_not_an_s3_event(event: dict[str, Any]) -> None:
    with pytest.raises(EventParseError, match="not an S3 event"):
        parse_notification(event)


def test_event_parse_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not an S3 event"):
        parse_notification({})


S3_TEST_EVENT: dict[str, Any] = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2026-11-12T00:00:00.000Z",
    "Bucket": BUCKET,
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def test_s3_test_event_yields_nothing() -> None:
    assert parse_notification(S3_TEST_EVENT) == []


def test_s3_test_event_in_sqs_yields_nothing() -> None:
    assert parse_sqs_body(json.dumps(S3_TEST_EVENT)) == []


def test_local_sequencers_are_fixed_per_message_and_grow() -> None:
    sequencers = Sequencers()

    first, second = sequencers("message-1"), sequencers("message-2")

    assert sequencers("message-1") == first  # a redelivery keeps its place in the order
    assert sequencer_is_older(first, second)
    assert sequencer_is_older("0055AED6DCD90281E5", first)  # the sample events sort earlier


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"detail": 7}', '{"detail": {"object": "x"}}', "null"])
def test_a_body_that_is_not_an_s3_event_passes_the_local_normaliser_unchanged(body: str) -> None:
    """The local poller must not crash on it: the handler rejects it, with the reason."""
    assert normalise_moto_event(body, "00A1") == body
