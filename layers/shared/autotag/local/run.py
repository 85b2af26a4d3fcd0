"""`autotag run`: the whole pipeline over a folder of documents, on this machine, offline."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import Any, TextIO

from autotag.local.driver import (
    ARRIVAL_POLL_SECONDS,
    DrainStats,
    Handler,
    LocalContext,
    QueueDriver,
    dead_letters,
    load_function,
)
from autotag.local.report import MappedDocument, write_report
from autotag.local.stack import LocalStack, local_aws
from autotag.local.template_rules import load_rules, load_template
from autotag.runtime import get_runtime, reset_runtime
from autotag.store import CategoryRecord, DocumentRow, Store

UPLOAD_SLICE = 100

# Powertools settings of a local run: no X-Ray daemon, metrics summarised by the run itself,
# and only warnings in the log so progress stays readable.
LOCAL_POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "autotag",
    "POWERTOOLS_METRICS_NAMESPACE": "Autotag",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class LocalPipeline:
    stack: LocalStack
    embed: Handler
    cluster: Handler
    template: Path
    reprocess: Handler


@contextmanager
def local_pipeline(
    template: Path, data_dir: Path, *, aws: Callable[[], AbstractContextManager[object]] = local_aws
) -> Iterator[LocalPipeline]:
    """moto stack + embedded database + the real handlers, configured from `template`.

    `aws` provides moto: in-process by default; `autotag up` serves it over HTTP itself.
    """
    for key, value in LOCAL_POWERTOOLS.items():
        os.environ.setdefault(key, value)
    os.environ["AUTOTAG_DATA_DIR"] = str(data_dir)
    rules = load_rules(template)
    with aws():
        reset_runtime()
        bucket = get_runtime().settings.documents_bucket
        stack = LocalStack(rules, bucket, data_dir)
        stack.create()
        os.environ["AUTOTAG_CLUSTER_QUEUE_URL"] = stack.cluster.url
        os.environ["AUTOTAG_INGEST_QUEUE_URL"] = stack.ingest.url
        os.environ["AUTOTAG_INGEST_DLQ_URL"] = stack.ingest.dlq_url
        os.environ["AUTOTAG_CLUSTER_DLQ_URL"] = stack.cluster.dlq_url
        reset_runtime()
        runtime = get_runtime()
        # Load the model, make the AWS clients and migrate once here, as each Lambda execution
        # environment's init would, not in the first invocations (five racing handler threads).
        runtime.embedder  # noqa: B018
        runtime.s3  # noqa: B018
        runtime.sqs  # noqa: B018
        runtime.store  # noqa: B018
        functions = template.parent / "functions"
        try:
            yield LocalPipeline(
                stack,
                load_function(functions, "embed"),
                load_function(functions, "cluster"),
                template,
                load_function(functions, "reprocess"),
            )
        finally:
            reset_runtime()


def run(
    docs_dir: Path, workspace: str, out_dir: Path, *, template: Path, data_dir: Path, err: TextIO
) -> dict[str, Any]:
    if not docs_dir.is_dir():
        raise SystemExit(f"error: {docs_dir} is not a directory")
    if not workspace or "/" in workspace or workspace in {".", ".."}:
        raise SystemExit("error: --workspace must be a single path segment, e.g. 'demo'")
    files = _documents(docs_dir)
    # The handlers' JSON logs and metrics go to stderr with the progress; stdout is the result.
    with contextlib.redirect_stdout(err), local_pipeline(template, data_dir) as pipeline:
        stack = pipeline.stack
        keys = {f"{workspace}/{rel}": path for rel, path in files.items()}
        stale = stack.stored_keys(workspace) - set(keys)
        print(f"syncing {len(keys)} files to s3://{stack.bucket}/{workspace}/ ({len(stale)} removed)", file=err)
        started = get_runtime().store.now()
        progress = _Progress(err)
        changes = [(key, keys.get(key)) for key in sorted(keys)] + [(key, None) for key in sorted(stale)]
        _upload_while_embedding(pipeline, changes, progress)
        _drain(pipeline, progress)
        runtime = get_runtime()
        store = runtime.store
        categories = store.load_categories(workspace)
        rows = store.document_rows(workspace)
        embedded_now = store.embedded_since(workspace, started)
        dead = dead_letters(stack, stack.ingest) + dead_letters(stack, stack.cluster)
        mapped = _mapped_documents(store, runtime.settings.embedding_model, workspace, rows)
    result = _assignments(workspace, categories, rows, set(files))
    print(f"{embedded_now} documents embedded by this run, the others unchanged or skipped", file=err)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "assignments.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_report(out_dir / "report.html", workspace, categories, mapped)
    _print_summary(result, categories, rows, len(dead), out_dir, sys.stdout)
    return result


def _mapped_documents(store: Store, model: str, workspace: str, rows: list[DocumentRow]) -> list[MappedDocument]:
    """Each categorised document's key (relative to the workspace), category and vector."""
    ids, _, vectors = store.load_embedded_vectors(workspace, model)
    row_of = {row.id: row for row in rows}
    prefix = f"{workspace}/"
    return [
        MappedDocument(row_of[doc_id].key.removeprefix(prefix), category_id, vectors[i])
        for i, doc_id in enumerate(ids)
        if doc_id in row_of and (category_id := row_of[doc_id].category_id)
    ]


