"""`autotag status`: what the local stack holds, for an operator.

Documents per workspace by status (with the reasons of the skipped and failed ones) and the
categories come from the database; the depths of IngestQueue, ClusterQueue and their DLQs
from the running `autotag up`, found through its state file. Without a running stack the
database part is still shown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from autotag import database
from autotag.local.up import StackState
from autotag.settings import load_settings
from autotag.store import Store

EXAMPLES = 3


def status(data_dir: Path, *, workspace: str | None = None) -> dict[str, Any]:
    return {"stack": stack_status(data_dir), "workspaces": database_status(data_dir, workspace)}


def stack_status(data_dir: Path) -> dict[str, Any]:
    state = StackState.read(data_dir)
    if state is None:
        return {"running": False, "message": f"autotag up is not running (no {StackState.path(data_dir)})"}
    summary: dict[str, Any] = {"endpoint": state.endpoint, "bucket": state.bucket, "pid": state.pid}
    if not state.process_alive():
        message = f"autotag up is not running: pid {state.pid} is gone without stopping cleanly (stale state file)"
        return {"running": False, "message": message, **summary}
    try:
        queues = _queue_depths(state)
    except (BotoCoreError, ClientError) as exc:
        return {"running": False, "message": f"the stack at {state.endpoint} does not answer ({exc})", **summary}
    return {"running": True, **summary, "queues": queues}


def _queue_depths(state: StackState) -> dict[str, dict[str, int]]:
    sqs = boto3.client(
        "sqs",
        endpoint_url=state.endpoint,
        region_name=state.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - moto's; the endpoint is local
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )
    depths = {}
    for name, url in state.queues.items():
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        depths[name] = {
            "waiting": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        }
    return depths


@contextmanager
def _store(data_dir: Path) -> Iterator[Store | None]:
    """A read-only look at the database `autotag up` uses; None before its schema exists.

    No migration here: status must not create a schema, nor fail on another process's
    embedding settings.
    """
    os.environ["AUTOTAG_DATA_DIR"] = str(data_dir)
    conn = database.connect(database.database_url(load_settings()))
    try:
        row = conn.execute("SELECT to_regclass('workspaces') IS NOT NULL").fetchone()
        conn.commit()
        yield Store(conn) if row and row[0] else None
    finally:
        conn.close()


def database_status(data_dir: Path, workspace: str | None) -> list[dict[str, Any]]:
    with _store(data_dir) as store:
        if store is None:
            return []
        names = store.workspaces() if workspace is None else [workspace]
        return [_workspace_status(store, name) for name in names]


def _workspace_status(store: Store, workspace: str) -> dict[str, Any]:
    prefix = f"{workspace}/"
    rows = store.document_rows(workspace)
    categories = sorted(store.load_categories(workspace), key=lambda c: (-c.size, c.label))
    return {
        "workspace": workspace,
        "counts": store.status_counts(workspace),
        "categories": [{"id": c.id, "label": c.label, "size": c.size} for c in categories],
        "documents": [
            {
                "key": row.key.removeprefix(prefix),
                "status": row.status,
                "reason": row.reason,
                "category_id": row.category_id,
                "label": row.label,
            }
            for row in rows
        ],
    }


def print_status(report: dict[str, Any], out: TextIO, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False), file=out)
        return
    _print_stack(report["stack"], out)
    if not report["workspaces"]:
        print("\nno documents yet", file=out)
    for entry in report["workspaces"]:
        _print_workspace(entry, out)


def _print_stack(stack: dict[str, Any], out: TextIO) -> None:
    if not stack["running"]:
        print(stack["message"], file=out)
        return
    print(f"stack    {stack['endpoint']} (pid {stack['pid']}), bucket s3://{stack['bucket']}", file=out)
    print(f"{'queue':<16} {'waiting':>8} {'in flight':>10}", file=out)
    for name, depth in stack["queues"].items():
        print(f"{name:<16} {depth['waiting']:>8} {depth['in_flight']:>10}", file=out)


def _print_workspace(entry: dict[str, Any], out: TextIO) -> None:
    counts = ", ".join(f"{count} {status}" for status, count in entry["counts"].items()) or "no documents"
    print(f"\nworkspace {entry['workspace']}: {counts}", file=out)
    by_category: dict[str, list[str]] = {}
    for document in entry["documents"]:
        if document["category_id"]:
            by_category.setdefault(document["category_id"], []).append(document["key"])
    if entry["categories"]:
        width = max(len(c["label"]) for c in entry["categories"] + [{"label": "category"}])
        print(f"  {'category':<{width}}  {'size':>5}  examples", file=out)
        for category in entry["categories"]:
            examples = ", ".join(sorted(by_category.get(category["id"], []))[:EXAMPLES])
            print(f"  {category['label']:<{width}}  {category['size']:>5}  {examples}", file=out)
    for document in entry["documents"]:
        if document["status"] in ("skipped", "failed"):
            print(f"  {document['status']}: {document['key']} ({document['reason']})", file=out)
