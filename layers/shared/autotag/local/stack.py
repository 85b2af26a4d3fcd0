"""The AWS side of a local run: moto S3 (EventBridge notifications on), an EventBridge rule
delivering Object Created/Deleted to the ingest queue, the cluster queue, and their DLQs,
all configured from template.yaml.

moto keeps its state in memory, so objects are also mirrored under the data directory and
restored (without events) when a later process starts the stack again; `autotag invoke`
then finds the objects `autotag run` uploaded.
"""

from __future__ import annotations

import json
import os
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

    def stored_keys(self, prefix: str) -> set[str]:
        base = self.mirror / prefix
        if not base.is_dir():
            return set()
        return {p.relative_to(self.mirror).as_posix() for p in base.rglob("*") if p.is_file()}

    def upload(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        target = self.mirror / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        (self.mirror / key).unlink(missing_ok=True)


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
    event = json.loads(body)
    obj = event.get("detail", {}).get("object")
    if event.get("source") != "aws.s3" or not isinstance(obj, dict) or "eTag" not in obj:
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
def local_aws() -> Iterator[None]:
    """moto for every boto3 client created inside, with fake credentials that cannot reach AWS."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)  # noqa: S106
    try:
        with mock_aws():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
