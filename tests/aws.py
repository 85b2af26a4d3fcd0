"""moto-backed AWS for handler tests: the documents bucket and the cluster queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from autotag.local.driver import Handler, LocalContext, load_function
from autotag.local.stack import local_aws
from autotag.runtime import get_runtime, reset_runtime
from tests.conftest import ROOT

BUCKET = "autotag-local-documents"


@dataclass
class FakeAWS:
    s3: Any
    sqs: Any
    cluster_queue: str

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    def cluster_requests(self) -> list[dict[str, Any]]:
        """Drain the cluster queue and return the request bodies."""
        bodies: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.cluster_queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.cluster_queue, ReceiptHandle=message["ReceiptHandle"])


@contextmanager
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with local_aws():
        s3 = boto3.client("s3")
        sqs = boto3.client("sqs")
        s3.create_bucket(Bucket=BUCKET)
        queue = sqs.create_queue(QueueName="ClusterQueue")["QueueUrl"]
        monkeypatch.setenv("AUTOTAG_CLUSTER_QUEUE_URL", queue)
        reset_runtime()
        try:
            yield FakeAWS(s3, sqs, queue)
        finally:
            reset_runtime()


def handler(name: str) -> Handler:
    return load_function(ROOT / "functions", name)


def invoke(name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke functions/<name>/app.py the way Lambda would."""
    return handler(name)(event, LocalContext(f"{name.capitalize()}Function", 60))


def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    store = get_runtime().store
    rows = store.conn.execute(sql, params).fetchall()
    store.conn.commit()
    return rows
