"""The local driver applies the template's queue rules: retries, then the DLQ."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autotag.local.driver import QueueDriver, dead_letters
from autotag.local.stack import LocalStack, local_aws
from autotag.local.template_rules import load_rules
from tests.conftest import TEMPLATE


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with local_aws():
        stack = LocalStack(load_rules(TEMPLATE), "autotag-local-documents", tmp_path)
        stack.create()
        yield stack


def send(stack: LocalStack, *bodies: str) -> None:
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.cluster.url, MessageBody=body)


def test_a_crashing_handler_sends_the_batch_to_the_dlq_after_three_receives(stack: LocalStack) -> None:
    calls: list[int] = []

    def crash(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        raise RuntimeError("boom")

    send(stack, "one", "two")
    driver = QueueDriver(stack, stack.cluster, stack.rules.cluster, crash, "ClusterFunction")

    driver.drain()

    assert driver.stats.crashed_invocations == len(calls) and sum(calls) == 6  # 2 messages x 3 receives
    assert sorted(m["Body"] for m in dead_letters(stack, stack.cluster)) == ["one", "two"]


def test_only_the_reported_records_are_retried(stack: LocalStack) -> None:
    seen: list[str] = []

    def fail_bad(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(r["body"] for r in event["Records"])
        bad = [r["messageId"] for r in event["Records"] if r["body"] == "bad"]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in bad]}

    send(stack, "good", "bad")
    driver = QueueDriver(stack, stack.cluster, stack.rules.cluster, fail_bad, "ClusterFunction")

    driver.drain()

    assert seen.count("good") == 1 and seen.count("bad") == 3
    assert [m["Body"] for m in dead_letters(stack, stack.cluster)] == ["bad"]
    assert driver.stats.failed_records == 3 and driver.stats.crashed_invocations == 0


def test_once_stopped_the_batches_in_flight_finish_and_no_more_are_taken(stack: LocalStack) -> None:
    rules = stack.rules.cluster
    stop = threading.Event()

    def stop_after_this(event: dict[str, Any], context: Any) -> dict[str, Any]:
        stop.set()  # as SIGTERM reaching `autotag up` while this batch runs
        return {"batchItemFailures": []}

    total = rules.batch_size * rules.concurrency + 5
    send(stack, *(f"m{i}" for i in range(total)))
    driver = QueueDriver(stack, stack.cluster, rules, stop_after_this, "ClusterFunction")

    driver.drain(stop)

    left = stack.sqs.get_queue_attributes(QueueUrl=stack.cluster.url, AttributeNames=["ApproximateNumberOfMessages"])
    assert 1 <= driver.stats.invocations <= rules.concurrency
    assert int(left["Attributes"]["ApproximateNumberOfMessages"]) == total - driver.stats.records > 0
    assert driver.stats.failed_records == 0


def test_while_messages_are_arriving_the_drain_waits_for_them_and_fills_batches(stack: LocalStack) -> None:
    rules = stack.rules.cluster
    batches: list[list[str]] = []
    arriving = threading.Event()

    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batches.append([r["body"] for r in event["Records"]])
        return {"batchItemFailures": []}

    def upload() -> None:
        # One message at a time, slower than the handler takes them: an empty queue must not
        # end the drain while the upload goes on.
        for i in range(3 * rules.batch_size):
            send(stack, f"m{i}")
            threading.Event().wait(0.01)
        arriving.set()

    uploader = threading.Thread(target=upload)
    uploader.start()
    driver = QueueDriver(stack, stack.cluster, rules, record, "ClusterFunction")

    driver.drain(arriving=arriving)
    uploader.join()

    assert sorted(body for batch in batches for body in batch) == sorted(f"m{i}" for i in range(3 * rules.batch_size))
    # Partial batches go out only while no other batch is in flight, so not one per message.
    assert len(batches) < 3 * rules.batch_size


@pytest.mark.parametrize("body", ["this is not JSON", '{"source": "aws.s3", "detail"', "[1, 2, 3]"])
def test_an_ingest_message_that_is_not_an_s3_event_reaches_the_handler_unchanged(stack: LocalStack, body: str) -> None:
    # The poller used to parse every body itself and died on one that was not JSON.
    seen: list[str] = []

    def reject(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(r["body"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    stack.sqs.send_message(QueueUrl=stack.ingest.url, MessageBody=body)
    driver = QueueDriver(stack, stack.ingest, stack.rules.ingest, reject, "EmbedFunction", normalise=True)

    driver.drain()

    assert seen == [body] * 3
    assert [m["Body"] for m in dead_letters(stack, stack.ingest)] == [body]


def test_a_failed_message_received_again_while_its_invocation_ran_does_not_stop_the_poller(
    stack: LocalStack,
) -> None:
    # An invocation that outlasts the visibility timeout: another poller receives the message
    # meanwhile, and the first receipt handle is no longer valid when the invocation returns.
    send(stack, "slow")
    url = stack.cluster.url
    calls: list[str] = []

    def outlast(event: dict[str, Any], context: Any) -> dict[str, Any]:
        record = event["Records"][0]
        calls.append(record["body"])
        if len(calls) > 1:
            return {"batchItemFailures": []}
        stack.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0)
        assert stack.sqs.receive_message(QueueUrl=url).get("Messages")
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}

    one_at_a_time = dataclasses.replace(stack.rules.cluster, concurrency=1)
    driver = QueueDriver(stack, stack.cluster, one_at_a_time, outlast, "ClusterFunction")

    driver.drain()

    assert driver.stats.crashed_invocations == 0
    assert calls == ["slow", "slow"]  # the newer receive's invocation settled it


def test_a_batch_size_above_sqs_receive_limit_is_filled_from_several_receives(stack: LocalStack) -> None:
    # SQS returns at most 10 messages a receive; Lambda's poller gathers the template's
    # BatchSize (25 for the embed function) within its batching window.
    sizes: list[int] = []

    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        sizes.append(len(event["Records"]))
        return {"batchItemFailures": []}

    rules = dataclasses.replace(stack.rules.ingest, concurrency=1)
    assert rules.batch_size > 10
    send_to = stack.ingest.url
    for i in range(rules.batch_size + 3):
        stack.sqs.send_message(QueueUrl=send_to, MessageBody=f"m{i}")
    driver = QueueDriver(stack, stack.ingest, rules, record, "EmbedFunction")

    driver.drain()

    assert sizes == [rules.batch_size, 3]


def test_queue_counts_and_retention_match_sqs_under_the_local_stack(stack: LocalStack) -> None:
    # The local stack replaces moto's per-message clock reads: the counts must still split
    # messages into visible, in flight and delayed, and expired messages must not be delivered.
    sqs, url = stack.sqs, stack.cluster.url
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=600)
    send(stack, "taken", "waiting")
    taken = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)["Messages"]

    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert [m["Body"] for m in taken] in (["taken"], ["waiting"])
    assert counts["ApproximateNumberOfMessages"] == "1"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
    assert stack.waiting_messages(stack.cluster) == 1

    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
    stale = sqs.send_message(QueueUrl=url, MessageBody="stale")["MessageId"]
    for message in sqs_backend_messages(stack):
        if message.id == stale:
            message.sent_timestamp -= 120_000  # sent two minutes ago, past the 60 s retention
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert "stale" not in [m["Body"] for m in received] and len(received) == 1


def sqs_backend_messages(stack: LocalStack) -> list[Any]:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    return list(sqs_backends[DEFAULT_ACCOUNT_ID][stack.sqs.meta.region_name].queues["ClusterQueue"]._messages)


def test_an_upload_arrives_as_the_same_event_as_a_put_object_call(stack: LocalStack) -> None:
    # The driver writes into moto's S3 backend directly; the ingest queue must see exactly the
    # event a PutObject call gives (only the per-event ids and times differ).
    stack.upload("ws/direct.txt", b"same bytes")
    stack.s3.put_object(Bucket=stack.bucket, Key="ws/api.txt", Body=b"same bytes")
    bodies = [
        json.loads(m["Body"])
        for m in stack.sqs.receive_message(QueueUrl=stack.ingest.url, MaxNumberOfMessages=10)["Messages"]
    ]

    def shape(event: dict[str, Any]) -> dict[str, Any]:
        detail = {k: v for k, v in event["detail"].items() if k != "request-id"}
        detail["object"] = {k: v for k, v in detail["object"].items() if k not in ("key", "sequencer")}
        return {**{k: v for k, v in event.items() if k not in ("id", "time")}, "detail": detail}

    assert sorted(b["detail"]["object"]["key"] for b in bodies) == ["ws/api.txt", "ws/direct.txt"]
    assert shape(bodies[0]) == shape(bodies[1])
    assert bodies[0]["detail-type"] == "Object Created"
    stored = stack.s3.get_object(Bucket=stack.bucket, Key="ws/direct.txt")
    assert stored["Body"].read() == b"same bytes"
    assert stored["ETag"] == stack.s3.head_object(Bucket=stack.bucket, Key="ws/api.txt")["ETag"]
    assert (stack.mirror / "ws/direct.txt").read_bytes() == b"same bytes"


def test_moto_builds_each_services_url_table_once_under_the_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.core.base_backend import BaseBackend

    built: list[str] = []
    moto_table = BaseBackend.__dict__["urls"].fget

    def counted(self: BaseBackend) -> Any:
        built.append(type(self).__name__)
        return moto_table(self)

    monkeypatch.setattr(BaseBackend, "urls", property(counted))
    with local_aws():
        stack = LocalStack(load_rules(TEMPLATE), "autotag-local-documents", tmp_path)
        stack.create()
        for n in range(3):
            stack.upload(f"ws/{n}.txt", b"x")
            assert stack.s3.get_object(Bucket=stack.bucket, Key=f"ws/{n}.txt")["Body"].read() == b"x"
        assert stack.waiting_messages(stack.ingest) == 3
    # moto alone builds the table on every request (S3 here: CreateBucket, the notification
    # setting, three GetObject calls).
    assert built.count("S3Backend") == 1
    assert built.count("SQSBackend") == 1
