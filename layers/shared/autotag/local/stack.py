"""The AWS side of a local run: moto S3 (EventBridge notifications on), an EventBridge rule
delivering Object Created/Deleted to the ingest queue, the cluster queue, and their DLQs,
all configured from template.yaml.

moto keeps its state in memory, so objects are also mirrored under the data directory and
restored (without events) when a later process starts the stack again; `autotag invoke`
then finds the objects `autotag run` uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
from moto import mock_aws

from autotag.local.template_rules import DeploymentRules

REGION = "us-east-1"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePair:
    url: str
    arn: str
    dlq_url: str


class LocalStack:
    def __init__(self, rules: DeploymentRules, bucket: str, data_dir: Path) -> None:
        self.rules = rules
        self.bucket = bucket
        self.mirror = data_dir / "s3" / bucket
        self.s3: Any = None
        self.sqs: Any = None
        self.sequencers = Sequencers()
        self.ingest: QueuePair
        self.cluster: QueuePair

    def create(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        self.s3.create_bucket(Bucket=self.bucket)
        self._restore_mirror()
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        self.ingest = self._queue(
            "IngestQueue", self.rules.ingest.visibility_timeout, self.rules.ingest.max_receive_count
        )
        self.cluster = self._queue(
            "ClusterQueue", self.rules.cluster.visibility_timeout, self.rules.cluster.max_receive_count
        )
        pattern = _resolve_bucket(self.rules.event_pattern, self.bucket)
        events.put_rule(Name="IngestRule", EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule="IngestRule", Targets=[{"Id": "IngestQueue", "Arn": self.ingest.arn}])

    def _queue(self, name: str, visibility: int, max_receives: int) -> QueuePair:
        dlq_url = self.sqs.create_queue(QueueName=f"{name}DLQ")["QueueUrl"]
        dlq_arn = self._arn(dlq_url)
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
        url = self.sqs.create_queue(
            QueueName=name, Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": redrive}
        )["QueueUrl"]
        return QueuePair(url=url, arn=self._arn(url), dlq_url=dlq_url)

    def _arn(self, url: str) -> str:
        return str(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    def _restore_mirror(self) -> None:
        # Before notifications are switched on: restoring must not look like new uploads.
        if not self.mirror.is_dir():
            return
        for path in sorted(self.mirror.rglob("*")):
            if path.is_file():
                self.s3.put_object(
                    Bucket=self.bucket, Key=path.relative_to(self.mirror).as_posix(), Body=path.read_bytes()
                )

    def waiting_messages(self, queue: QueuePair) -> int:
        """Messages visible in `queue`, not counting those in flight or delayed."""
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def stored_keys(self, prefix: str) -> set[str]:
        base = self.mirror / prefix
        if not base.is_dir():
            return set()
        return {p.relative_to(self.mirror).as_posix() for p in base.rglob("*") if p.is_file()}

    def upload(self, key: str, data: bytes) -> None:
        """Store an object as the drive's upload would, with its S3 → EventBridge → SQS event.

        The driver stands in for the drive's clients, so it writes into moto's S3 backend
        directly: moto stores the object (ETag and all) and sends the event through its own
        notification path, exactly as for a PutObject call. Serialising, signing and routing
        that call through botocore and moto's HTTP emulation was 85% of an upload's CPU
        (0.89 of 1.03 CPU-s for 300 BBC files), spent on the cores the model needs while a
        run embeds. The handlers still read objects through boto3.
        """
        _s3_backend(self.ingest.arn).put_object(self.bucket, key, data)
        target = self.mirror / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        (self.mirror / key).unlink(missing_ok=True)

    def save_mirror(self) -> None:
        """Make the mirror match the bucket, for objects written by others (the AWS CLI)."""
        keys = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                target = (self.mirror / key).resolve()
                # A key is any string: "folder/" markers, "..", a key that is also a prefix.
                if key.endswith("/") or not target.is_relative_to(self.mirror.resolve()):
                    logger.warning("not mirrored (no file name for this key): %s", key)
                    continue
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                except OSError as exc:
                    logger.warning("not mirrored: %s (%s)", key, exc)
                    continue
                keys.add(key)
        for key in self.stored_keys(""):
            if key not in keys:
                (self.mirror / key).unlink()


def _s3_backend(queue_arn: str) -> Any:
    """moto's S3 backend of the account the stack's clients act as (read off one of its ARNs)."""
    from moto.s3.models import s3_backends

    return s3_backends[queue_arn.split(":")[4]]["aws"]


def _resolve_bucket(pattern: Any, bucket: str) -> Any:
    """The rule's pattern with `!Ref DocumentsBucket` replaced by the local bucket's name."""
    if isinstance(pattern, dict):
        if set(pattern) == {"Ref"}:
            if pattern["Ref"] != "DocumentsBucket":
                raise ValueError(f"IngestRule pattern refers to {pattern['Ref']!r}, which the local stack lacks")
            return bucket
        return {key: _resolve_bucket(value, bucket) for key, value in pattern.items()}
    if isinstance(pattern, list):
        return [_resolve_bucket(value, bucket) for value in pattern]
    return pattern


def normalise_moto_event(body: str, sequencer: str) -> str:
    """Make moto's EventBridge S3 event look like AWS's.

    moto writes `eTag` (AWS: `etag`), leaves keys unencoded (AWS URL-encodes them, as in
    classic notifications), and stamps every event with the same sequencer (AWS's grows per
    key), so the caller supplies one.
    """
    try:
        event = json.loads(body)
    except json.JSONDecodeError:
        return body  # not an event at all: the handler rejects it, with the reason
    detail = event.get("detail") if isinstance(event, dict) else None
    obj = detail.get("object") if isinstance(detail, dict) else None
    if not isinstance(obj, dict) or event.get("source") != "aws.s3" or "eTag" not in obj:
        return body  # already AWS's shape
    obj["etag"] = obj.pop("eTag")
    obj["key"] = quote_plus(obj["key"], safe="/")
    obj["sequencer"] = sequencer
    return json.dumps(event)


class Sequencers:
    """S3-like sequencers for moto's events, one per message, fixed at its first receive.

    moto delivers synchronously and the driver receives oldest first, so first-receive order
    is operation order; a redelivered message keeps its sequencer, as on AWS. Nanosecond time
    scaled up keeps local events later than the sample events in events/ (AWS doc values).
    """

    def __init__(self) -> None:
        self._assigned: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, message_id: str) -> str:
        with self._lock:
            if message_id not in self._assigned:
                self._assigned[message_id] = f"{time.time_ns() << 4:018X}"
            return self._assigned[message_id]


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """These environment variables inside, the previous values (or none) restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def local_aws() -> Iterator[None]:
    """moto for every boto3 client created inside, with fake credentials that cannot reach AWS."""
    with (
        environment(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION),  # noqa: S106
        mock_aws(),
        sqs_at_one_instant(),
        moto_routes_built_once(),
    ):
        yield


