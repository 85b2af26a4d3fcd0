"""Move dead-lettered messages back to the queue they came from: at least once, never forever.

Why not SQS's own redrive (StartMessageMoveTask): it moves every message back unseen, so it
can neither count how often a message has been redriven nor leave the hopeless ones where an
operator sees them (and moto does not implement it, so it could not be tested here).

Each message is received from the DLQ, sent to its source queue with its redrive count raised
(a message attribute; SQS keeps attributes when it dead-letters the message again), and
deleted from the DLQ only once SQS confirmed the send. A crash between the send and the delete
leaves the message in both queues: it is delivered twice, never lost. Twice is harmless: the
embed path does not re-embed an object whose ETag (or content hash) and model are stored and
ignores events older than the stored sequencer, and a ClusterRequest at or below the
workspace's clustered version is skipped.

A message that comes back after `max_redrives` redrives, or whose body no handler can parse,
is parked: copied back into its DLQ once with the reason as a message attribute and left
there, so the DLQ's alarm stays on and the operator sees why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

REDRIVE_COUNT = "autotag-redrive-count"
PARKED_REASON = "autotag-parked-reason"
# A received message stays invisible this long: well beyond the send and delete of its batch,
# so one pass never receives (and sends) the same message twice.
RECEIVE_VISIBILITY_SECONDS = 300
# SQS's batch limit for send, delete and change-visibility calls.
SQS_BATCH = 10
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class RedriveRoute:
    """One DLQ and the queue its messages go back to."""

    name: str
    dlq_url: str
    target_url: str
    # Raises ValueError for a body the target's handler can never parse (it is parked instead).
    validate: Callable[[str], object]
    # The last recorded failure of what the message is about, for the parked reason.
    describe: Callable[[str], str | None] | None = None


@dataclass
class RedriveCounts:
    redriven: int = 0
    parked: int = 0  # parked by this pass
    left_parked: int = 0  # parked by an earlier pass, left where they are
    send_failed: int = 0  # stay in the DLQ; the next pass tries again


class Redriver:
    def __init__(self, sqs: Any, *, max_redrives: int, deadline: float | None, wait_seconds: int) -> None:
        """`deadline` (time.monotonic()) is when to stop; `wait_seconds` is the long-poll wait.

        Long polling asks every SQS server, so an empty answer means an empty queue; short
        polling samples a few and may answer empty while messages remain.
        """
        self.sqs = sqs
        self.max_redrives = max_redrives
        self.deadline = deadline
        self.wait_seconds = wait_seconds

    def redrive(self, route: RedriveRoute) -> RedriveCounts:
        counts = RedriveCounts()
        held: list[str] = []  # receipt handles of parked messages, made visible again at the end
        seen: set[str] = set()  # ids settled by this pass, and of the parked copies it sent
        try:
            while True:
                received = self._receive(route.dlq_url)
                if not received:
                    break
                fresh = [m for m in received if m["MessageId"] not in seen]
                # A parked copy made by this pass: kept out of sight until the end, not counted.
                held.extend(m["ReceiptHandle"] for m in received if m["MessageId"] in seen)
                seen.update(m["MessageId"] for m in fresh)
                seen.update(self._settle(route, fresh, counts, held))
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    logger.warning("out of time while redriving %s; the next pass continues", route.name)
                    break
        finally:
            self._release(route.dlq_url, held)
        logger.info("redrive %s: %s", route.name, counts, extra={"queue": route.name, **vars(counts)})
        return counts

    def _receive(self, url: str) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=SQS_BATCH,
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _settle(
        self, route: RedriveRoute, messages: list[dict[str, Any]], counts: RedriveCounts, held: list[str]
    ) -> list[str]:
        """Redrive or park each message; returns the ids of the parked copies sent to the DLQ."""
        outgoing: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {route.target_url: [], route.dlq_url: []}
        for message in messages:
            attributes = _sendable(message.get("MessageAttributes", {}))
            if PARKED_REASON in attributes:
                held.append(message["ReceiptHandle"])
                counts.left_parked += 1
                continue
            redrives = _redrive_count(attributes)
            reason = self._hopeless(route, message["Body"], redrives)
            if reason is None:
                attributes[REDRIVE_COUNT] = {"DataType": "Number", "StringValue": str(redrives + 1)}
                outgoing[route.target_url].append((message, attributes))
            else:
                attributes[PARKED_REASON] = {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS]}
                outgoing[route.dlq_url].append((message, attributes))
                logger.warning("parked a message in %s: %s", route.name, reason, extra={"queue": route.name})
        sent_to_target, _ = self._send(route.target_url, outgoing[route.target_url])
        parked, copies = self._send(route.dlq_url, outgoing[route.dlq_url])
        counts.redriven += len(sent_to_target)
        counts.parked += len(parked)
        attempted = len(outgoing[route.target_url]) + len(outgoing[route.dlq_url])
        counts.send_failed += attempted - len(sent_to_target) - len(parked)
        # Only what SQS confirmed is deleted: an unconfirmed send leaves the message in the DLQ.
        self._delete(route.dlq_url, sent_to_target + parked)
        return copies

    def _hopeless(self, route: RedriveRoute, body: str, redrives: int) -> str | None:
        try:
            route.validate(body)
        except ValueError as exc:
            return f"not redriven: the message can never be processed ({exc})"
        if redrives < self.max_redrives:
            return None
        reason = f"not redriven again: dead-lettered after {redrives} redrives"
        last = route.describe(body) if route.describe is not None else None
        return f"{reason}; last error: {last}" if last else reason

    def _send(self, url: str, batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[list[str], list[str]]:
        """Send the bodies with their new attributes.

        Returns the receipt handles of the messages SQS confirmed, and the ids of the new ones.
        """
        if not batch:
            return [], []
        entries = [
            {"Id": str(i), "MessageBody": message["Body"], "MessageAttributes": attributes}
            for i, (message, attributes) in enumerate(batch)
        ]
        response = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        for failure in response.get("Failed", []):
            logger.error("could not send a dead letter to %s: %s", url, failure.get("Message"))
        confirmed = response.get("Successful", [])
        return [batch[int(ok["Id"])][0]["ReceiptHandle"] for ok in confirmed], [ok["MessageId"] for ok in confirmed]

    def _delete(self, url: str, handles: list[str]) -> None:
        for start in range(0, len(handles), SQS_BATCH):
            chunk = handles[start : start + SQS_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)]
            response = self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            for failure in response.get("Failed", []):
                # Sent but still in the DLQ: redriven once more later, which is harmless.
                logger.warning("could not delete a redriven message from %s: %s", url, failure.get("Message"))

    def _release(self, url: str, handles: list[str]) -> None:
        """Parked messages become visible again at once: the operator (and the alarm) see them."""
        for start in range(0, len(handles), SQS_BATCH):
            chunk = handles[start : start + SQS_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)]
            self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _sendable(attributes: dict[str, Any]) -> dict[str, Any]:
    """Received message attributes in the form SendMessage takes (no list values: reserved by SQS)."""
    sendable = {}
    for name, value in attributes.items():
        kept = {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
        sendable[name] = kept
    return sendable


def _redrive_count(attributes: dict[str, Any]) -> int:
    try:
        return max(0, int(attributes.get(REDRIVE_COUNT, {}).get("StringValue", "0")))
    except ValueError:
        return 0
