"""Entry logic of the functions: event in, domain call, response and metrics out.

`functions/*/app.py` wrap these with Powertools' logger, tracer and metrics; the local
driver and `autotag invoke` call the same functions, so what runs locally is what deploys.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import Metrics, MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from autotag.cluster_requests import ClusterRequest, request_clustering
from autotag.events import (
    EventParseError,
    ObjectChange,
    attributable,
    is_sqs_event,
    parse_ingest_body,
    parse_notification,
)
from autotag.ingest import BatchReport, EmbedPipeline
from autotag.runtime import Runtime, get_runtime
from autotag.triggers import parse_trigger

if TYPE_CHECKING:
    from autotag.categorize import RecomputeResult

logger = logging.getLogger(__name__)


# Time kept back at the end of an invocation for the last writes, the cluster request and the
# batch response: a timed-out invocation reports nothing and fails its whole batch.
REPORTING_MARGIN_SECONDS = 15


class RecordFailedError(Exception):
    """Marks one SQS record as failed so it is retried and, after the last receive, dead-lettered."""


def handle_embed(event: dict[str, Any], context: Any, metrics: Metrics | None = None) -> dict[str, Any]:
    runtime = get_runtime()
    if is_sqs_event(event):
        return _embed_sqs_batch(runtime, event, context, metrics)
    try:
        changes = attributable(parse_notification(event), bucket=runtime.settings.documents_bucket)
    except EventParseError as exc:
        logger.error("rejected event: %s", exc)
        raise
    report = _embed(runtime, [("event", changes)], context, metrics)
    failures = report.failures()
    if failures:
        # A direct (asynchronous) invocation is retried by Lambda and then sent to its
        # on-failure destination; raising is how it learns the event failed.
        raise RuntimeError(f"embedding failed: {failures['event']}")
    return {"results": report.counts()}


def _embed_sqs_batch(runtime: Runtime, event: dict[str, Any], context: Any, metrics: Metrics | None) -> dict[str, Any]:
    items: list[tuple[str, list[ObjectChange]]] = []
    rejected: dict[str, str] = {}
    for record in event["Records"]:
        message_id = record["messageId"]
        try:
            items.append((message_id, parse_ingest_body(record["body"], bucket=runtime.settings.documents_bucket)))
        except EventParseError as exc:
            logger.error("rejected message %s: %s", message_id, exc, extra={"message_id": message_id})
            rejected[message_id] = str(exc)
    report = _embed(runtime, items, context, metrics)
    failures = report.failures() | rejected
    if metrics is not None and rejected:
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(rejected))
    return _partial_response(event, context, failures)


def _embed(
    runtime: Runtime, items: list[tuple[str, list[ObjectChange]]], context: Any, metrics: Metrics | None
) -> BatchReport:
    pipeline = EmbedPipeline(
        runtime.settings,
        runtime.begin_invocation(),
        runtime.embedder,
        runtime.s3,
        deadline=_deadline(context),
        reconnect=runtime.begin_invocation,
    )
    report = pipeline.process(items)
    touched = {c.workspace for _, changes in items for c in changes if c.workspace}
    request_clustering(runtime.store, runtime.sqs, runtime.settings.cluster_queue_url, touched)
    if metrics is not None:
        for result, count in report.counts().items():
            if count:
                metrics.add_metric(name=f"Documents{result.capitalize()}", unit=MetricUnit.Count, value=count)
    return report


def _deadline(context: Any, margin: float = REPORTING_MARGIN_SECONDS) -> float | None:
    """When to stop starting work: the invocation's end, less time to write and report."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + float(remaining()) / 1000 - margin


def handle_cluster(event: dict[str, Any], context: Any, metrics: Metrics | None = None) -> dict[str, Any]:
    runtime = get_runtime()
    runtime.begin_invocation()
    if not is_sqs_event(event):
        request = ClusterRequest.model_validate(event)
        result = _recompute(runtime, request.workspace, request.change_version, metrics)
        return dataclasses.asdict(result)
    by_workspace: dict[str, list[str]] = defaultdict(list)
    versions: dict[str, int] = {}
    failures: dict[str, str] = {}
    for record in event["Records"]:
        try:
            request = ClusterRequest.model_validate_json(record["body"])
        except ValidationError as exc:
            failures[record["messageId"]] = f"not a ClusterRequest: {exc.errors()[0]['msg']}"
            logger.error("rejected message %s: %s", record["messageId"], failures[record["messageId"]])
            continue
        by_workspace[request.workspace].append(record["messageId"])
        versions[request.workspace] = max(versions.get(request.workspace, 0), request.change_version)
    # Several requests for one workspace in a batch: one recompute answers all of them.
    for workspace, message_ids in by_workspace.items():
        try:
            _recompute(runtime, workspace, versions[workspace], metrics)
        except Exception as exc:
            logger.exception("recompute of %s failed", workspace)
            runtime.store.rollback()
            failures.update(dict.fromkeys(message_ids, f"{type(exc).__name__}: {exc}"))
    return _partial_response(event, context, failures)


def _recompute(runtime: Runtime, workspace: str, version: int, metrics: Metrics | None) -> RecomputeResult:
    # Imported here: scikit-learn and SciPy ship only in the ClusteringLayer, which the
    # EmbedFunction does not carry.
    from autotag.categorize import recompute_workspace

    result = recompute_workspace(runtime.store, runtime.settings, workspace, version, namer=runtime.namer)
    if metrics is not None:
        name = "ClusterRecomputes" if result.recomputed else "ClusterRequestsSkipped"
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if not result.recomputed:
        logger.info("skipped %s: %s", workspace, result.reason)
    return result


def _partial_response(event: dict[str, Any], context: Any, failures: dict[str, str]) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> None:
        if record.message_id in failures:
            raise RecordFailedError(failures[record.message_id])

    # Report every failure as a batchItemFailure, even when all failed, instead of raising.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)


# A reconcile page (list, compare, up to a page of sends or tombstones) must finish in it.
REPROCESS_MARGIN_SECONDS = 60


def handle_reprocess(event: dict[str, Any], context: Any, metrics: Metrics | None = None) -> dict[str, Any]:
    from autotag.reprocess import reprocess  # only ReprocessFunction needs it

    try:
        trigger = parse_trigger(event)
    except EventParseError as exc:
        logger.error("rejected reprocess trigger: %s", exc)
        raise
    if not trigger.actionable:
        logger.info("alarm %s is no longer in ALARM; nothing to do", trigger.alarm_name)
        return {"trigger": trigger.kind.value, "alarm": trigger.alarm_name, "actionable": False}
    runtime = get_runtime()
    report = reprocess(
        trigger,
        runtime.settings,
        runtime.begin_invocation(),
        runtime.s3,
        runtime.sqs,
        deadline=_deadline(context, REPROCESS_MARGIN_SECONDS),
    )
    response = report.as_dict() | {"alarm": trigger.alarm_name}
    logger.info("reprocess pass %s", "complete" if report.complete else "continues next time", extra=response)
    if metrics is not None:
        for name, value in report.metrics().items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return response
