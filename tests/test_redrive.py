"""ReprocessFunction's DLQ redrive against moto SQS with the template's queues and redrive policies:
every message goes back exactly once, a message that keeps failing is redriven a bounded number
of times and then stays in its DLQ with the reason, and nothing is deleted before it was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autotag.cluster_requests import ClusterRequest
from autotag.local.driver import QueueDriver, dead_letters
from autotag.redrive import PARKED_REASON, REDRIVE_COUNT
from autotag.runtime import get_runtime
from autotag.store import ObjectRef, ObjectVersion
from tests.conftest import load_event
from tests.reprocess_support import Stack, event_body, queued_keys, reprocess_stack, rows_by_key, take_all
from tests.support.openai_server import FakeOpenAIServer


@pytest.fixture
def stack(openai_env: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with reprocess_stack(tmp_path, monkeypatch) as stack:
        yield stack


def attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return None if value is None else str(value["StringValue"])


def test_an_alarm_redrives_every_message_once_and_parks_the_hopeless(stack: Stack) -> None:
    queues = stack.pipeline.stack
    keys = [f"acme/doc {i}.txt" for i in range(12)]  # more than one receive batch
    for key in keys:
        stack.sqs.send_message(QueueUrl=queues.ingest.dlq_url, MessageBody=event_body(stack.bucket, key))
    # Redriven three times already, and its document says why it keeps failing.
    worn = "acme/worn out.txt"
    get_runtime().store.write_failure(
        ObjectRef("acme", stack.bucket, worn), ObjectVersion(None, None, None, None), "RateLimitError: quota exceeded"
    )
    stack.sqs.send_message(
        QueueUrl=queues.ingest.dlq_url,
        MessageBody=event_body(stack.bucket, worn),
        MessageAttributes={REDRIVE_COUNT: {"DataType": "Number", "StringValue": "3"}},
    )
    stack.sqs.send_message(QueueUrl=queues.ingest.dlq_url, MessageBody="not json")
    request = ClusterRequest(workspace="acme", change_version=4).model_dump_json()
    stack.sqs.send_message(QueueUrl=queues.cluster.dlq_url, MessageBody=request)
    stack.sqs.send_message(QueueUrl=queues.cluster.dlq_url, MessageBody=json.dumps({"workspace": ""}))

    response = stack.reprocess(load_event("cloudwatch-alarm-state-change.json"))

    assert response["trigger"] == "alarm" and response["alarm"] == "autotag-dev-IngestDLQAlarm-1A2B3C4D5E6F"
    assert response["redrive"] == {
        "IngestDLQ": {"redriven": 12, "parked": 2, "left_parked": 0, "send_failed": 0},
        "ClusterDLQ": {"redriven": 1, "parked": 1, "left_parked": 0, "send_failed": 0},
    }
    redriven = take_all(stack.sqs, queues.ingest.url)
    assert sorted(queued_keys(redriven)) == sorted(keys)  # each exactly once
    assert {attribute(m, REDRIVE_COUNT) for m in redriven} == {"1"}
    assert [m["Body"] for m in take_all(stack.sqs, queues.cluster.url)] == [request]
    parked = {m["Body"]: attribute(m, PARKED_REASON) for m in dead_letters(queues, queues.ingest)}
    assert parked.keys() == {event_body(stack.bucket, worn), "not json"}
    assert "after 3 redrives; last error: RateLimitError: quota exceeded" in str(parked[event_body(stack.bucket, worn)])
    assert "can never be processed (SQS message body is not JSON" in str(parked["not json"])
    [cluster_parked] = dead_letters(queues, queues.cluster)
    assert "can never be processed (not a ClusterRequest: String should have at least 1 character)" in str(
        attribute(cluster_parked, PARKED_REASON)
    )

    # The next pass leaves the parked messages where they are, once each.
    again = stack.reprocess({})["redrive"]
    assert again["IngestDLQ"] == {"redriven": 0, "parked": 0, "left_parked": 2, "send_failed": 0}
    assert len(dead_letters(queues, queues.ingest)) == 2 and len(dead_letters(queues, queues.cluster)) == 1


def test_a_message_that_keeps_failing_is_redriven_a_bounded_number_of_times(stack: Stack) -> None:
    queues = stack.pipeline.stack
    receives: list[str] = []

    def always_fails(event: dict[str, Any], context: Any) -> dict[str, Any]:
        receives.extend(r["messageId"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    body = ClusterRequest(workspace="acme", change_version=1).model_dump_json()
    stack.sqs.send_message(QueueUrl=queues.cluster.url, MessageBody=body)
    consumer = QueueDriver(queues, queues.cluster, queues.rules.cluster, always_fails, "ClusterFunction")
    for _ in range(6):  # more passes than it takes
        consumer.drain()
        stack.reprocess(load_event("scheduled-event.json"))

    # Three receives per stay in the queue: the first one and after each of the three redrives.
    assert len(receives) == 3 * (1 + 3)
    [parked] = dead_letters(queues, queues.cluster)
    assert parked["Body"] == body
    assert attribute(parked, REDRIVE_COUNT) == "3"
    assert "dead-lettered after 3 redrives" in str(attribute(parked, PARKED_REASON))


def test_a_message_redriven_twice_ends_as_one_document(stack: Stack, openai_env: FakeOpenAIServer) -> None:
    """A crash between the send and the delete redrives a message again: still one row, one set of chunks."""
    queues = stack.pipeline.stack
    stack.put("acme/report.txt", b"Quarterly report: revenue grew and costs fell.")
    [event] = take_all(stack.sqs, queues.ingest.url)
    for _ in range(2):
        stack.sqs.send_message(QueueUrl=queues.ingest.dlq_url, MessageBody=event["Body"])

    stack.reprocess({})
    stack.drain(cluster=False)

    assert rows_by_key("acme") == {
        "acme/report.txt": [("embedded", stack.etag("acme/report.txt"), "text-embedding-3-small", 1)]
    }
    assert dead_letters(queues, queues.ingest) == []


def test_nothing_is_deleted_from_a_dlq_before_it_was_sent(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    queues = stack.pipeline.stack
    stack.sqs.send_message(QueueUrl=queues.ingest.dlq_url, MessageBody=event_body(stack.bucket, "acme/a.txt"))
    stack.sqs.delete_queue(QueueUrl=queues.ingest.url)  # the target is unreachable

    with pytest.raises(Exception, match=r"NonExistentQueue|QueueDoesNotExist"):
        stack.reprocess({})

    counts = stack.sqs.get_queue_attributes(QueueUrl=queues.ingest.dlq_url, AttributeNames=["All"])["Attributes"]
    assert int(counts["ApproximateNumberOfMessages"]) + int(counts["ApproximateNumberOfMessagesNotVisible"]) == 1
