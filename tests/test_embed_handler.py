"""EmbedFunction driven by the files in events/, against moto S3/SQS, a real PostgreSQL and the
real openai client talking to the local OpenAI-compatible server."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.aws import FakeAWS, fake_aws, invoke, query
from tests.conftest import load_event
from tests.support.openai_server import FakeOpenAIServer

CONTRACT = "demo/legal/contrat-de-prestation-société.md"
REMINDER = "demo/finance/payment reminder brightpath.txt"
POLICY = "demo/people/remote work policy.txt"
DESIGN = "demo/engineering/search+indexing-design.md"
LOAD_TEST = "demo/engineering/load test results 2026-02.txt"

TEXTS = {
    CONTRACT: b"# Consulting agreement\n\nThe consultant shall deliver the services described in the schedule.",
    REMINDER: b"Payment reminder: invoice INV-2025-0112 is overdue. Please pay the outstanding balance.",
    POLICY: b"Remote work policy\n\nEmployees may work from home up to three days a week.",
    DESIGN: b"# Search indexing design\n\nThe indexer consumes change events and updates the inverted index.",
    LOAD_TEST: b"Load test results: p50 latency 41 ms, p99 latency 180 ms at 2,000 requests per second.",
}


@pytest.fixture
def aws(openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with fake_aws(monkeypatch) as aws:
        for key, body in TEXTS.items():
            aws.put(key, body)
        yield aws


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def document(key: str) -> dict[str, Any]:
    rows = query(
        "SELECT status, reason, chunk_count, model, embedded_at, sequencer, (embedding IS NOT NULL)"
        " FROM documents WHERE key = %s",
        key,
    )
    assert len(rows) == 1, f"expected one row for {key!r}, found {len(rows)}"
    status, reason, chunks, model, embedded_at, sequencer, has_vector = rows[0]
    return {
        "status": status,
        "reason": reason,
        "chunks": chunks,
        "model": model,
        "embedded_at": embedded_at,
        "sequencer": sequencer,
        "has_vector": has_vector,
    }


def test_sqs_batch_embeds_every_document_in_one_provider_call(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    response = invoke("embed", load_event("sqs-eventbridge-batch.json"))

    assert failed_ids(response) == []
    for key in (CONTRACT, REMINDER):
        row = document(key)
        assert row["status"] == "embedded" and row["has_vector"] and row["chunks"] == 1
        assert row["model"] == "text-embedding-3-small"
    assert len(openai_env.embedding_requests()) == 1
    assert len(openai_env.embedding_requests()[0].body["input"]) == 2
    requests = aws.cluster_requests()
    assert [(r["workspace"], r["change_version"]) for r in requests] == [("demo", 2)]


def test_redelivered_batch_is_not_embedded_again(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    event = load_event("sqs-eventbridge-batch.json")
    invoke("embed", event)
    first = document(CONTRACT)["embedded_at"]

    response = invoke("embed", event)

    assert failed_ids(response) == []
    assert len(openai_env.embedding_requests()) == 1
    assert document(CONTRACT)["embedded_at"] == first


@pytest.mark.parametrize(
    ("event_file", "key"),
    [
        ("eventbridge-object-created.json", POLICY),
        ("s3-object-created.json", REMINDER),
        ("sqs-s3-object-created.json", LOAD_TEST),
    ],
    ids=["raw-eventbridge", "classic-s3", "classic-s3-in-sqs"],
)
def test_every_event_shape_embeds_the_decoded_key(aws: FakeAWS, event_file: str, key: str) -> None:
    response = invoke("embed", load_event(event_file))

    assert response.get("batchItemFailures", []) == []
    assert document(key)["status"] == "embedded"


def created_event_for(key: str, sequencer: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("eventbridge-object-created.json"))
    event["detail"]["object"].update(key=key.replace("+", "%2B").replace(" ", "+"), sequencer=sequencer)
    event["detail"]["object"].pop("etag")
    return event


def test_object_deleted_removes_document_chunks_and_assignments(aws: FakeAWS) -> None:
    invoke("embed", created_event_for(DESIGN, "0055AED6DCD90281E0"))
    invoke("cluster", {"workspace": "demo", "change_version": 1})
    assert query("SELECT count(*) FROM document_categories")[0][0] == 1
    aws.s3.delete_object(Bucket="autotag-local-documents", Key=DESIGN)

    invoke("embed", load_event("eventbridge-object-deleted.json"))

    row = document(DESIGN)
    assert row["status"] == "deleted" and not row["has_vector"]
    assert query("SELECT count(*) FROM chunks")[0][0] == 0
    assert query("SELECT count(*) FROM document_categories")[0][0] == 0


def test_event_older_than_the_stored_state_is_ignored(aws: FakeAWS) -> None:
    invoke("embed", created_event_for(DESIGN, "0055AED6DCD90281E0"))
    aws.s3.delete_object(Bucket="autotag-local-documents", Key=DESIGN)
    invoke("embed", load_event("eventbridge-object-deleted.json"))  # sequencer ...E6
    aws.put(DESIGN, TEXTS[DESIGN])  # S3 holds it again, but this event is older than the delete

    invoke("embed", created_event_for(DESIGN, "0055AED6DCD90281E1"))  # delivered late

    assert document(DESIGN)["status"] == "deleted"


def sqs_batch(*bodies: str) -> dict[str, Any]:
    template = load_event("sqs-eventbridge-batch.json")["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record.update(messageId=f"message-{i}", body=body)
        records.append(record)
    return {"Records": records}


def test_bad_records_fail_alone_and_the_batch_goes_on(aws: FakeAWS) -> None:
    aws.put("demo/engineering/diagram.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    aws.put("loose-file.txt", b"a file outside any workspace")
    batch = sqs_batch(
        json.dumps(created_event_for(POLICY, "0055AED6DCD90281E0")),
        "this is not JSON",
        json.dumps(created_event_for("demo/engineering/diagram.png", "0055AED6DCD90281E0")),
        json.dumps(created_event_for("loose-file.txt", "0055AED6DCD90281E0")),
    )

    response = invoke("embed", batch)

    # Not JSON, and a key outside any workspace: no row can carry the reason, the message does.
    assert failed_ids(response) == ["message-1", "message-3"]
    assert document(POLICY)["status"] == "embedded"
    skipped = document("demo/engineering/diagram.png")
    assert skipped["status"] == "skipped" and skipped["reason"] == "unsupported file type: PNG image (.png)"
    assert query("SELECT count(*) FROM documents WHERE key = 'loose-file.txt'")[0][0] == 0


def two_documents() -> dict[str, Any]:
    return sqs_batch(
        json.dumps(created_event_for(POLICY, "0055AED6DCD90281E0")),
        json.dumps(created_event_for(DESIGN, "0055AED6DCD90281E0")),
    )


def test_rejected_input_fails_only_its_document(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    # The batched request is rejected, then the first document's own request is rejected too.
    openai_env.inject(400, count=2, path="/v1/embeddings")

    response = invoke("embed", two_documents())

    assert failed_ids(response) == ["message-0"]
    failed = document(POLICY)
    assert failed["status"] == "failed" and "EmbeddingInputError" in failed["reason"]
    assert document(DESIGN)["status"] == "embedded"


def test_provider_outage_fails_the_batch_and_the_retry_recovers(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    openai_env.inject(503, path="/v1/embeddings")

    response = invoke("embed", two_documents())

    # No per-document retries against a provider that is down: both go back to the queue.
    assert failed_ids(response) == ["message-0", "message-1"]
    assert len(openai_env.requests) == 1
    assert "InternalServerError" in document(POLICY)["reason"]

    # The redelivery succeeds and clears the failure.
    assert failed_ids(invoke("embed", two_documents())) == []
    assert document(POLICY)["status"] == "embedded"
    assert document(POLICY)["reason"] is None


def test_object_gone_before_processing_is_not_a_failure(aws: FakeAWS) -> None:
    aws.s3.delete_object(Bucket="autotag-local-documents", Key=POLICY)

    response = invoke("embed", load_event("eventbridge-object-created.json"))

    assert response["results"]["ignored"] == 1
    assert query("SELECT count(*) FROM documents")[0][0] == 0


def test_metrics_are_emitted_per_invocation(aws: FakeAWS, capsys: pytest.CaptureFixture[str]) -> None:
    invoke("embed", load_event("sqs-eventbridge-batch.json"))

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    embedded = [m for m in metrics if "DocumentsEmbedded" in m]
    assert embedded and embedded[0]["DocumentsEmbedded"] == [2.0]


def test_a_wrong_setting_fails_the_cold_start_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from autotag.runtime import reset_runtime
    from autotag.settings import SettingsError
    from tests.aws import handler

    monkeypatch.setenv("AUTOTAG_EMBEDDING_PROVIDER", "openai")  # and no OPENAI_API_KEY
    reset_runtime()

    with pytest.raises(SettingsError, match="OPENAI_API_KEY"):
        handler("embed")


def test_a_connection_lost_between_invocations_is_replaced(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    invoke("embed", load_event("eventbridge-object-created.json"))
    backend = query("SELECT pg_backend_pid()")[0][0]
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))

    response = invoke("embed", load_event("sqs-eventbridge-batch.json"))

    assert failed_ids(response) == []
    assert document(CONTRACT)["status"] == "embedded"
    assert query("SELECT pg_backend_pid()")[0][0] != backend


def test_a_delete_handled_before_its_create_leaves_a_tombstone(aws: FakeAWS) -> None:
    # The create (older sequencer) is still in flight when the delete is processed.
    aws.s3.delete_object(Bucket="autotag-local-documents", Key=DESIGN)
    invoke("embed", load_event("eventbridge-object-deleted.json"))  # sequencer ...E6
    aws.put(DESIGN, TEXTS[DESIGN])  # even if S3 had the object again

    invoke("embed", created_event_for(DESIGN, "0055AED6DCD90281E1"))

    assert document(DESIGN)["status"] == "deleted"


def test_deleting_an_old_version_keeps_the_current_document(aws: FakeAWS) -> None:
    """Versioned bucket: a non-current version deleted or expired emits Object Deleted too."""
    invoke("embed", created_event_for(DESIGN, "0055AED6DCD90281E0"))

    invoke("embed", load_event("eventbridge-object-deleted.json"))  # the key still has an object

    row = document(DESIGN)
    assert row["status"] == "embedded" and row["has_vector"]
    assert row["sequencer"] == "0055AED6DCD90281E6"


def test_an_invocation_out_of_time_fails_its_records_for_a_retry(aws: FakeAWS, openai_env: FakeOpenAIServer) -> None:
    from autotag.handlers import REPORTING_MARGIN_SECONDS
    from autotag.local.driver import LocalContext
    from tests.aws import handler

    almost_over = LocalContext("EmbedFunction", timeout_seconds=REPORTING_MARGIN_SECONDS - 1)
    response = handler("embed")(two_documents(), almost_over)

    assert failed_ids(response) == ["message-0", "message-1"]
    assert "ran out of time" in document(POLICY)["reason"]
    assert openai_env.requests == []


def test_a_batch_reads_its_stored_documents_in_one_query(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    from autotag.store import Store

    invoke("embed", created_event_for(POLICY, "0055AED6DCD90281E0"))  # stored before: unchanged below
    lookups: list[int] = []
    batch_lookup = Store.get_documents

    def counted(self: Store, refs: Any) -> Any:
        lookups.append(len(refs))
        return batch_lookup(self, refs)

    def one_by_one(self: Store, ref: Any) -> Any:
        raise AssertionError(f"read {ref.key} alone")

    monkeypatch.setattr(Store, "get_documents", counted)
    monkeypatch.setattr(Store, "get_document", one_by_one)
    keys = (POLICY, DESIGN, LOAD_TEST, REMINDER)
    response = invoke("embed", sqs_batch(*(json.dumps(created_event_for(k, "0055AED6DCD90281E1")) for k in keys)))

    assert failed_ids(response) == [] and lookups == [4]
    assert [document(k)["status"] for k in keys] == ["embedded"] * 4
    assert document(POLICY)["sequencer"] == "0055AED6DCD90281E1"  # unchanged content, identity moved on


def test_if_the_batch_lookup_fails_each_document_reads_its_own_row(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autotag.store import Store

    def broken(self: Store, refs: Any) -> Any:
        self.conn.execute("SELECT no_such_column FROM documents")

    monkeypatch.setattr(Store, "get_documents", broken)
    invoke("embed", created_event_for(DESIGN, "0055AED6DCD90281E0"))  # stored first: older below

    response = invoke("embed", two_documents())

    assert failed_ids(response) == []
    assert document(POLICY)["status"] == "embedded"
    assert document(DESIGN)["embedded_at"] is not None
    assert document(DESIGN)["sequencer"] == "0055AED6DCD90281E0"
