"""The message that asks the cluster function to recompute one workspace's categories."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from autotag.store import Store

logger = logging.getLogger(__name__)

# SQS SendMessageBatch takes at most ten entries.
_SQS_BATCH = 10


class ClusterRequest(BaseModel):
    workspace: str = Field(min_length=1)
    # The workspace's change_version when the request was sent; a clustering at or beyond
    # it already covers the request.
    change_version: int = Field(ge=0)
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def send_cluster_requests(sqs: Any, queue_url: str, pending: Mapping[str, int]) -> int:
    """Send one ClusterRequest per workspace in `pending`; returns how many were sent."""
    requests = [ClusterRequest(workspace=w, change_version=v) for w, v in sorted(pending.items())]
    for start in range(0, len(requests), _SQS_BATCH):
        chunk = requests[start : start + _SQS_BATCH]
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": r.model_dump_json()} for i, r in enumerate(chunk)],
        )
        if response.get("Failed"):
            failed = ", ".join(f"{f['Id']}: {f.get('Message', f.get('Code'))}" for f in response["Failed"])
            raise RuntimeError(f"could not send cluster requests: {failed}")
    return len(requests)


def request_clustering(store: Store, sqs: Any, queue_url: str | None, workspaces: set[str]) -> None:
    """One ClusterRequest per workspace whose categories are behind its documents.

    Asking the database (not only what the caller changed) means a retry after a crash
    between the write and the send still sends the request.
    """
    if not workspaces:
        return
    pending = store.pending_workspaces(sorted(workspaces))
    if not pending:
        return
    if not queue_url:
        logger.warning("AUTOTAG_CLUSTER_QUEUE_URL is not set; not requesting clustering of %s", sorted(pending))
        return
    send_cluster_requests(sqs, queue_url, pending)
