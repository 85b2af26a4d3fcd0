"""Faults the pipeline must survive, each injected into the real part that would suffer it: the
embedding API (the real `openai` client over TCP to the local server, which fails, stalls and
resets on demand), the database (a backend killed in the middle of a write), S3 (objects
overwritten or deleted while a handler reads them) and Lambda (an invocation out of time)."""

from __future__ import annotations

import copy
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
import openai
import psycopg
import pytest

from autotag import ingest
from autotag.embeddings import EmbeddingInputError, OpenAIEmbedder
from autotag.handlers import REPORTING_MARGIN_SECONDS
from autotag.local.driver import DrainStats, LocalContext, QueueDriver, dead_letters
from autotag.provider_retries import JITTER, RetryPolicy
from autotag.rate_budget import RateBudget
from autotag.runtime import get_runtime
from autotag.store import as_array
from tests.aws import BUCKET, FakeAWS, fake_aws, handler, invoke, query
from tests.conftest import load_event
from tests.reprocess_support import Stack, committed, reprocess_stack
from tests.support.openai_server import CLIENT_CLOSED, NO_RESPONSE, FakeOpenAIServer, RecordedRequest, fake_embedding

MODEL = "text-embedding-3-small"


def embedder(
    server: FakeOpenAIServer,
    *,
    max_retries: int = 3,
    backoff: float = 0.01,
    timeout: float = 5.0,
    budget: RateBudget | None = None,
) -> OpenAIEmbedder:
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=max_retries, timeout=timeout)
    return OpenAIEmbedder(client, MODEL, 1536, backoff_seconds=backoff, budget=budget)


def gaps(requests: list[RecordedRequest]) -> list[float]:
    """Seconds between consecutive requests, as the server saw them arrive."""
    return [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]


# --- the embedding API ------------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_no_sooner_than_asked(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(429, retry_after=0.4, path="/v1/embeddings")

    vectors = embedder(openai_server, backoff=0.01).embed(["rate limited text"])

    assert vectors.shape == (1, 1536)
    assert [r.status for r in openai_server.requests] == [429, 200]
    # The backoff alone would have waited about 0.01 s.
    assert gaps(openai_server.requests)[0] >= 0.4


