"""`make chaos`: the local stack under faults and a burst of uploads, then checks that nothing was lost.

The stack is the one `autotag run` uses (moto S3 → EventBridge rule → IngestQueue with its DLQ,
the real embed, cluster and reprocess handlers, PostgreSQL with pgvector) with the `openai`
provider: the real `openai` client against the local OpenAI-compatible server, which draws a
fault for each request from a seeded mix (429 with and without Retry-After, 500, 503, slow and
stalled answers, connection resets) and has one outage (a run of 503s) mid-burst. Meanwhile:

- every database connection of the application is terminated while batches are in flight;
- some invocations die halfway through their batch (a Lambda timeout): the rest of the batch
  comes back only when the queue's visibility timeout expires (set short for this stack);
- some records are delivered twice (SQS is at least once), with their original sequencer;
- the uploads include duplicates, overwrites, deletes and bad objects, and the queue gets a few
  messages no handler can parse.

When the queues are empty, ONE reprocessing pass runs (DLQ redrive, then S3 ↔ database
reconcile), the queues are drained again (embedding and clustering), and the end state is
checked against the bucket. The table of expected and actual counts is printed; any mismatch
exits non-zero.

    python -m benchmarks.chaos [--uploads 2000] [--seed 7] [--out out/chaos]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg

from autotag import database
from autotag.extraction import ExtractionLimits, Skipped, extract
from autotag.local.driver import Handler, LocalContext, QueueDriver, dead_letters
from autotag.local.run import LocalPipeline, local_pipeline
from autotag.local.stack import environment
from autotag.redrive import PARKED_REASON
from autotag.runtime import get_runtime
from autotag.settings import Settings
from benchmarks.chaos_documents import Bad, Op, Plan, make_plan
from tests.support.openai_server import FakeOpenAIServer, FaultMix

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"

# The fault mix of the embedding API (per request, before the client's retries).
CHAOS_MIX = FaultMix(
    rate_limited=0.06,
    rate_limited_bare=0.05,
    server_error=0.02,
    unavailable=0.02,
    reset=0.02,
    slow=0.05,
    stalled=0.02,
    retry_after_seconds=0.5,
    slow_seconds=0.8,
    stall_seconds=3.0,
)
CLIENT_TIMEOUT_SECONDS = 2.0  # the stalled answers (3 s) exceed it
MAX_OBJECT_BYTES = 256 * 1024
# Seconds an ingest message stays invisible after a receive (template: 1800), so the batch of an
# invocation that died comes back soon; an invocation slower than this sees its messages
# received again by another one, which the embed path must take in its stride.
VISIBILITY_TIMEOUT = 5
# moto's SQS gets slower with every queued message (each call scans the queue); the uploader
# waits while this many events are waiting, so the burst measures the pipeline, not moto.
MAX_WAITING_EVENTS = 60
POLL_SECONDS = 0.2
OUTAGE_RETRY_AFTER = 0.1
# The invocations that die are every 1/timeout_rate-th, starting with this one (so even a small run has one).
TIMEOUT_PHASE = 3


@dataclass(frozen=True)
class ChaosConfig:
    uploads: int = 2000  # distinct keys uploaded
    workspaces: int = 4
    seed: int = 7
    db_kills: int = 2
    mix: FaultMix = CHAOS_MIX
    timeout_rate: float = 0.02  # invocations that die halfway through their batch
    duplicate_rate: float = 0.03  # records delivered a second time
    dimensions: int = 256  # text-embedding-3-small shortened: the faults, not the vector size, matter here


def outage_requests(config: ChaosConfig) -> int:
    """Consecutive requests the provider outage answers with 503."""
    return max(60, config.uploads // 20)


class LambdaTimedOutError(RuntimeError):
    """The invocation died before answering; Lambda returns its batch after the visibility timeout."""


@dataclass
class Counters:
    invocations: int = 0
    timed_out: int = 0
    duplicates_sent: int = 0
    unparseable_duplicates: int = 0  # of those, messages no handler can parse (each also ends in the DLQ)
    db_kills: int = 0
    backends_killed: int = 0


class ConnectionKiller:
    """Terminates every connection of the application's database (its own excepted)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def kill(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
            ).fetchall()
        return sum(1 for (terminated,) in rows if terminated)


