"""Bad input, one test per row of the README's "Bad input and what happens to it" table.

Each test sends a mixed SQS batch through the real EmbedFunction (functions/embed/app.py) against
moto S3/SQS, a real PostgreSQL and the real `openai` client talking to the local
OpenAI-compatible server, and checks three things: the reason is recorded where the table says,
the good document of the same batch is embedded, and nothing else changed (no other row, no
other record of the batch failed). Each test carries the case id of its table row; the last
test checks that the table and the tests list the same cases.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from autotag.events import EventParseError, object_created_event, parse_ingest_body
from autotag.local.driver import dead_letters
from autotag.redrive import PARKED_REASON
from autotag.runtime import get_runtime, reset_runtime
from tests.aws import BUCKET, FakeAWS, fake_aws, invoke, query
from tests.conftest import ROOT
from tests.reprocess_support import reprocess_stack
from tests.support.openai_server import CHAT_COMPLETIONS_PATH, FakeOpenAIServer
from tests.test_chat_labels import INJECTION, obedient_model
from tests.test_labels import INVOICES, LEASES

F = TypeVar("F", bound=Callable[..., None])
CASES: dict[str, str] = {}  # case id -> test function name


def case(case_id: str) -> Callable[[F], F]:
    """Ties a test to its row of the README table (the row starts with the id in backticks)."""

    def mark(test: F) -> F:
        assert case_id not in CASES, f"case {case_id!r} has two tests"
        CASES[case_id] = test.__name__
        return test

    return mark


MAX_OBJECT_BYTES = 64 * 1024
GOOD = "acme/finance/invoice-0112.txt"
GOOD_TEXT = b"Invoice INV-2025-0112 is overdue. Please pay the outstanding balance by bank transfer."
BYSTANDER = "other/notes/meeting.txt"  # another workspace, embedded before every test


@pytest.fixture
def aws(openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    monkeypatch.setenv("AUTOTAG_MAX_OBJECT_BYTES", str(MAX_OBJECT_BYTES))
    with fake_aws(monkeypatch) as aws:
        aws.put(GOOD, GOOD_TEXT)
        aws.put(BYSTANDER, b"Meeting notes: the team agreed the release plan and the on-call rota.")
        assert failed_ids(invoke("embed", batch(created(aws, BYSTANDER)))) == []
        aws.cluster_requests()  # the bystander's, taken off the queue
        yield aws


def created(aws: FakeAWS, key: str, *, bucket: str = BUCKET, size: bool = True) -> str:
    """The EventBridge `Object Created` body S3 sends for `key` (key URL-encoded as AWS does)."""
    head: dict[str, Any] = (
        aws.s3.head_object(Bucket=BUCKET, Key=key) if bucket == BUCKET else {"ETag": '"0"', "ContentLength": 1}
    )
    event = object_created_event(
        bucket,
        key,
        etag=str(head["ETag"]).strip('"'),
        size=int(head["ContentLength"]),
        sequencer="0055AED6DCD90281E5",
        event_id=f"event-{key}",
    )
    if not size:
        del event["detail"]["object"]["size"]
    return json.dumps(event)


def batch(*bodies: str) -> dict[str, Any]:
    """An SQS batch as Lambda's event source mapping delivers it; message ids are message-0, 1, ..."""
    return {
        "Records": [
            {
                "messageId": f"message-{i}",
                "receiptHandle": f"handle-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:IngestQueue",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def rows() -> dict[tuple[str, str], tuple[Any, ...]]:
    """Every document row, by (workspace, key): what a bad record must not touch."""
    found = query(
        "SELECT workspace, key, bucket, status, reason, etag, embedded_at, updated_at, (embedding IS NOT NULL)"
        " FROM documents"
    )
    return {(row[0], row[1]): tuple(row[2:]) for row in found}


def row(key: str) -> dict[str, Any]:
    [(workspace, status, reason, has_vector)] = query(
        "SELECT workspace, status, reason, (embedding IS NOT NULL) FROM documents WHERE key = %s", key
    )
    return {"workspace": workspace, "status": status, "reason": reason, "has_vector": has_vector}


def run(aws: FakeAWS, bodies: list[str], changed: set[str]) -> dict[str, Any]:
    """Invoke the embed function on GOOD's event and `bodies`; check GOOD is embedded and only `changed` moved."""
    before = rows()
    response = invoke("embed", batch(created(aws, GOOD), *bodies))
    after = rows()
    assert row(GOOD)["status"] == "embedded" and row(GOOD)["has_vector"]
    untouched = {k: v for k, v in after.items() if k[1] not in changed | {GOOD}}
    assert untouched == {k: v for k, v in before.items() if k[1] not in changed | {GOOD}}
    return response


def rejected(caplog: pytest.LogCaptureFixture, message_id: str) -> str:
    """The reason of the "rejected message" log line for `message_id` (the operator's log view)."""
    lines = [
        r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "rejected message" in r.getMessage()
    ]
    [line] = [line for line in lines if line.startswith(f"rejected message {message_id}: ")]
    return line.removeprefix(f"rejected message {message_id}: ")


def get_object_calls() -> list[dict[str, Any]]:
    """Records the parameters of every GetObject the embed function's S3 client sends from now on."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    get_runtime().s3.meta.events.register("before-parameter-build.s3.GetObject", record)
    return calls


# --- documents: the reason is on the document's row ------------------------------------


@case("empty-object")
def test_an_empty_object_is_skipped_as_empty(aws: FakeAWS) -> None:
    aws.put("acme/empty.txt", b"")

    response = run(aws, [created(aws, "acme/empty.txt")], {"acme/empty.txt"})

    assert failed_ids(response) == []
    assert row("acme/empty.txt") == {
        "workspace": "acme",
        "status": "skipped",
        "reason": "empty document",
        "has_vector": False,
    }


@case("binary-with-text-extension")
def test_binary_garbage_named_txt_is_skipped_as_binary(aws: FakeAWS) -> None:
    garbage = random.Random(4).randbytes(8192)
    aws.put("acme/notes/garbage.txt", garbage)

    response = run(aws, [created(aws, "acme/notes/garbage.txt")], {"acme/notes/garbage.txt"})

    assert failed_ids(response) == []
    skipped = row("acme/notes/garbage.txt")
    assert skipped["status"] == "skipped" and skipped["reason"] == "unsupported file type: binary content"


@case("invalid-utf8")
def test_text_that_is_not_utf8_is_embedded_with_a_note(aws: FakeAWS) -> None:
    menu = "Menu for the staff party: café crème, crêpes, brûlée and gâteau. Bon appétit à tous."
    aws.put("acme/menu.txt", menu.encode("cp1252"))  # a legacy code page throughout
    broken = "Résumé of the naïve café review — déjà vu".encode() + b"\xe9" + b" fin " + "é".encode()[:1]
    aws.put("acme/review.txt", broken)  # UTF-8 with a stray Latin-1 byte and a cut character

    response = run(
        aws, [created(aws, "acme/menu.txt"), created(aws, "acme/review.txt")], {"acme/menu.txt", "acme/review.txt"}
    )

    assert failed_ids(response) == []
    menu_row, review_row = row("acme/menu.txt"), row("acme/review.txt")
    assert menu_row["status"] == review_row["status"] == "embedded"
    assert menu_row["reason"].startswith("not valid UTF-8: read as a legacy 8-bit encoding")
    assert review_row["reason"] == "not valid UTF-8: 2 invalid byte sequence(s) replaced"
    texts = dict(
        query("SELECT d.key, c.text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.workspace = 'acme'")
    )
    assert "café crème" in texts["acme/menu.txt"] and "brûlée" in texts["acme/menu.txt"]  # decoded, not mangled
    assert "naïve café review — déjà vu\ufffd fin" in texts["acme/review.txt"]


@case("over-size-limit")
def test_an_object_over_the_size_limit_is_never_read_whole(aws: FakeAWS) -> None:
    large = b"Quarterly ledger line.\n" * (MAX_OBJECT_BYTES // 10)  # about 150 KB
    aws.put("acme/ledger.txt", large)
    aws.put("acme/ledger-copy.txt", large)
    calls = get_object_calls()

    # The first event carries the object's size (S3's always do); the second lacks it.
    response = run(
        aws,
        [created(aws, "acme/ledger.txt"), created(aws, "acme/ledger-copy.txt", size=False)],
        {"acme/ledger.txt", "acme/ledger-copy.txt"},
    )

    assert failed_ids(response) == []
    reason = f"over the size limit: object is {len(large)} bytes, AUTOTAG_MAX_OBJECT_BYTES={MAX_OBJECT_BYTES}"
    for key in ("acme/ledger.txt", "acme/ledger-copy.txt"):
        assert row(key) == {"workspace": "acme", "status": "skipped", "reason": reason, "has_vector": False}
    fetched = {call["Key"]: call.get("Range") for call in calls}
    assert "acme/ledger.txt" not in fetched  # decided from the event: no GetObject at all
    assert fetched["acme/ledger-copy.txt"] == f"bytes=0-{MAX_OBJECT_BYTES}"  # a bounded read
    assert all(call.get("Range") for call in calls)  # the good document too: every read is bounded


@case("awkward-key")
def test_keys_with_spaces_plus_percent_and_unicode_are_stored_decoded(aws: FakeAWS) -> None:
    keys = [
        "acme/q3 report + notes (draft).txt",
        "acme/100% done & dusted.md",
        "acme/ünïcödé/日本語 メモ.txt",
        "acme/résumé%2Bfinal.txt",  # a literal "%2B" in the name
    ]
    for i, key in enumerate(keys):
        aws.put(key, f"Document {i}: the project status report for the third quarter.".encode())

    response = run(aws, [created(aws, key) for key in keys], set(keys))

    assert failed_ids(response) == []
    stored = {key for (key,) in query("SELECT key FROM documents WHERE workspace = 'acme' AND status = 'embedded'")}
    assert stored == {*keys, GOOD}


@case("dot-dot-key")
def test_a_key_with_dot_dot_is_stored_literally_in_its_own_workspace(aws: FakeAWS) -> None:
    sneaky = "acme/../other/notes/meeting.txt"  # reads like the bystander's path; S3 keys are names
    aws.put(sneaky, b"Quarterly planning notes for the acme team.")

    response = run(aws, [created(aws, sneaky)], {sneaky})

    assert failed_ids(response) == []
    assert row(sneaky) == {"workspace": "acme", "status": "embedded", "reason": None, "has_vector": True}
    assert query("SELECT count(*) FROM documents WHERE workspace = 'other'") == [(1,)]


@case("folder-placeholder")
def test_a_folder_placeholder_is_ignored(aws: FakeAWS, caplog: pytest.LogCaptureFixture) -> None:
    aws.put("acme/reports/", b"")
    aws.put("acme/", b"")
    caplog.set_level(logging.INFO, logger="autotag")

    response = run(aws, [created(aws, "acme/reports/"), created(aws, "acme/")], set())

    assert failed_ids(response) == []
    assert query("SELECT count(*) FROM documents WHERE right(key, 1) = '/'") == [(0,)]
    ignored = [r for r in caplog.records if r.getMessage() in ("ignored acme/reports/", "ignored acme/")]
    assert len(ignored) == 2
    assert {getattr(r, "reason", None) for r in ignored} == {
        "folder placeholder (the key ends with '/'), not a document"
    }


# --- records no document row can carry: rejected, the reason is on the message -------------


def assert_parked_reason(body: str, reason: str) -> None:
    """What ReprocessFunction's redrive would park the dead-lettered message with (see the not-JSON case)."""
    with pytest.raises(EventParseError) as raised:
        parse_ingest_body(body, bucket=BUCKET)
    assert str(raised.value) == reason


@case("no-workspace")
def test_a_key_without_a_workspace_is_rejected(aws: FakeAWS, caplog: pytest.LogCaptureFixture) -> None:
    aws.put("loose-file.txt", b"A file at the top of the bucket.")
    aws.put("../escape.txt", b"A file whose first segment is '..'.")
    bodies = [created(aws, "loose-file.txt"), created(aws, "../escape.txt")]

    response = run(aws, bodies, set())

    assert failed_ids(response) == ["message-1", "message-2"]
    reasons = {
        "message-1": "key 'loose-file.txt' has no workspace segment (keys are <workspace>/<path>)",
        "message-2": "key '../escape.txt' has no workspace segment (keys are <workspace>/<path>)",
    }
    for (message_id, reason), body in zip(reasons.items(), bodies, strict=True):
        assert rejected(caplog, message_id) == reason
        assert_parked_reason(body, reason)
    assert query("SELECT count(*) FROM documents WHERE key IN ('loose-file.txt', '../escape.txt')") == [(0,)]


@case("other-bucket")
def test_an_event_for_another_bucket_is_rejected_unread(aws: FakeAWS, caplog: pytest.LogCaptureFixture) -> None:
    calls = get_object_calls()
    body = created(aws, "acme/finance/invoice-0112.txt", bucket="someone-elses-bucket")

    response = run(aws, [body], set())

    assert failed_ids(response) == ["message-1"]
    reason = "event for bucket 'someone-elses-bucket', not the documents bucket 'autotag-local-documents'"
    assert rejected(caplog, "message-1") == reason
    assert_parked_reason(body, reason)
    assert {call["Bucket"] for call in calls} == {BUCKET}  # never fetched from the other bucket
    assert query("SELECT count(*) FROM documents WHERE bucket <> %s", BUCKET) == [(0,)]


@case("malformed-event")
def test_a_malformed_or_truncated_event_is_rejected(aws: FakeAWS, caplog: pytest.LogCaptureFixture) -> None:
    aws.put("acme/plan.txt", b"The project plan for the next quarter.")
    whole = created(aws, "acme/plan.txt")
    event = json.loads(whole)
    del event["detail"]["object"]["key"]
    bodies = [json.dumps(event), whole[: len(whole) // 2]]

    response = run(aws, bodies, set())

    assert failed_ids(response) == ["message-1", "message-2"]
    assert rejected(caplog, "message-1") == "malformed S3 event: missing or invalid field 'key'"
    assert rejected(caplog, "message-2").startswith("SQS message body is not JSON: ")
    assert query("SELECT count(*) FROM documents WHERE key = 'acme/plan.txt'") == [(0,)]


@case("not-json")
def test_a_body_that_is_not_json_is_dead_lettered_and_parked_with_its_reason(
    openai_env: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole path on the local stack: three receives, the DLQ, then the reprocess pass parks it."""
    with reprocess_stack(tmp_path, monkeypatch) as stack:
        queues = stack.pipeline.stack
        stack.put(GOOD, GOOD_TEXT)  # S3 → EventBridge → IngestQueue
        stack.sqs.send_message(QueueUrl=queues.ingest.url, MessageBody="this is not JSON")

        stack.drain(cluster=False)

        assert row(GOOD)["status"] == "embedded"
        reason = "SQS message body is not JSON: Expecting value at position 0"
        logged = [r.getMessage() for r in caplog.records if r.getMessage().endswith(f": {reason}")]
        assert len(logged) == 3  # once per receive
        [dead] = dead_letters(queues, queues.ingest)
        assert dead["Body"] == "this is not JSON"

        stack.reprocess({})

        [parked] = dead_letters(queues, queues.ingest)
        assert parked["Body"] == "this is not JSON"
        attribute = parked["MessageAttributes"][PARKED_REASON]["StringValue"]
        assert attribute == f"not redriven: the message can never be processed ({reason})"
        assert query("SELECT key, status FROM documents") == [(GOOD, "embedded")]


@case("unknown-event-type")
def test_an_unknown_event_type_is_rejected(aws: FakeAWS, caplog: pytest.LogCaptureFixture) -> None:
    aws.put("acme/archive.txt", b"Restored from Glacier.")
    event = json.loads(created(aws, "acme/archive.txt"))
    event["detail-type"] = "Object Restore Completed"
    body = json.dumps(event)

    response = run(aws, [body], set())

    assert failed_ids(response) == ["message-1"]
    reason = "unsupported S3 event type 'Object Restore Completed'"
    assert rejected(caplog, "message-1") == reason
    assert_parked_reason(body, reason)
    assert query("SELECT count(*) FROM documents WHERE key = 'acme/archive.txt'") == [(0,)]


# --- a document that tries to steer the labeler -------------------------------------------


@case("steering-document")
@pytest.mark.parametrize("labeler", ["keywords", "openai"])
def test_a_document_steering_the_labeler_gets_no_say(
    aws: FakeAWS,
    openai_env: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    labeler: str,
) -> None:
    monkeypatch.setenv("AUTOTAG_LABELER", labeler)
    openai_env.chat_replier = obedient_model  # a chat model that does what any document says
    reset_runtime()
    steering = "acme/finance/invoice-steer.txt"
    aws.put(steering, f"{INVOICES[0]} {INJECTION}".encode())
    keys = [steering]
    for kind, texts in (("invoice", INVOICES), ("lease", LEASES)):
        for i, text in enumerate(texts):
            keys.append(f"acme/{kind}/{kind}-{i}.txt")
            aws.put(keys[-1], text.encode())

    response = run(aws, [created(aws, key) for key in keys], set(keys))
    assert failed_ids(response) == []
    [request] = aws.cluster_requests()
    invoke("cluster", request)

    categories = query("SELECT id, label, keywords FROM categories WHERE workspace = 'acme'")
    assert len(categories) == 2
    for _, label, keywords in categories:
        assert "hack" not in label.lower() and not any("hack" in k for k in keywords)
    [(steered_label,)] = query(
        "SELECT c.label FROM categories c"
        " JOIN document_categories dc ON dc.category_id = c.id AND dc.workspace = c.workspace"
        " JOIN documents d ON d.id = dc.document_id WHERE d.key = %s",
        steering,
    )
    lease_label = next(label for _, label, keywords in categories if "lease" in keywords)
    chats = [r for r in openai_env.requests if r.path == CHAT_COMPLETIONS_PATH]
    if labeler == "openai":
        # The model saw the planted text and obeyed; its reply was rejected, the keyword label kept.
        assert any(INJECTION in str(r.body["messages"][1]["content"]) for r in chats)
        assert steered_label not in {"HACKED", "Invoices"} and " and " in steered_label
        assert lease_label == "Leases"  # a grounded reply is still taken
        # Where the README's table says the operator sees it.
        assert any(
            r.levelname == "WARNING" and "chat labeler reply rejected, keeping the keyword label" in r.getMessage()
            for r in caplog.records
        )
    else:
        assert chats == []
        assert " and " in steered_label and " and " in lease_label
    assert query("SELECT count(*) FROM categories WHERE workspace = 'other'") == [(0,)]


# --- the README table and these tests ---------------------------------------------------------

TABLE_HEADING = "## Bad input and what happens to it"


def readme_cases() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9-]+)`", section, flags=re.MULTILINE)


def test_the_readme_table_lists_exactly_the_tested_cases() -> None:
    listed = readme_cases()
    assert len(listed) == len(set(listed)), "a case is listed twice"
    assert set(listed) == set(CASES)
    assert len(CASES) >= 13
