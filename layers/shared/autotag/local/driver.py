"""Feeds queue batches to the real handlers the way Lambda's SQS event source mapping does:
batches of up to the template's BatchSize, at most its concurrency in flight, failed records made
visible again at once (instead of after the visibility timeout) and moved to the DLQ by the
queue's own redrive policy after maxReceiveCount receives.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

from autotag.local.stack import REGION, LocalStack, QueuePair, Sequencers, normalise_moto_event
from autotag.local.template_rules import QueueRules

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Messages one ReceiveMessage call returns at most.
SQS_RECEIVE_LIMIT = 10
# How often a drain looks for messages still arriving.
ARRIVAL_POLL_SECONDS = 0.05


@dataclass
class LocalContext:
    """The parts of Lambda's context object that Powertools reads."""

    function_name: str
    timeout_seconds: int
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass
class DrainStats:
    invocations: int = 0
    records: int = 0
    failed_records: int = 0
    crashed_invocations: int = 0


def load_function(functions_dir: Path, name: str) -> Handler:
    """Import functions/<name>/app.py (every function's module is called app) and return its handler."""
    path = functions_dir / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"autotag_function_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no handler module at {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    handler: Handler = module.lambda_handler
    return handler


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str, *, sequencers: Sequencers | None = None
) -> dict[str, Any]:
    """The event Lambda's SQS poller would build from these received messages.

    With `sequencers`, bodies are moto EventBridge events brought to AWS's shape.
    """
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": normalise_moto_event(m["Body"], sequencers(m["MessageId"])) if sequencers else m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


class QueueDriver:
    def __init__(
        self,
        stack: LocalStack,
        queue: QueuePair,
        rules: QueueRules,
        handler: Handler,
        function_name: str,
        *,
        normalise: bool = False,
        on_batch: Callable[[DrainStats], None] | None = None,
        stats: DrainStats | None = None,
    ) -> None:
        self.sqs = stack.sqs
        self.queue = queue
        self.rules = rules
        self.handler = handler
        self.function_name = function_name
        self.sequencers = stack.sequencers if normalise else None
        self.on_batch = on_batch
        self.stats = stats or DrainStats()

    def drain(self, stop: Event | None = None, *, arriving: Event | None = None) -> int:
        """Invoke the handler until the queue is empty (processed or dead-lettered) or, once
        `stop` is set, until the batches in flight are done; returns invocations.

        Until `arriving` is set, more messages are on their way (an upload in progress): an
        empty queue is polled again instead of ending the drain, and while other batches are
        in flight a partial batch waits for more messages, as the poller's batching window does.
        """
        before = self.stats.invocations
        with ThreadPoolExecutor(max_workers=self.rules.concurrency) as pool:
            in_flight: dict[Future[dict[str, Any]], list[dict[str, Any]]] = {}
            batch: list[dict[str, Any]] = []

            def invoke() -> None:
                event = sqs_event(batch, self.queue.arn, sequencers=self.sequencers)
                context = LocalContext(self.function_name, self.rules.function_timeout)
                in_flight[pool.submit(self.handler, event, context)] = list(batch)
                batch.clear()

            while True:
                # Read before receiving: set after an empty receive, it still means one more.
                final = arriving is None or arriving.is_set()
                while len(in_flight) < self.rules.concurrency and not (stop and stop.is_set()):
                    batch += self._receive(self.rules.batch_size - len(batch))
                    if not batch or (len(batch) < self.rules.batch_size and in_flight and not final):
                        break
                    invoke()
                if batch and stop and stop.is_set():
                    invoke()  # received already: settled like any other, never left invisible
                if not in_flight:
                    if (final and not batch) or (stop and stop.is_set()):
                        return self.stats.invocations - before
                    if arriving is not None:
                        arriving.wait(ARRIVAL_POLL_SECONDS)
                    continue
                done, _ = wait(in_flight, timeout=None if final else ARRIVAL_POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle(future, in_flight.pop(future))

    def _receive(self, wanted: int) -> list[dict[str, Any]]:
        """Up to `wanted` messages, gathered from as many receives as that takes (SQS returns
        at most 10 a call), until the queue has no more visible: the poller's batching window,
        without waiting it out."""
        messages: list[dict[str, Any]] = []
        while len(messages) < wanted:
            response = self.sqs.receive_message(
                QueueUrl=self.queue.url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, wanted - len(messages)),
                AttributeNames=["All"],
            )
            received = response.get("Messages", [])
            if not received:
                break
            messages.extend(received)
        return messages

    def _settle(self, future: Future[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
        self.stats.invocations += 1
        self.stats.records += len(messages)
        try:
            response = future.result()
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except Exception:
            # A crashed invocation fails the whole batch, as on Lambda.
            logger.exception("%s invocation failed", self.function_name)
            self.stats.crashed_invocations += 1
            failed = {m["MessageId"] for m in messages}
        self.stats.failed_records += len(failed)
        # As Lambda's event source mapping does: the batch's successes deleted in one call.
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=done)
        for message in messages:
            if message["MessageId"] in failed:
                self._retry_now(message)
        if self.on_batch is not None:
            self.on_batch(self.stats)

    def _retry_now(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ReceiptHandleIsInvalid":
                raise
            # The invocation outlasted the visibility timeout and the message was received
            # again (as on AWS); the newer receive settles it.
            logger.warning("%s: message %s was received again meanwhile", self.function_name, message["MessageId"])


def dead_letters(stack: LocalStack, queue: QueuePair) -> list[dict[str, Any]]:
    """Every message in the queue's DLQ with its attributes (left there, as an operator would find them)."""
    found: dict[str, dict[str, Any]] = {}
    while True:
        messages = stack.sqs.receive_message(
            QueueUrl=queue.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageAttributeNames=["All"]
        ).get("Messages", [])
        new = [m for m in messages if m["MessageId"] not in found]
        if not new:
            break
        found.update({m["MessageId"]: m for m in new})
    for message in found.values():
        stack.sqs.change_message_visibility(
            QueueUrl=queue.dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return list(found.values())