class ChaosEmbed:
    """The embed handler as Lambda runs it on a bad day: some invocations die halfway, some
    records arrive twice, and at set points the database connections or the provider go away."""

    def __init__(
        self,
        handler: Handler,
        config: ChaosConfig,
        *,
        sqs: Any,
        queue_url: str,
        killer: ConnectionKiller,
        server: FakeOpenAIServer,
        expected_invocations: int,
        unparseable: set[str],
    ) -> None:
        self.handler = handler
        self.unparseable = unparseable
        self.config = config
        self.sqs = sqs
        self.queue_url = queue_url
        self.killer = killer
        self.server = server
        self.counters = Counters()
        self.random = random.Random(config.seed + 1)
        self.lock = threading.Lock()
        self.active = 0
        spacing = expected_invocations / (config.db_kills + 1)
        self.kill_at = [round(spacing * (i + 1)) for i in range(config.db_kills)]
        self.outage_at = round(expected_invocations * 0.4)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self.lock:
            self.counters.invocations += 1
            number = self.counters.invocations
            self.active += 1
            others = self.active - 1
            dies = number % round(1 / self.config.timeout_rate) == TIMEOUT_PHASE
            again = [r["body"] for r in event["Records"] if self.random.random() < self.config.duplicate_rate]
        try:
            self._faults(number, others)
            if dies:
                self._die_halfway(event, context)
            response = self.handler(event, context)
            for body in again:
                # SQS delivers at least once: the same event again, with its sequencer.
                self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
            with self.lock:
                self.counters.duplicates_sent += len(again)
                self.counters.unparseable_duplicates += sum(1 for body in again if body in self.unparseable)
            return response
        finally:
            with self.lock:
                self.active -= 1

    def _die_halfway(self, event: dict[str, Any], context: Any) -> None:
        # Rounded up, so a batch of one is processed and then loses its answer: an empty
        # half would not be an SQS event at all.
        records = event["Records"]
        with self.lock:
            self.counters.timed_out += 1
        self.handler({"Records": records[: (len(records) + 1) // 2]}, context)
        raise LambdaTimedOutError("the invocation timed out halfway through its batch")

    def _faults(self, number: int, others: int) -> None:
        with self.lock:
            kill = bool(self.kill_at) and number >= self.kill_at[0] and others >= 1
            if kill:
                self.kill_at.pop(0)
            outage = self.outage_at and number >= self.outage_at
            if outage:
                self.outage_at = 0
        if outage:
            # With a short Retry-After the client's retries come quickly, so the batches in
            # flight fail all three receives within the outage and are dead-lettered.
            self.server.inject(503, count=outage_requests(self.config), retry_after=OUTAGE_RETRY_AFTER)
        if kill:
            # Other invocations are mid-batch: their connections drop under them.
            killed = self.killer.kill()
            with self.lock:
                self.counters.db_kills += 1
                self.counters.backends_killed += killed


class ChaosDriver(QueueDriver):
    """The local poller, except that a batch whose invocation died waits out the visibility timeout."""

    def _settle(self, future: Future[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
        if isinstance(future.exception(), LambdaTimedOutError):
            self.stats.invocations += 1
            self.stats.records += len(messages)
            return
        super()._settle(future, messages)


def queue_depth(sqs: Any, url: str) -> int:
    """Messages waiting, in flight or delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def pump(driver: QueueDriver, sqs: Any, url: str, upstream_done: Callable[[], bool]) -> None:
    """Run the driver until the upstream is done and its queue is empty, in-flight messages included."""
    while True:
        driver.drain()
        if upstream_done() and queue_depth(sqs, url) == 0:
            return
        time.sleep(POLL_SECONDS)


@dataclass
class Check:
    name: str
    expected: str
    actual: str
    ok: bool | None  # None: a figure, not a check


@dataclass
class ChaosResult:
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(check.ok is not False for check in self.checks)

    def add(self, name: str, expected: object, actual: object, ok: bool | None = None) -> None:
        if ok is None:
            ok = expected == actual
        self.checks.append(Check(name, str(expected), str(actual), ok))

    def figure(self, name: str, actual: object) -> None:
        self.checks.append(Check(name, "", str(actual), None))

    def at_least(self, name: str, minimum: int, actual: int) -> None:
        self.checks.append(Check(name, f">= {minimum}", str(actual), actual >= minimum))

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        expected = max([len(c.expected) for c in self.checks] + [8])
        lines = [f"{'check':<{width}}  {'expected':>{expected}}  {'actual':>8}  ok"]
        for c in self.checks:
            mark = "" if c.ok is None else ("ok" if c.ok else "MISMATCH")
            lines.append(f"{c.name:<{width}}  {c.expected:>{expected}}  {c.actual:>8}  {mark}")
        return "\n".join(lines)


class Chaos:
    def __init__(self, config: ChaosConfig, out_dir: Path, progress: TextIO, database_url: str) -> None:
        self.config = config
        self.database_url = database_url
        self.out_dir = out_dir
        self.progress = progress
        self.plan: Plan = make_plan(config.uploads, config.workspaces, config.seed, MAX_OBJECT_BYTES)

    def say(self, message: str) -> None:
        print(message, file=self.progress, flush=True)

    def run(self) -> ChaosResult:
        shutil.rmtree(self.out_dir / "state", ignore_errors=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (
            FakeOpenAIServer(dimensions=self.config.dimensions) as server,
            environment(**self._settings(server)),
            (self.out_dir / "handlers.log").open("w", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            local_pipeline(TEMPLATE, self.out_dir / "state") as pipeline,
        ):
            server.fail_randomly(self.config.mix, seed=self.config.seed, every_kind_first=True)
            return self._run(pipeline, server)

    def _settings(self, server: FakeOpenAIServer) -> dict[str, str]:
        return {
            "AUTOTAG_EMBEDDING_PROVIDER": "openai",
            "AUTOTAG_EMBEDDING_MODEL": "text-embedding-3-small",
            "AUTOTAG_EMBEDDING_DIMENSIONS": str(self.config.dimensions),
            "OPENAI_API_KEY": "chaos",
            "OPENAI_BASE_URL": server.base_url,
            "AUTOTAG_OPENAI_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS),
            "AUTOTAG_OPENAI_MAX_RETRIES": "3",
            # Well above what the run needs: the budget's code runs, the faults come from the server.
            "AUTOTAG_OPENAI_REQUESTS_PER_MINUTE": "30000",
            "AUTOTAG_OPENAI_TOKENS_PER_MINUTE": "30000000",
            "AUTOTAG_MAX_OBJECT_BYTES": str(MAX_OBJECT_BYTES),
            "AUTOTAG_MAX_CATEGORIES": "10",
            # moto answers a long poll only after the full wait, even when the queue is empty.
            "AUTOTAG_REDRIVE_WAIT_SECONDS": "0",
            # Empty: the embedded PostgreSQL under the output folder, never a DATABASE_URL of the
            # environment (the run terminates every connection of its database).
            "DATABASE_URL": self.database_url,
        }

    def _run(self, pipeline: LocalPipeline, server: FakeOpenAIServer) -> ChaosResult:
        stack = pipeline.stack
        sqs = stack.sqs
        sqs.set_queue_attributes(QueueUrl=stack.ingest.url, Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT)})
        killer = ConnectionKiller(database.database_url(get_runtime().settings))
        embed = ChaosEmbed(
            pipeline.embed,
            self.config,
            sqs=sqs,
            queue_url=stack.ingest.url,
            killer=killer,
            server=server,
            expected_invocations=max(10, self.plan.puts // stack.rules.ingest.batch_size),
            unparseable=set(self.plan.bad_events),
        )
        ingest = ChaosDriver(stack, stack.ingest, stack.rules.ingest, embed, "EmbedFunction", normalise=True)
        cluster = ChaosDriver(stack, stack.cluster, stack.rules.cluster, pipeline.cluster, "ClusterFunction")
        started = time.monotonic()
        self.say(
            f"chaos: {self.config.uploads} keys, {self.plan.puts} uploads, {len(self.plan.ops)} operations "
            f"across {self.config.workspaces} workspaces (seed {self.config.seed})"
        )
        self._burst(pipeline, ingest, cluster)
        burst_seconds = time.monotonic() - started
        self.say(f"  queues drained after the burst in {burst_seconds:.0f} s; one reprocessing pass")
        report = pipeline.reprocess({}, LocalContext("ReprocessFunction", 900))
        self._drain(ingest, cluster, sqs, stack.ingest.url, stack.cluster.url)
        result = ChaosResult(seconds=time.monotonic() - started)
        self.say(f"  drained again; checking ({result.seconds:.0f} s so far)")
        self._check(result, pipeline, server, embed.counters, (ingest, cluster), report)
        return result

    def _burst(self, pipeline: LocalPipeline, ingest: ChaosDriver, cluster: ChaosDriver) -> None:
        """Uploads, the embed poller and the cluster poller at once, until all three are done."""
        stack = pipeline.stack
        uploaded, ingested, failed = threading.Event(), threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def worker(work: Callable[[], None], done: threading.Event) -> threading.Thread:
            def target() -> None:
                try:
                    work()
                except BaseException as exc:
                    errors.append(exc)
                    failed.set()
                finally:
                    done.set()

            return threading.Thread(target=target, daemon=True)

        threads = [
            worker(lambda: self._upload(stack, failed), uploaded),
            worker(lambda: pump(ingest, stack.sqs, stack.ingest.url, uploaded.is_set), ingested),
            worker(lambda: pump(cluster, stack.sqs, stack.cluster.url, ingested.is_set), threading.Event()),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError("a part of the chaos run failed") from errors[0]

    def _upload(self, stack: Any, failed: threading.Event) -> None:
        for number, op in enumerate(self.plan.ops, 1):
            while stack.waiting_messages(stack.ingest) > MAX_WAITING_EVENTS:
                if failed.is_set():
                    return
                time.sleep(POLL_SECONDS)
            _apply(stack, op)
            if number % 500 == 0:
                self.say(f"  {number} of {len(self.plan.ops)} operations sent")

    def _drain(self, ingest: ChaosDriver, cluster: ChaosDriver, sqs: Any, ingest_url: str, cluster_url: str) -> None:
        while True:
            pump(ingest, sqs, ingest_url, lambda: True)
            pump(cluster, sqs, cluster_url, lambda: True)
            if queue_depth(sqs, ingest_url) == 0:
                return

    # --- checks ----------------------------------------------------------------------

    def _check(
        self,
        result: ChaosResult,
        pipeline: LocalPipeline,
        server: FakeOpenAIServer,
        counters: Counters,
        drivers: tuple[ChaosDriver, ChaosDriver],
        report: dict[str, Any],
    ) -> None:
        stack = pipeline.stack
        result.figure("keys uploaded", len(self.plan.fates))
        result.figure("uploads (PUT), duplicates and overwrites included", self.plan.puts)
        self._check_documents(result, stack)
        ingest_dead = dead_letters(stack, stack.ingest)
        bad_bodies = set(self.plan.bad_events)
        result.add(
            "IngestDLQ: the unparseable events (duplicates included)",
            len(self.plan.bad_events) + counters.unparseable_duplicates,
            len(ingest_dead),
        )
        unexplained = [
            m for m in ingest_dead if m["Body"] not in bad_bodies or PARKED_REASON not in m.get("MessageAttributes", {})
        ]
        result.add("IngestDLQ: messages not a bad event, or with no reason", 0, len(unexplained))
        result.add("ClusterDLQ messages", 0, len(dead_letters(stack, stack.cluster)))
        self._check_faults(result, server, counters, drivers, report)
        result.figure("wall time (s)", f"{result.seconds:.1f}")
        result.figure("documents/s (keys uploaded / wall time)", f"{len(self.plan.fates) / result.seconds:.1f}")

    def _check_documents(self, result: ChaosResult, stack: Any) -> None:
        """The rows against the bucket: one up-to-date row per object, none for deleted ones."""
        settings = get_runtime().settings
        url = database.database_url(settings)
        workspaces = sorted({key.split("/", 1)[0] for key in self.plan.fates})
        listed = _listing(stack.s3, stack.bucket)
        rows = _rows(url, stack.bucket, workspaces)
        result.add(
            "objects in the bucket (as planned)", len(self.plan.final), len(listed), set(listed) == set(self.plan.final)
        )
        expected_embedded, expected_skipped = self._expected_outcomes(settings)
        up_to_date = [
            key
            for key in expected_embedded
            if (row := rows.get(key)) is not None
            and row["status"] == "embedded"
            and row["etag"] == listed.get(key)
            and row["model"] == settings.embedding_model
            and row["has_vector"]
            and row["chunks"] == row["chunk_count"] > 0
        ]
        result.add("objects with one up-to-date embedded row", len(expected_embedded), len(up_to_date))
        skipped = [
            key
            for key in expected_skipped
            if (row := rows.get(key)) is not None
            and row["status"] == "skipped"
            and (row["reason"] or "").strip()
            and row["etag"] == listed.get(key)
            and not row["has_vector"]
            and row["chunks"] == 0
        ]
        result.add("bad objects skipped with their reason", len(expected_skipped), len(skipped))
        invalid = {key for key, kind in self.plan.bad.items() if kind is Bad.INVALID_UTF8}
        result.figure("  of the bad: invalid UTF-8 embedded as the extractor reads it", len(invalid & set(up_to_date)))
        live_deleted = [key for key in self.plan.deleted if key in rows and rows[key]["status"] != "deleted"]
        result.add("deleted objects with a row (tombstones aside)", 0, len(live_deleted))
        orphans = [key for key, row in rows.items() if key not in listed and row["status"] != "deleted"]
        result.add("rows of objects not in the bucket (tombstones aside)", 0, len(orphans))
        result.add("rows failed", 0, sum(1 for row in rows.values() if row["status"] == "failed"))
        uncategorised = [row for row in rows.values() if row["status"] == "embedded" and not row["categorised"]]
        result.add("embedded documents without a category", 0, len(uncategorised))
        result.add("workspaces whose categories are behind their documents", 0, _workspaces_behind(url, workspaces))

    def _check_faults(
        self,
        result: ChaosResult,
        server: FakeOpenAIServer,
        counters: Counters,
        drivers: tuple[ChaosDriver, ChaosDriver],
        report: dict[str, Any],
    ) -> None:
        """The faults really happened: as the server, the harness and the reprocessing pass counted them."""
        faults = server.fault_counts()
        result.at_least("API: 429 with Retry-After", 1, faults["rate_limited"])
        result.at_least("API: 429 without Retry-After", 1, faults["rate_limited_bare"])
        result.at_least("API: 500", 1, faults["server_error"])
        result.at_least("API: 503 (random)", 1, faults["unavailable"])
        outage = sum(1 for r in server.requests if r.status == 503 and r.fault is None)
        result.add("API: 503 outage (consecutive requests)", outage_requests(self.config), outage)
        result.at_least("API: slow answers", 1, faults["slow"])
        result.at_least("API: stalled past the client timeout (client gave up)", 1, faults["timed_out"])
        result.at_least("API: connection resets", 1, faults["reset"])
        result.figure("API: requests", len(server.requests))
        result.add("database kills mid-batch", self.config.db_kills, counters.db_kills)
        result.at_least("  connections terminated by them", self.config.db_kills, counters.backends_killed)
        result.at_least("invocations that died halfway (Lambda timeout)", 1, counters.timed_out)
        result.at_least("records delivered twice", 1, counters.duplicates_sent)
        ingest, cluster = drivers
        result.at_least("records retried (batch item failures)", 1, ingest.stats.failed_records)
        redrive = report["redrive"]
        result.at_least("reprocess: redriven from the DLQs", 1, sum(c["redriven"] for c in redrive.values()))
        result.figure("reprocess: parked in the DLQs", sum(c["parked"] for c in redrive.values()))
        found = report["reconcile"]
        result.figure(
            "reprocess: reconcile missing / stale / gone / failed",
            f"{found['missing']} / {found['stale']} / {found['gone']} / {found['failed']}",
        )
        result.figure("invocations: embed / cluster", f"{ingest.stats.invocations} / {cluster.stats.invocations}")

    def _expected_outcomes(self, settings: Settings) -> tuple[list[str], list[str]]:
        """Keys in the bucket that must end embedded, and those that must end skipped."""
        limits = ExtractionLimits(
            max_pages=settings.max_pages,
            max_chars=settings.max_extracted_chars,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            time_budget_seconds=settings.extraction_time_budget_seconds,
        )
        embedded: list[str] = []
        skipped: list[str] = []
        for key, data in self.plan.final.items():
            kind = self.plan.bad.get(key)
            if kind is Bad.INVALID_UTF8:
                # Not a rule of this check: the extractor's own verdict on these bytes.
                (skipped if isinstance(extract(key, data, limits), Skipped) else embedded).append(key)
            elif kind is not None:
                skipped.append(key)
            else:
                embedded.append(key)
        return embedded, skipped


def _apply(stack: Any, op: Op) -> None:
    if op.action == "put":
        stack.s3.put_object(Bucket=stack.bucket, Key=op.key, Body=op.data)
    elif op.action == "delete":
        stack.s3.delete_object(Bucket=stack.bucket, Key=op.key)
    else:
        stack.sqs.send_message(QueueUrl=stack.ingest.url, MessageBody=op.data.decode("utf-8"))


def _listing(s3: Any, bucket: str) -> dict[str, str]:
    """key → ETag of every object in the bucket."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: str(o["ETag"]).strip('"') for page in pages for o in page.get("Contents", [])}


def _rows(url: str, bucket: str, workspaces: list[str]) -> dict[str, dict[str, Any]]:
    """key → the document row (and its chunk count and category) of every workspace's keys."""
    found: dict[str, dict[str, Any]] = {}
    with psycopg.connect(url) as conn:
        for workspace in workspaces:
            cursor = conn.execute(
                "SELECT d.key, d.status, d.reason, d.etag, d.model, d.embedding IS NOT NULL AS has_vector,"
                " d.chunk_count, (SELECT count(*) FROM chunks c WHERE c.workspace = d.workspace"
                "   AND c.document_id = d.id) AS chunks,"
                " EXISTS (SELECT 1 FROM document_categories dc WHERE dc.workspace = d.workspace"
                "   AND dc.document_id = d.id) AS categorised"
                " FROM documents d WHERE d.workspace = %s AND d.bucket = %s",
                (workspace, bucket),
            )
            names = [column.name for column in cursor.description or []]
            for values in cursor.fetchall():
                row = dict(zip(names, values, strict=True))
                if row["key"] in found:
                    raise AssertionError(f"two rows for {row['key']!r}")
                found[row["key"]] = row
    return found


def _workspaces_behind(url: str, workspaces: list[str]) -> int:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM workspaces WHERE workspace = ANY(%s) AND clustered_version < change_version",
            (workspaces,),
        ).fetchone()
    return int(rows[0]) if rows else 0


def run_chaos(
    config: ChaosConfig, out_dir: Path, progress: TextIO | None = None, *, database_url: str = ""
) -> ChaosResult:
    """One chaos run; `database_url` is an empty database to use instead of a fresh embedded one."""
    return Chaos(config, out_dir, progress or sys.stderr, database_url).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--uploads", type=int, default=ChaosConfig.uploads, help="distinct keys uploaded")
    parser.add_argument("--workspaces", type=int, default=ChaosConfig.workspaces)
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed)
    parser.add_argument("--db-kills", type=int, default=ChaosConfig.db_kills)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "chaos")
    args = parser.parse_args(argv)
    config = ChaosConfig(uploads=args.uploads, workspaces=args.workspaces, seed=args.seed, db_kills=args.db_kills)
    result = run_chaos(config, args.out)
    table = result.table()
    print(table)
    verdict = "PASS" if result.passed else "FAIL"
    print(f"\n{verdict}: {sum(1 for c in result.checks if c.ok is False)} mismatches")
    (args.out / "chaos.json").write_text(
        json.dumps(
            {
                "config": dataclasses.asdict(config),
                "passed": result.passed,
                "checks": [dataclasses.asdict(c) for c in result.checks],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
