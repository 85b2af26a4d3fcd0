"""The local stack for reprocessing tests: moto S3 → EventBridge → SQS with the template's queues
and DLQs, the real handlers (embed, cluster, reprocess), a fresh PostgreSQL and the openai
provider against the local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from autotag.local.driver import LocalContext, QueueDriver
from autotag.local.run import LocalPipeline, local_pipeline
from autotag.runtime import get_runtime
from tests.conftest import TEMPLATE


@dataclass
class Stack:
    pipeline: LocalPipeline

    @property
    def sqs(self) -> Any:
        return self.pipeline.stack.sqs

    @property
    def s3(self) -> Any:
        return self.pipeline.stack.s3

    @property
    def bucket(self) -> str:
        return self.pipeline.stack.bucket

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def etag(self, key: str) -> str:
        return str(self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"]).strip('"')

    def keys(self, prefix: str) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def drain(self, *, cluster: bool = True) -> None:
        """Run the embed (and cluster) functions until their queues are empty (the Lambda pollers)."""
        stack = self.pipeline.stack
        embed = self.pipeline.embed
        ingest = QueueDriver(stack, stack.ingest, stack.rules.ingest, embed, "EmbedFunction", normalise=True)
        if not cluster:
            ingest.drain()
            return
        recompute = QueueDriver(stack, stack.cluster, stack.rules.cluster, self.pipeline.cluster, "ClusterFunction")
        while ingest.drain() + recompute.drain():
            pass

    def lose_events(self) -> int:
        """Take every message off the ingest queue unprocessed, as if the events never arrived."""
        return len(take_all(self.sqs, self.pipeline.stack.ingest.url))

    def reprocess(self, event: dict[str, Any], *, timeout: int = 900) -> dict[str, Any]:
        return self.pipeline.reprocess(event, LocalContext("ReprocessFunction", timeout))


def take_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive and delete every message of a queue; returns them with their attributes."""
    taken: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
            "Messages", []
        )
        if not messages:
            return taken
        for message in messages:
            taken.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def queued_keys(messages: list[dict[str, Any]]) -> list[str]:
    """The object keys of EventBridge S3 events, as the embed handler decodes them."""
    from autotag.events import parse_sqs_body

    return [change.key for m in messages for change in parse_sqs_body(m["Body"])]


@contextmanager
def reprocess_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    # Short polling: moto's long poll waits out the full second on an empty queue.
    monkeypatch.setenv("AUTOTAG_REDRIVE_WAIT_SECONDS", "0")
    with local_pipeline(TEMPLATE, tmp_path / "state") as pipeline:
        yield Stack(pipeline)


def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    store = get_runtime().store
    rows = store.conn.execute(sql, params).fetchall()
    store.conn.commit()
    return rows


def committed(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """A query on a connection of its own: sees only what was committed."""
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        return conn.execute(sql, params).fetchall()


def rows_by_key(workspace: str) -> dict[str, list[tuple[Any, ...]]]:
    """key → every row of the workspace for it: (status, etag, model, chunk count)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for key, *rest in query(
        "SELECT d.key, d.status, d.etag, d.model, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
        " FROM documents d WHERE d.workspace = %s",
        workspace,
    ):
        found.setdefault(key, []).append(tuple(rest))
    return found


def event_body(bucket: str, key: str) -> str:
    from autotag.events import object_created_event

    return json.dumps(object_created_event(bucket, key, etag="0" * 32, size=1, sequencer=None, event_id="test"))