def _upload_while_embedding(
    pipeline: LocalPipeline, changes: list[tuple[str, Path | None]], progress: _Progress
) -> None:
    """Upload in slices and embed as they arrive, as a drive's sync client would.

    moto's SQS slows down with every queued message, so one big upload first would be
    quadratic: a slice waits until fewer than UPLOAD_SLICE messages are waiting. Embedding starts
    with the first upload and goes on while the rest upload, so the model never waits for them.
    """
    stack = pipeline.stack
    uploaded = Event()

    def upload() -> None:
        try:
            for start in range(0, len(changes), UPLOAD_SLICE):
                while stack.waiting_messages(stack.ingest) >= UPLOAD_SLICE:
                    time.sleep(ARRIVAL_POLL_SECONDS)
                _sync(stack, changes[start : start + UPLOAD_SLICE])
        finally:
            uploaded.set()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as uploader:
        pending = uploader.submit(upload)
        _drain_queue(pipeline, "ingest", progress, arriving=uploaded)
        pending.result()


def _sync(stack: LocalStack, changes: list[tuple[str, Path | None]]) -> None:
    for key, path in changes:
        if path is None:
            stack.delete(key)
        else:
            stack.upload(key, path.read_bytes())


def _documents(docs_dir: Path) -> dict[str, Path]:
    return {
        path.relative_to(docs_dir).as_posix(): path
        for path in sorted(docs_dir.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(docs_dir).parts)
    }