@contextmanager
def sqs_at_one_instant() -> Iterator[None]:
    """moto's SQS with its per-message checks reading the clock once per call, not per message.

    moto 5 builds all of a queue's attributes to check one message's retention on receive, and
    to read one setting on every send (each S3 upload's notification is one), and each build
    counts the queue's messages, reading the clock two or three times per message: every send
    and receive cost a few milliseconds per thousand queued messages, and that emulation cost,
    not the pipeline's, dominated a local run's CPU time. The checks are unchanged: a message
    older than the queue's retention period is not delivered, and the counts are those of
    messages delayed, in flight, and visible at one instant.
    """
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs.models import Message, Queue, SQSBackend

    def retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
        return bool(retention + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]

    def delayed(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def in_flight(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def visible(self: Queue) -> list[Message]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    replaced: list[tuple[type, str, Any]] = [
        (SQSBackend, "is_message_valid_based_on_retention_period", retained),
        (Queue, "approximate_number_of_messages_delayed", property(delayed)),
        (Queue, "approximate_number_of_messages_not_visible", property(in_flight)),
        (Queue, "messages", property(visible)),
    ]
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in replaced]
    for owner, name, value in replaced:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)


@contextmanager
def moto_routes_built_once() -> Iterator[None]:
    """moto's in-process routing with each service's URL table built once, not per request.

    To route one boto3 call, moto 5 rebuilds the table of every URL pattern of the service
    it matched (and, for S3, first re-imports `moto.s3.urls`, whose endpoints may depend on
    environment variables), then compiles each pattern: a tenth of an S3 call's CPU, on the
    cores the model needs. Inside a stack the environment is fixed, so each backend class's
    table is built on its first request and reused; the routes themselves are moto's.
    """
    from moto.core.base_backend import BaseBackend

    original = BaseBackend.__dict__["urls"]
    tables: dict[type, Any] = {}

    def urls(self: BaseBackend) -> Any:
        table = tables.get(type(self))
        if table is None:
            table = tables[type(self)] = original.fget(self)
        return table

    BaseBackend.urls = property(urls)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        BaseBackend.urls = original  # type: ignore[method-assign]


# What `autotag up` tells the AWS CLI to use; moto accepts any, and these cannot reach AWS.
SERVER_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION}


@contextmanager
def served_aws(host: str, port: int) -> Iterator[str]:
    """moto as an HTTP server on host:port (0: any free port); yields its endpoint URL.

    Every boto3 client created inside is pointed at it through AWS_ENDPOINT_URL, so the
    handlers see exactly what an outside AWS CLI writes, and S3's EventBridge delivery runs
    for objects PUT over HTTP as for in-process ones.
    """
    from moto.server import ThreadedMotoServer

    _check_free(host, port)
    # werkzeug logs every request, and the poller asks SQS twice a second.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        endpoint = f"http://{bound_host}:{bound_port}"
        with environment(AWS_ENDPOINT_URL=endpoint, **SERVER_CREDENTIALS), sqs_at_one_instant():
            yield endpoint
    finally:
        server.stop()


def _check_free(host: str, port: int) -> None:
    # ThreadedMotoServer binds in its thread and waits forever if that fails: check first.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: connections of a stopped server in TIME_WAIT do not block it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
