"""One reprocessing pass: redrive the DLQs, then reconcile S3 against the database.

Asked for by the schedule, by a DLQ alarm going into ALARM, or by hand (see triggers.py).
A pass over every workspace redrives first (it is quick and what the alarm is about), then
reconciles with the time left. A pass for one workspace only reconciles that workspace: the
DLQs hold messages of every workspace, and a workspace's pass must not touch the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from pydantic import ValidationError

from autotag.cluster_requests import ClusterRequest, request_clustering
from autotag.events import parse_ingest_body, parse_sqs_body
from autotag.reconcile import ReconcileCounts, Reconciler
from autotag.redrive import RedriveCounts, Redriver, RedriveRoute
from autotag.settings import Settings
from autotag.store import ObjectRef, Store
from autotag.triggers import Trigger

logger = logging.getLogger(__name__)


@dataclass
class ReprocessReport:
    trigger: str
    workspace: str | None
    redrive: dict[str, RedriveCounts] = field(default_factory=dict)
    reconcile: ReconcileCounts = field(default_factory=ReconcileCounts)
    completed_workspaces: list[str] = field(default_factory=list)
    # False: out of time; the next invocation continues from the saved position.
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, int]:
        """Powertools metric name → value (the dashboard's Reprocessing widget plots these)."""
        redrive = {
            "ReprocessRedriven": sum(c.redriven for c in self.redrive.values()),
            "ReprocessParked": sum(c.parked for c in self.redrive.values()),
        }
        counts = self.reconcile
        return redrive | {
            "ReprocessObjectsChecked": counts.objects,
            "ReprocessMissing": counts.missing,
            "ReprocessStale": counts.stale,
            "ReprocessOtherModel": counts.other_model,
            "ReprocessGone": counts.gone,
            "ReprocessEnqueued": counts.enqueued,
            "ReprocessTombstoned": counts.tombstoned,
        }


def reprocess(
    trigger: Trigger, settings: Settings, store: Store, s3: Any, sqs: Any, *, deadline: float | None
) -> ReprocessReport:
    """Run one pass (or continue one) until done or `deadline` (time.monotonic())."""
    if not settings.ingest_queue_url:
        raise RuntimeError("AUTOTAG_INGEST_QUEUE_URL is not set: reconciling needs the queue to re-enqueue objects")
    report = ReprocessReport(trigger=trigger.kind.value, workspace=trigger.workspace)
    if trigger.workspace is None:
        redriver = Redriver(
            sqs, max_redrives=settings.max_redrives, deadline=deadline, wait_seconds=settings.redrive_wait_seconds
        )
        for route in redrive_routes(settings, store):
            report.redrive[route.name] = redriver.redrive(route)
    reconciler = Reconciler(
        store,
        s3,
        sqs,
        bucket=settings.documents_bucket,
        ingest_queue_url=settings.ingest_queue_url,
        model=settings.embedding_model,
        page_size=settings.reconcile_page_size,
        deadline=deadline,
    )
    try:
        if trigger.workspace is None:
            report.complete = reconciler.sweep()
        else:
            report.complete = reconciler.reconcile_workspace(trigger.workspace)
    finally:
        report.reconcile = reconciler.counts
        report.completed_workspaces = reconciler.completed
        # Tombstones of embedded documents change a workspace's categories.
        request_clustering(store, sqs, settings.cluster_queue_url, reconciler.tombstoned_in)
    return report


def redrive_routes(settings: Settings, store: Store) -> list[RedriveRoute]:
    """The DLQs this deployment has, each with the queue its messages go back to."""
    # What the embed function would reject (another bucket, a key outside any workspace) is parked.
    ingest_body = partial(parse_ingest_body, bucket=settings.documents_bucket)
    pairs: list[tuple[str, str | None, str | None, Callable[[str], object]]] = [
        ("IngestDLQ", settings.ingest_dlq_url, settings.ingest_queue_url, ingest_body),
        ("ClusterDLQ", settings.cluster_dlq_url, settings.cluster_queue_url, _cluster_request),
        # Events EventBridge could not deliver to IngestQueue: the same bodies, sent on.
        ("IngestRuleDLQ", settings.ingest_rule_dlq_url, settings.ingest_queue_url, ingest_body),
    ]
    routes = []
    for name, dlq, target, validate in pairs:
        if dlq and target:
            describe = _document_failure(store) if validate is ingest_body else None
            routes.append(RedriveRoute(name, dlq, target, validate, describe))
    return routes


def _cluster_request(body: str) -> ClusterRequest:
    try:
        return ClusterRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ValueError(f"not a ClusterRequest: {exc.errors()[0]['msg']}") from None


def _document_failure(store: Store) -> Callable[[str], str | None]:
    """For an ingest message: the failure reasons recorded on its documents' rows."""

    def describe(body: str) -> str | None:
        reasons = []
        for change in parse_sqs_body(body):
            if change.workspace is not None:
                reason = store.failure_reason(ObjectRef(change.workspace, change.bucket, change.key))
                if reason:
                    reasons.append(reason)
        return "; ".join(reasons) or None

    return describe