def test_a_429_without_retry_after_backs_off_exponentially_with_jitter(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(429, count=3, path="/v1/embeddings")

    embedder(openai_server, max_retries=3, backoff=0.1).embed(["rate limited text"])

    assert [r.status for r in openai_server.requests] == [429, 429, 429, 200]
    for retry, gap in enumerate(gaps(openai_server.requests)):
        nominal = 0.1 * 2**retry
        # No sooner than the backoff; the upper bound only rules out a fixed long pause.
        assert nominal * (1 - JITTER) <= gap < nominal + 5.0, (retry, gap)


def test_the_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(max_retries=20, base_seconds=0.5, cap_seconds=8.0)

    first = [policy.backoff(0) for _ in range(200)]
    late = [policy.backoff(12) for _ in range(200)]

    assert all(0.5 * (1 - JITTER) <= pause <= 0.5 for pause in first)
    assert len(set(first)) > 150  # not one fixed pause: instances that failed together spread out
    assert all(8.0 * (1 - JITTER) <= pause <= 8.0 for pause in late)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(openai_server: FakeOpenAIServer, status: int) -> None:
    openai_server.inject(status, count=2, path="/v1/embeddings")

    vectors = embedder(openai_server, max_retries=2).embed(["text"])

    assert vectors.shape == (1, 1536)
    assert [r.status for r in openai_server.requests] == [status, status, 200]


def test_a_request_that_times_out_is_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject_delay(3.0, path="/v1/embeddings")

    vectors = embedder(openai_server, max_retries=1, timeout=0.3).embed(["slow text"])

    assert vectors.shape == (1, 1536)
    # The server notices the client hung up only when it next looks (every 50 ms).
    first, second = openai_server.requests
    assert (first.status in (CLIENT_CLOSED, NO_RESPONSE), second.status) == (True, 200)


def test_a_connection_reset_is_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject_reset(path="/v1/embeddings")

    vectors = embedder(openai_server, max_retries=1).embed(["text"])

    assert vectors.shape == (1, 1536)
    assert [r.status for r in openai_server.requests] == [NO_RESPONSE, 200]


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(429, retry_after=5, path="/v1/embeddings")

    # Waiting 5 s would outlast the invocation: the records go back to the queue instead.
    with pytest.raises(openai.RateLimitError):
        embedder(openai_server).embed(["text"], timeout=3)
    assert [r.status for r in openai_server.requests] == [429]


def test_a_retry_after_of_minutes_is_left_to_the_queue(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(429, retry_after=300, path="/v1/embeddings")

    with pytest.raises(openai.RateLimitError):
        embedder(openai_server).embed(["text"])
    assert len(openai_server.requests) == 1


def test_a_rejected_input_is_not_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(400, count=5, path="/v1/embeddings")

    with pytest.raises(EmbeddingInputError, match="Bad request"):
        embedder(openai_server).embed(["text"])
    assert len(openai_server.requests) == 1


# --- five instances, one account's limits -------------------------------------------------


@pytest.mark.parametrize("limit", ["requests", "tokens"])
def test_five_instances_against_the_api_stay_within_the_account_limits(
    openai_server: FakeOpenAIServer, limit: str
) -> None:
    instances, per_instance = 5, 5
    text = "quarterly report on the regional office budget " * 6
    tokens = len(embedder(openai_server).tokenizer.token_spans(text))
    # Two requests a second per instance by the limit under test, well below what the local
    # server answers, after a burst shortened to one request so a short run shows the rate.
    rpm, tpm = (600, None) if limit == "requests" else (None, 600 * tokens)
    rate, burst_seconds = 600 / 60 / instances, 0.5
    burst = rate * burst_seconds

    def run() -> None:
        # Each instance (a thread here) has its own embedder, client and budget, as in Lambda.
        budget = RateBudget(
            requests_per_minute=rpm, tokens_per_minute=tpm, share=instances, burst_seconds=burst_seconds
        )
        provider = embedder(openai_server, budget=budget)
        for _ in range(per_instance):
            provider.embed([text])

    threads = [threading.Thread(target=run) for _ in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    arrivals = sorted(r.received_at for r in openai_server.embedding_requests())
    assert len(arrivals) == instances * per_instance
    for window in (0.5, 1.0):
        busiest = max(sum(1 for t in arrivals if start <= t <= start + window) for start in arrivals)
        # A token bucket lets through at most its burst plus its rate over any window, here plus
        # one request per instance for arrival jitter: 15 and 20. Without budgets, the 25
        # requests arrive within about half a second.
        assert busiest <= instances * (burst + rate * window + 1), (window, busiest)


# --- records, queues and the DLQ ----------------------------------------------------------


@pytest.fixture
def stack(openai_env: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("AUTOTAG_OPENAI_MAX_RETRIES", "2")
    monkeypatch.setenv("AUTOTAG_OPENAI_BACKOFF_SECONDS", "0.02")
    monkeypatch.setenv("AUTOTAG_OPENAI_TIMEOUT_SECONDS", "1.0")
    with reprocess_stack(tmp_path, monkeypatch) as stack:
        yield stack


def ingest_driver(stack: Stack, **options: Any) -> QueueDriver:
    """The embed function's SQS poller, with the template's batch size, concurrency and retries."""
    local = stack.pipeline.stack
    return QueueDriver(
        local, local.ingest, local.rules.ingest, stack.pipeline.embed, "EmbedFunction", normalise=True, **options
    )


def text(n: int) -> bytes:
    topics = ("invoice", "lease", "outage", "hiring", "audit")
    return f"Note {n} about the {topics[n % 5]}: the {topics[n % 5]} plan and the {topics[n % 5]} review.".encode()


def rows(workspace: str) -> dict[str, tuple[Any, ...]]:
    """key → (status, reason, chunks stored, chunk_count) for each row; a key twice is an error."""
    found: dict[str, tuple[Any, ...]] = {}
    for key, *rest in committed(
        "SELECT d.key, d.status, d.reason, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.chunk_count"
        " FROM documents d WHERE d.workspace = %s",
        workspace,
    ):
        assert key not in found, key
        found[key] = tuple(rest)
    return found


def half_written() -> list[tuple[Any, ...]]:
    """Rows whose status, vector and chunks disagree: what a write cut in the middle would leave."""
    return committed(
        "SELECT d.key, d.status, d.embedding IS NOT NULL, d.chunk_count, count(c.ordinal) FROM documents d"
        " LEFT JOIN chunks c ON c.workspace = d.workspace AND c.document_id = d.id"
        " GROUP BY d.id HAVING (d.status = 'embedded') <> (d.embedding IS NOT NULL)"
        " OR coalesce(d.chunk_count, 0) <> count(c.ordinal)"
    )


def test_after_its_retries_a_record_goes_back_to_the_queue_and_the_next_delivery_succeeds(
    stack: Stack, openai_env: FakeOpenAIServer
) -> None:
    openai_env.inject(503, count=3, path="/v1/embeddings")  # every try of the first receive
    stack.put("acme/report.txt", text(1))
    driver = ingest_driver(stack)

    driver.drain()

    assert driver.stats.invocations == 2 and driver.stats.failed_records == 1
    assert [r.status for r in openai_env.requests] == [503, 503, 503, 200]
    assert rows("acme") == {"acme/report.txt": ("embedded", None, 1, 1)}
    assert dead_letters(stack.pipeline.stack, stack.pipeline.stack.ingest) == []


def test_a_record_failing_on_every_receive_is_dead_lettered_after_three_with_its_reason(
    stack: Stack, openai_env: FakeOpenAIServer
) -> None:
    openai_env.inject(503, count=9, path="/v1/embeddings")  # 3 receives x 3 tries
    stack.put("acme/report.txt", text(1))
    stack.put("acme/other.txt", text(2))
    driver = ingest_driver(stack)

    driver.drain()

    assert len(openai_env.requests) == 9 and openai_env.embedding_requests() == []
    dead = dead_letters(stack.pipeline.stack, stack.pipeline.stack.ingest)
    assert sorted(json.loads(m["Body"])["detail"]["object"]["key"] for m in dead) == [
        "acme/other.txt",
        "acme/report.txt",
    ]
    assert driver.stats.failed_records == 2 * 3  # both records, on each of their three receives
    for status, reason, chunks, _ in rows("acme").values():
        assert status == "failed" and "InternalServerError" in reason and chunks == 0


def test_a_mixture_of_faults_under_load_loses_nothing(stack: Stack, openai_env: FakeOpenAIServer) -> None:
    documents = 100  # ten batches, five invocations at once
    # The first request stalls past the client's timeout (its own fault is never answered);
    # then a rate limit with Retry-After, a reset, a 503 and a rate limit without Retry-After.
    openai_env.inject_delay(3.0, path="/v1/embeddings")
    openai_env.inject(500, path="/v1/embeddings")
    openai_env.inject(429, retry_after=0.05, path="/v1/embeddings")
    openai_env.inject_reset(path="/v1/embeddings")
    openai_env.inject(503, path="/v1/embeddings")
    openai_env.inject(429, path="/v1/embeddings")
    for n in range(documents):
        stack.put(f"acme/note {n}.txt", text(n))
    driver = ingest_driver(stack)

    driver.drain()

    statuses = [r.status for r in openai_env.requests]
    # The stall and the reset were not answered (the server sees a stall's hang-up only when
    # it next looks, so either mark may stand for it); the three errors were.
    assert sorted(s for s in statuses if s not in (200, CLIENT_CLOSED, NO_RESPONSE)) == [429, 429, 503]
    assert sum(s in (CLIENT_CLOSED, NO_RESPONSE) for s in statuses) == 2
    # Every document embedded exactly once, none left failed, nothing dead-lettered.
    assert sum(len(r.body["input"]) for r in openai_env.embedding_requests()) == documents
    assert set(rows("acme").values()) == {("embedded", None, 1, 1)} and len(rows("acme")) == documents
    assert dead_letters(stack.pipeline.stack, stack.pipeline.stack.ingest) == []
    # Retries are bounded: at most three tries per invocation.
    assert len(statuses) <= 3 * driver.stats.invocations


# --- the database -------------------------------------------------------------------------

KILL_MARKER = "backend-killer"


def kill_writes_of(marker: str, times: int) -> None:
    """The next `times` transactions inserting a chunk that contains `marker` lose their
    connection right there: the server ends the backend, between the document row and its chunks.

    The count is a sequence, which a rollback does not undo.
    """
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        admin.execute("CREATE SEQUENCE IF NOT EXISTS killed_writes")
        admin.execute(
            "CREATE OR REPLACE FUNCTION kill_writer() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.text LIKE '%%{marker}%%' AND nextval('killed_writes') <= {times} THEN"
            "   PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);"
            " END IF; RETURN NEW; END $$"
        )
        admin.execute(
            "CREATE OR REPLACE TRIGGER kill_writer BEFORE INSERT ON chunks FOR EACH ROW EXECUTE FUNCTION kill_writer()"
        )


def killed_writes() -> int:
    return int(committed("SELECT last_value FROM killed_writes")[0][0])


@pytest.mark.parametrize("kills", [1, 2], ids=["killed-once", "killed-on-the-retry-too"])
def test_a_connection_killed_in_the_middle_of_a_write_leaves_nothing_half_written(
    stack: Stack, openai_env: FakeOpenAIServer, kills: int
) -> None:
    stack.put("acme/contract.txt", b"Consulting agreement, first version: the services and the fees.")
    stack.put("acme/lease.txt", text(1))
    ingest_driver(stack).drain()
    first = committed("SELECT etag, embedding FROM documents WHERE key = 'acme/contract.txt'")[0]
    kill_writes_of(KILL_MARKER, kills)
    overwrite = f"Consulting agreement, second version ({KILL_MARKER}): new services and new fees.".encode()
    stack.put("acme/contract.txt", overwrite)
    for n in range(2, 6):
        stack.put(f"acme/note {n}.txt", text(n))
    snapshots: list[list[tuple[Any, ...]]] = []
    versions: list[tuple[Any, ...]] = []

    def after_each_batch(stats: DrainStats) -> None:
        snapshots.append(half_written())
        versions.append(committed("SELECT etag, embedding FROM documents WHERE key = 'acme/contract.txt'")[0])

    driver = ingest_driver(stack, on_batch=after_each_batch)
    driver.drain()

    assert killed_writes() >= kills
    assert snapshots and all(s == [] for s in snapshots)
    # Killed once: the write ran again on a new connection in the same invocation. Killed on that
    # retry too: the record went back to the queue, the document still whole in its old version.
    assert driver.stats.failed_records == (0 if kills == 1 else 1)
    if kills == 2:
        assert versions[0] == first  # the old version's etag and vector, as they were
    assert set(rows("acme").values()) == {("embedded", None, 1, 1)} and len(rows("acme")) == 6
    assert committed("SELECT etag FROM documents WHERE key = 'acme/contract.txt'")[0][0] == stack.etag(
        "acme/contract.txt"
    )
    assert (
        KILL_MARKER
        in committed(
            "SELECT text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.key = 'acme/contract.txt'"
        )[0][0]
    )


# --- S3: objects changing under the handler ------------------------------------------------


@pytest.fixture
def aws(openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with fake_aws(monkeypatch) as aws:
        yield aws


def created(key: str, etag: str, sequencer: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("eventbridge-object-created.json"))
    event["detail"]["object"].update(key=quote_plus(key, safe="/"), etag=etag, sequencer=sequencer)
    event["detail"]["object"].pop("version-id")
    return event


def deleted(key: str, sequencer: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("eventbridge-object-deleted.json"))
    event["detail"]["object"].update(key=quote_plus(key, safe="/"), sequencer=sequencer)
    return event


def put(aws: FakeAWS, key: str, body: bytes) -> str:
    return str(aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]).strip('"')


def embed(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handler("embed")(event, context or LocalContext("EmbedFunction", 60))


def after_first_read(action: Any) -> None:
    """Run `action` once, right after the embed function's first GetObject has returned: the
    object changes between the read and the write, on the handler's own S3 client."""
    fired = threading.Event()

    def hook(**_: Any) -> None:
        if not fired.is_set():
            fired.set()
            action()

    get_runtime().s3.meta.events.register("after-call.s3.GetObject", hook)


def in_another_invocation(event: dict[str, Any]) -> None:
    """A concurrent instance handling `event` to the end (its own thread, its own connection)."""
    thread = threading.Thread(target=embed, args=(event,))
    thread.start()
    thread.join(timeout=60)


def stored(key: str) -> tuple[str, str | None, str | None, list[tuple[str, Any]], Any]:
    """(status, etag, sequencer, [(chunk text, chunk vector)], document vector) of the key's one row."""
    (doc_id, status, etag, sequencer, vector), *more = query(
        "SELECT id, status, etag, sequencer, embedding FROM documents WHERE key = %s", key
    )
    assert more == []
    chunks = query("SELECT text, embedding FROM chunks WHERE document_id = %s ORDER BY ordinal", doc_id)
    return status, etag, sequencer, [(t, v) for t, v in chunks], vector


def assert_vector_of(key: str, marker: str) -> None:
    """The row's chunks and vector are those of the content containing `marker`, and only those."""
    _, _, _, chunks, vector = stored(key)
    assert len(chunks) == 1 and marker in chunks[0][0]
    expected = fake_embedding(chunks[0][0], 1536)
    assert np.allclose(as_array(chunks[0][1]), expected, atol=1e-5)
    assert np.allclose(as_array(vector), expected, atol=1e-5)


KEY = "demo/contracts/supplier.txt"
VERSION_A = b"Supplier agreement, version A: delivery of office chairs every month."
VERSION_B = b"Supplier agreement, version B: delivery of standing desks every quarter."


def test_an_object_overwritten_while_processed_keeps_the_newer_version(aws: FakeAWS) -> None:
    etag_a = put(aws, KEY, VERSION_A)
    etags: list[str] = []

    def overwrite_and_process() -> None:
        etags.append(put(aws, KEY, VERSION_B))
        in_another_invocation(created(KEY, etags[0], "0055AED6DCD90281F2"))

    after_first_read(overwrite_and_process)

    response = embed(created(KEY, etag_a, "0055AED6DCD90281F1"))

    # The handler read version A; B was written and embedded meanwhile: A's write is dropped.
    assert response["results"]["ignored"] == 1
    status, etag, sequencer, _, _ = stored(KEY)
    assert (status, etag, sequencer) == ("embedded", etags[0], "0055AED6DCD90281F2")
    assert_vector_of(KEY, "version B")


def test_an_object_overwritten_after_it_was_read_is_stored_as_the_version_read(aws: FakeAWS) -> None:
    etag_a = put(aws, KEY, VERSION_A)
    etags: list[str] = []
    after_first_read(lambda: etags.append(put(aws, KEY, VERSION_B)))

    embed(created(KEY, etag_a, "0055AED6DCD90281F1"))

    # Never "B with A's vector": the row names the version whose text it embedded...
    assert stored(KEY)[:2] == ("embedded", etag_a) and etags[0] != etag_a
    assert_vector_of(KEY, "version A")
    # ...so B's own event, arriving next, is not mistaken for "unchanged".
    embed(created(KEY, etags[0], "0055AED6DCD90281F2"))
    assert stored(KEY)[:2] == ("embedded", etags[0])
    assert_vector_of(KEY, "version B")


@pytest.mark.parametrize("delete_event_first", [True, False], ids=["delete-event-first", "delete-event-after"])
def test_an_object_deleted_while_processed_ends_deleted(aws: FakeAWS, delete_event_first: bool) -> None:
    etag_a = put(aws, KEY, VERSION_A)

    def delete() -> None:
        aws.s3.delete_object(Bucket=BUCKET, Key=KEY)
        if delete_event_first:
            in_another_invocation(deleted(KEY, "0055AED6DCD90281F2"))

    after_first_read(delete)

    embed(created(KEY, etag_a, "0055AED6DCD90281F1"))
    if not delete_event_first:
        assert stored(KEY)[0] == "embedded"  # what it read; the delete event is on its way
        embed(deleted(KEY, "0055AED6DCD90281F2"))

    status, _, sequencer, chunks, vector = stored(KEY)
    assert (status, sequencer, chunks, vector) == ("deleted", "0055AED6DCD90281F2", [], None)


def test_duplicate_and_out_of_order_events_in_one_batch_leave_one_row(
    aws: FakeAWS, openai_env: FakeOpenAIServer
) -> None:
    etag_a = put(aws, KEY, VERSION_A)
    etag_b = put(aws, KEY, VERSION_B)
    newer = json.dumps(created(KEY, etag_b, "0055AED6DCD90281F2"))
    older = json.dumps(created(KEY, etag_a, "0055AED6DCD90281F1"))

    response = embed(sqs_batch(newer, newer, older, newer))

    assert response["batchItemFailures"] == []
    # The current object was read four times but embedded once.
    assert [len(r.body["input"]) for r in openai_env.embedding_requests()] == [1]
    assert stored(KEY)[:3] == ("embedded", etag_b, "0055AED6DCD90281F2")
    assert_vector_of(KEY, "version B")


def sqs_batch(*bodies: str) -> dict[str, Any]:
    template = load_event("sqs-eventbridge-batch.json")["Records"][0]
    return {
        "Records": [copy.deepcopy(template) | {"messageId": f"message-{i}", "body": b} for i, b in enumerate(bodies)]
    }


# --- Lambda: out of time in the middle of a batch -------------------------------------------


def test_out_of_time_mid_batch_the_done_records_stay_done_and_only_the_rest_are_retried(
    aws: FakeAWS, openai_env: FakeOpenAIServer
) -> None:
    unchanged = "demo/finance/invoice.txt"
    gone = "demo/finance/old-invoice.txt"
    etag = put(aws, unchanged, b"Invoice 17 for consulting services, due in thirty days.")
    put(aws, gone, b"Invoice 3 for the office move, paid.")
    embed(
        sqs_batch(
            json.dumps(created(unchanged, etag, "0055AED6DCD90281F1")),
            json.dumps(created(gone, "x", "0055AED6DCD90281F1")),
        )
    )
    aws.s3.delete_object(Bucket=BUCKET, Key=gone)
    new = {f"demo/people/note-{n}.txt": text(n) for n in range(2)}
    new_bodies = [json.dumps(created(key, put(aws, key, body), "0055AED6DCD90281F3")) for key, body in new.items()]
    before = len(openai_env.embedding_requests())
    batch = sqs_batch(
        json.dumps(created(unchanged, etag, "0055AED6DCD90281F3")),
        json.dumps(deleted(gone, "0055AED6DCD90281F3")),
        *new_bodies,
    )
    # Two seconds before the reporting margin, and an embedding API slower than that.
    openai_env.inject_delay(10.0, path="/v1/embeddings")
    almost_over = LocalContext("EmbedFunction", timeout_seconds=REPORTING_MARGIN_SECONDS + 2)

    response = embed(batch, almost_over)

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["message-2", "message-3"]
    assert stored(unchanged)[0] == "embedded" and stored(gone)[0] == "deleted"
    # SQS delivers the two failed records again; they alone are embedded.
    retry = {"Records": [r for r in batch["Records"] if r["messageId"] in ("message-2", "message-3")]}
    assert embed(retry)["batchItemFailures"] == []
    inputs = [text for r in openai_env.embedding_requests()[before:] for text in r.body["input"]]
    assert len(inputs) == 2
    for key in (unchanged, *new):
        assert stored(key)[0] == "embedded" and len(stored(key)[3]) == 1
    assert query("SELECT count(*) FROM documents")[0][0] == 4


def test_a_batch_of_slow_documents_stops_preparing_in_time_to_embed_what_it_has(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read takes 1.25 s of a 4 s invocation that keeps half its time for embedding: after
    two reads, a third would leave no time to embed any of them, so it is handed back to the
    queue and the first two are embedded now (without the reserve, all three would fail)."""
    monkeypatch.setattr(ingest, "EMBED_RESERVE_SHARE", 0.5)
    keys = [f"demo/scans/report-{n}.txt" for n in range(3)]
    bodies = [json.dumps(created(key, put(aws, key, text(n)), "0055AED6DCD90281F1")) for n, key in enumerate(keys)]
    get_runtime().s3.meta.events.register("after-call.s3.GetObject", lambda **_: time.sleep(1.25))

    response = embed(sqs_batch(*bodies), LocalContext("EmbedFunction", timeout_seconds=REPORTING_MARGIN_SECONDS + 4))

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["message-2"]
    assert [stored(key)[0] for key in keys[:2]] == ["embedded", "embedded"]
    ((status, reason),) = query("SELECT status, reason FROM documents WHERE key = %s", keys[2])
    assert status == "failed" and "ran out of time" in reason


def test_an_invocation_stopped_by_its_timeout_is_redelivered_whole_without_duplicates(
    stack: Stack, openai_env: FakeOpenAIServer
) -> None:
    documents = 8
    calls: list[int] = []

    def times_out_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) > 1:
            return stack.pipeline.embed(event, context)
        # Lambda stops the invocation after half of its records were written: no response, so
        # SQS delivers the whole batch again once the visibility timeout ends.
        half = {"Records": event["Records"][: len(event["Records"]) // 2]}
        stack.pipeline.embed(half, context)
        raise TimeoutError("Task timed out after 300.00 seconds")

    for n in range(documents):
        stack.put(f"acme/note {n}.txt", text(n))
    local = stack.pipeline.stack
    driver = QueueDriver(local, local.ingest, local.rules.ingest, times_out_once, "EmbedFunction", normalise=True)

    driver.drain()

    assert calls == [documents, documents] and driver.stats.crashed_invocations == 1
    # Nothing lost, nothing twice: the written half was "unchanged" on the redelivery.
    assert sum(len(r.body["input"]) for r in openai_env.embedding_requests()) == documents
    assert set(rows("acme").values()) == {("embedded", None, 1, 1)} and len(rows("acme")) == documents
    assert dead_letters(local, local.ingest) == []


def test_a_stale_reconcile_event_for_an_oversized_object_does_not_replace_the_current_row(
    openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile pass listed a large object; it was overwritten with a small one, whose own
    S3 event was embedded first. The reconcile event's size is stale: it must not mark the
    current document skipped (it carries no sequencer to be ordered by)."""
    from autotag.events import object_created_event
    from tests.test_bad_input import batch, failed_ids

    monkeypatch.setenv("AUTOTAG_MAX_OBJECT_BYTES", "1024")
    key = "acme/doc.txt"
    with fake_aws(monkeypatch) as aws:
        aws.put(key, b"x " * 2000)
        head = aws.s3.head_object(Bucket=BUCKET, Key=key)
        stale = object_created_event(
            BUCKET, key, etag=head["ETag"].strip('"'), size=head["ContentLength"], sequencer=None, event_id="reconcile"
        )
        aws.put(key, b"Invoice 12 is overdue, please pay by transfer.")
        head = aws.s3.head_object(Bucket=BUCKET, Key=key)
        fresh = object_created_event(
            BUCKET, key, etag=head["ETag"].strip('"'), size=head["ContentLength"], sequencer="00B1", event_id="s3"
        )
        assert failed_ids(invoke("embed", batch(json.dumps(fresh)))) == []
        assert failed_ids(invoke("embed", batch(json.dumps(stale)))) == []
        (status, etag, sequencer), *others = query("SELECT status, etag, sequencer FROM documents WHERE key = %s", key)
    assert not others
    assert (status, etag, sequencer) == ("embedded", head["ETag"].strip('"'), "00B1")