class _Progress:
    """Cumulative invocation counts per function: one rewritten line on a terminal, a line
    every few batches otherwise (CI logs)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.stats = {"EmbedFunction": DrainStats(), "ClusterFunction": DrainStats()}
        self.tty = err.isatty()

    def __call__(self, _: DrainStats) -> None:
        if self.tty:
            print(f"\r{self._line()}", end="", file=self.err, flush=True)
        elif sum(s.invocations for s in self.stats.values()) % 10 == 1:
            print(self._line(), file=self.err)

    def done(self) -> None:
        print(f"\r{self._line()}" if self.tty else self._line(), file=self.err)

    def _line(self) -> str:
        return "  " + "; ".join(
            f"{name}: {s.invocations} invocations, {s.records} records, {s.failed_records} retried"
            + (f", {s.crashed_invocations} crashed" if s.crashed_invocations else "")
            for name, s in self.stats.items()
        )


def _drain_queue(
    pipeline: LocalPipeline, queue: str, progress: _Progress, stop: Event | None = None, arriving: Event | None = None
) -> int:
    stack = pipeline.stack
    if queue == "ingest":
        pair, rules, handler, name = stack.ingest, stack.rules.ingest, pipeline.embed, "EmbedFunction"
    else:
        pair, rules, handler, name = stack.cluster, stack.rules.cluster, pipeline.cluster, "ClusterFunction"
    driver = QueueDriver(
        stack, pair, rules, handler, name, normalise=queue == "ingest", on_batch=progress, stats=progress.stats[name]
    )
    return driver.drain(stop, arriving=arriving)


def _drain(pipeline: LocalPipeline, progress: _Progress) -> None:
    """Until both queues are empty: a recompute may be requested by the last embed batch."""
    while _drain_queue(pipeline, "ingest", progress) + _drain_queue(pipeline, "cluster", progress):
        pass
    progress.done()


def invoke(function: str, event_file: Path, *, template: Path, data_dir: Path) -> dict[str, Any]:
    """One handler, one event file, against the local stack: what `sam local invoke -e` does."""
    event = json.loads(event_file.read_text(encoding="utf-8"))
    with contextlib.redirect_stdout(sys.stderr), local_pipeline(template, data_dir) as pipeline:
        if function == "reprocess":
            return pipeline.reprocess(event, _reprocess_context(template))
        handler = pipeline.embed if function == "embed" else pipeline.cluster
        timeout = (
            pipeline.stack.rules.ingest if function == "embed" else pipeline.stack.rules.cluster
        ).function_timeout
        name = "EmbedFunction" if function == "embed" else "ClusterFunction"
        return handler(event, LocalContext(name, timeout))


def reprocess(workspace: str | None, *, template: Path, data_dir: Path, err: TextIO) -> dict[str, Any]:
    """`autotag reprocess`: reprocessing passes until one completes, then the repairs they queued.

    moto's queues live in this process only, so what a pass re-enqueues is embedded (and the
    categories recomputed) here, before the process ends.
    """
    event = {} if workspace is None else {"workspace": workspace}
    with contextlib.redirect_stdout(err), local_pipeline(template, data_dir) as pipeline:
        passes = [pipeline.reprocess(event, _reprocess_context(template))]
        while not passes[-1]["complete"]:
            passes.append(pipeline.reprocess(event, _reprocess_context(template)))
        progress = _Progress(err)
        _drain(pipeline, progress)
    return {
        "passes": passes,
        "drained": {name: dataclasses.asdict(stats) for name, stats in progress.stats.items()},
    }


def _reprocess_context(template: Path) -> LocalContext:
    timeout = int(load_template(template)["Resources"]["ReprocessFunction"]["Properties"]["Timeout"])
    return LocalContext("ReprocessFunction", timeout)


def _assignments(
    workspace: str, categories: list[CategoryRecord], rows: list[DocumentRow], files: set[str]
) -> dict[str, Any]:
    prefix = f"{workspace}/"
    documents = []
    seen = set()
    for row in rows:
        key = row.key.removeprefix(prefix)
        seen.add(key)
        documents.append(
            {
                "key": key,
                "category_id": row.category_id,
                "label": row.label,
                "score": None if row.score is None else round(float(row.score), 4),
                "status": row.status,
                "reason": row.reason,
            }
        )
    for key in sorted(files - seen):
        # Never recorded: its event could not be processed and went to the DLQ.
        documents.append(
            {
                "key": key,
                "category_id": None,
                "label": None,
                "score": None,
                "status": "failed",
                "reason": "event not processed; see the ingest DLQ",
            }
        )
    ordered = sorted(categories, key=lambda c: (-c.size, c.label))
    return {
        "workspace": workspace,
        "categories": [{"id": c.id, "label": c.label, "keywords": c.keywords, "size": c.size} for c in ordered],
        "documents": sorted(documents, key=lambda d: d["key"]),
    }


def _print_summary(
    result: dict[str, Any],
    categories: list[CategoryRecord],
    rows: list[DocumentRow],
    dead: int,
    out_dir: Path,
    out: TextIO,
) -> None:
    by_category: dict[str, list[str]] = {}
    for document in result["documents"]:
        if document["category_id"]:
            by_category.setdefault(document["category_id"], []).append(document["key"])
    width = max([len(c["label"]) for c in result["categories"]] + [8])
    print(f"\n{'category':<{width}}  {'size':>5}  examples", file=out)
    for category in result["categories"]:
        examples = ", ".join(sorted(by_category.get(category["id"], []))[:3])
        print(f"{category['label']:<{width}}  {category['size']:>5}  {examples}", file=out)
    statuses = Counter(d["status"] for d in result["documents"])
    print("\n" + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())), file=out)
    for document in result["documents"]:
        if document["status"] in ("skipped", "failed"):
            print(f"  {document['status']}: {document['key']} ({document['reason']})", file=out)
    if dead:
        print(f"{dead} message(s) in dead-letter queues", file=out)
    print(f"wrote {out_dir / 'assignments.json'} and {out_dir / 'report.html'}", file=out)
