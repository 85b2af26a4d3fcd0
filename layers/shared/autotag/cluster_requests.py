"""The message that asks the cluster function to recompute one workspace's categories."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

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
