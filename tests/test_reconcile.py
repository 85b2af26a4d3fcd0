"""ReprocessFunction's reconcile, end to end: objects whose events were lost, overwritten or deleted
without a trace, and rows of another model are found and repaired through the real embed path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Metrics

from autotag.cli import main
from autotag.events import object_created_event, parse_notification
from autotag.handlers import handle_reprocess
from autotag.local.driver import LocalContext
from autotag.runtime import get_runtime, reset_runtime
from autotag.store import ObjectRef, ObjectVersion
from tests.conftest import TEMPLATE, load_event
from tests.reprocess_support import Stack, committed, query, queued_keys, reprocess_stack, rows_by_key, take_all
from tests.support.openai_server import FakeOpenAIServer

MODEL = "text-embedding-3-small"
OLD_MODEL = "text-embedding-3-large"


def text(topic: str) -> bytes:
    return f"Notes about {topic}: the {topic} plan, the {topic} budget and the {topic} review.".encode()


@pytest.fixture
def stack(openai_env: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with reprocess_stack(tmp_path, monkeypatch) as stack:
        yield stack


def embed_with_model(stack: Stack, monkeypatch: pytest.MonkeyPatch, model: str, uploads: dict[str, bytes]) -> None:
    """Upload and embed with `model` configured (same 1536 dimensions: a model change, same database)."""
    monkeypatch.setenv("AUTOTAG_EMBEDDING_MODEL", model)
    monkeypatch.setenv("AUTOTAG_EMBEDDING_DIMENSIONS", "1536")
    reset_runtime()
    for key, body in uploads.items():
        stack.put(key, body)
    stack.drain(cluster=False)


def broken_workspace(stack: Stack, monkeypatch: pytest.MonkeyPatch, ws: str) -> None:
    """One object of each kind reconcile must find, with the events that would have fixed it lost."""
    embed_with_model(stack, monkeypatch, OLD_MODEL, {f"{ws}/old model.txt": text("archive")})
    embed_with_model(
        stack,
        monkeypatch,
        MODEL,
        {
            f"{ws}/fine.txt": text("hiring"),
            f"{ws}/gone.txt": text("travel"),
            f"{ws}/over+written.md": text("audit"),
            f"{ws}/back again.txt": text("legal"),
        },
    )
    stack.delete(f"{ws}/back again.txt")  # a tombstone...
    stack.drain(cluster=False)
    stack.put(f"{ws}/never embedded ü.txt", text("pricing"))
    stack.put(f"{ws}/back again.txt", text("legal"))  # ...and the upload after it, both lost
    stack.put(f"{ws}/over+written.md", text("security"))
    stack.delete(f"{ws}/gone.txt")
    stack.lose_events()
    take_all(stack.sqs, stack.pipeline.stack.cluster.url)  # categories are not what is tested here


def assert_consistent(stack: Stack, ws: str) -> None:
    """Every object has exactly one up-to-date row; a gone object only a tombstone without chunks."""
    rows = rows_by_key(ws)
    present = {key for key in stack.keys(f"{ws}/") if not key.endswith("/")}  # a folder marker is not a document
    for key in present:
        assert rows.get(key) == [("embedded", stack.etag(key), MODEL, 1)], key
    for key in rows.keys() - present:
        assert rows[key] == [("deleted", None, None, 0)], key


def test_reconcile_finds_each_kind_and_the_embed_path_repairs_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, openai_env: FakeOpenAIServer
) -> None:
    broken_workspace(stack, monkeypatch, "acme")

    response = stack.reprocess({"workspace": "acme"})

    counts = response["reconcile"]
    assert response["complete"] and response["completed_workspaces"] == ["acme"]
    assert (counts["missing"], counts["stale"], counts["other_model"], counts["gone"]) == (2, 1, 1, 1)
    assert (counts["enqueued"], counts["tombstoned"], counts["objects"]) == (4, 1, 5)
    assert response["redrive"] == {}  # a workspace's pass leaves the shared DLQs alone
    # The tombstone of an embedded document changed the categories: a recompute was requested.
    cluster_queue = stack.pipeline.stack.cluster.url
    waiting = stack.sqs.get_queue_attributes(QueueUrl=cluster_queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert waiting["Attributes"]["ApproximateNumberOfMessages"] == "1"
    requests_before = len(openai_env.embedding_requests())
    stack.drain()
    assert_consistent(stack, "acme")
    # The four re-enqueued documents were embedded; the up-to-date one was not touched.
    embedded = [text for r in openai_env.embedding_requests()[requests_before:] for text in r.body["input"]]
    assert len(embedded) == 4 and not any("hiring" in t for t in embedded)
    assert query("SELECT change_version = clustered_version FROM workspaces WHERE workspace = 'acme'") == [(True,)]

    again = stack.reprocess({"workspace": "acme"})["reconcile"]
    assert again["missing"] + again["stale"] + again["other_model"] + again["gone"] + again["enqueued"] == 0


def test_a_failing_overwrite_of_an_embedded_document_is_left_to_its_dlq_message_not_retried_every_pass(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The document keeps its old version's row and vector while the new version fails: that row
    is not "stale" to the reconcile, which would otherwise enqueue the failing version on every
    pass, past the redrive's cap of 3."""
    key = "acme/contract.txt"
    embed_with_model(stack, monkeypatch, MODEL, {key: text("lease")})
    stack.put(key, text("renewal"))
    stack.lose_events()  # its event is being retried through the DLQ instead
    new_version = ObjectVersion(stack.etag(key), None, None, None)
    get_runtime().store.write_failure(ObjectRef("acme", stack.bucket, key), new_version, "BadRequestError: rejected")
    assert rows_by_key("acme")[key][0][0] == "embedded"

    for _ in range(2):
        counts = stack.reprocess({"workspace": "acme"})["reconcile"]
        assert (counts["failed"], counts["stale"], counts["enqueued"]) == (1, 0, 0)
    assert queued_keys(take_all(stack.sqs, stack.pipeline.stack.ingest.url)) == []

    # Overwritten once more, the row is stale again: that version has not been tried.
    stack.put(key, text("termination"))
    stack.lose_events()
    counts = stack.reprocess({"workspace": "acme"})["reconcile"]
    assert (counts["failed"], counts["stale"], counts["enqueued"]) == (0, 1, 1)


def test_a_workspace_pass_never_touches_another_workspace(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    broken_workspace(stack, monkeypatch, "demo")
    broken_workspace(stack, monkeypatch, "demo2")  # shares the prefix "demo"
    other_before = rows_by_key("demo2")

    response = stack.reprocess(load_event("reprocess-workspace.json"))

    assert response["trigger"] == "manual" and response["completed_workspaces"] == ["demo"]
    queued = queued_keys(take_all(stack.sqs, stack.pipeline.stack.ingest.url))
    assert len(queued) == 4 and all(key.startswith("demo/") for key in queued)
    assert rows_by_key("demo2") == other_before
    assert query("SELECT workspace FROM reconcile_cursors") == [("demo",)]


def test_autotag_reprocess_embeds_files_whose_events_were_lost(
    openai_env: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Objects restored into the local bucket at start-up arrive without events, like lost ones.
    mirror = tmp_path / "state" / "s3" / "autotag-local-documents" / "acme"
    mirror.mkdir(parents=True)
    (mirror / "plan.txt").write_bytes(text("roadmap"))
    (mirror / "notes.md").write_bytes(text("retro"))
    args = ["--template", str(TEMPLATE), "--data-dir", str(tmp_path / "state")]

    assert main([*args, "reprocess", "--workspace", "acme"]) == 0

    result = json.loads(capsys.readouterr().out)
    assert [p["reconcile"]["missing"] for p in result["passes"]] == [2]
    assert result["drained"]["EmbedFunction"]["records"] == 2
    statuses = query("SELECT key, status, model FROM documents ORDER BY key")
    assert statuses == [("acme/notes.md", "embedded", MODEL), ("acme/plan.txt", "embedded", MODEL)]


def test_a_scheduled_pass_reconciles_every_workspace(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    broken_workspace(stack, monkeypatch, "acme")
    broken_workspace(stack, monkeypatch, "beta")
    stack.put("no-workspace.txt", text("root"))  # a key the embed path ignores: not a workspace
    stack.put("beta/", b"")  # a folder marker: no document
    stack.put("beta/reports/", b"")  # nor one inside the workspace: never "missing"
    stack.lose_events()

    response = stack.reprocess(load_event("scheduled-event.json"))

    assert response["trigger"] == "schedule" and response["complete"]
    assert response["completed_workspaces"] == ["acme", "beta"]
    assert response["reconcile"]["missing"] == 4 and response["reconcile"]["gone"] == 2
    stack.drain(cluster=False)
    assert_consistent(stack, "acme")
    assert_consistent(stack, "beta")


def test_a_large_workspace_continues_across_invocations(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_RECONCILE_PAGE_SIZE", "3")
    reset_runtime()
    gone, lost = [0, 3, 6, 9, 10, 11, 12, 13], [1, 2, 4, 5, 7, 8]
    for i in gone:  # rows of objects deleted since, around and between the lost uploads
        stack.put(f"big/{i:02d}.txt", text(f"topic{i}"))
    stack.drain(cluster=False)
    for i in gone:
        stack.delete(f"big/{i:02d}.txt")
    for i in lost:
        stack.put(f"big/{i:02d}.txt", text(f"topic{i}"))
    stack.lose_events()

    # No time left: every invocation compares one page (3 keys), saves its place and stops.
    responses = [stack.reprocess({"workspace": "big"}, timeout=0)]
    cursors = [committed("SELECT after_key FROM reconcile_cursors WHERE workspace = 'big'")]
    while not responses[-1]["complete"]:
        responses.append(stack.reprocess({"workspace": "big"}, timeout=0))
        cursors.append(committed("SELECT after_key FROM reconcile_cursors WHERE workspace = 'big'"))

    assert [r["reconcile"]["pages"] for r in responses] == [1, 1, 1, 1]
    # A page ends at the third object listed or the third row read, whichever key comes first.
    assert cursors == [[("big/04.txt",)], [("big/10.txt",)], [("big/13.txt",)], [(None,)]]
    assert sum(r["reconcile"]["missing"] for r in responses) == len(lost)
    assert sum(r["reconcile"]["gone"] for r in responses) == len(gone)
    queued = queued_keys(take_all(stack.sqs, stack.pipeline.stack.ingest.url))
    assert sorted(queued) == [f"big/{i:02d}.txt" for i in lost]
    assert {rows[0][0] for rows in rows_by_key("big").values()} == {"deleted"}


def test_a_sweep_continues_with_the_next_workspace(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for ws in ("a", "b", "c"):
        stack.put(f"{ws}/doc.txt", text(ws))
    stack.lose_events()

    responses = [stack.reprocess(load_event("scheduled-event.json"), timeout=0)]
    while not responses[-1]["complete"]:
        responses.append(stack.reprocess(load_event("scheduled-event.json"), timeout=0))

    assert [r["completed_workspaces"] for r in responses] == [["a"], ["b"], ["c"]]
    assert sorted(queued_keys(take_all(stack.sqs, stack.pipeline.stack.ingest.url))) == [
        "a/doc.txt",
        "b/doc.txt",
        "c/doc.txt",
    ]
    # The next pass starts over: a sweep that finished is not continued.
    assert stack.reprocess(load_event("scheduled-event.json"))["completed_workspaces"] == ["a", "b", "c"]


def test_an_alarm_back_to_ok_does_nothing(stack: Stack) -> None:
    stack.put("acme/doc.txt", text("x"))
    stack.lose_events()
    event = load_event("cloudwatch-alarm-state-change.json")
    event["detail"]["state"]["value"] = "OK"

    response = stack.reprocess(event)

    assert response == {"trigger": "alarm", "alarm": "autotag-dev-IngestDLQAlarm-1A2B3C4D5E6F", "actionable": False}
    assert take_all(stack.sqs, stack.pipeline.stack.ingest.url) == []
    assert query("SELECT count(*) FROM reconcile_cursors") == [(0,)]


@pytest.mark.parametrize("key", ["acme/a b+c%d.txt", "acme/société/ünïcode.md", "acme/x/../y.txt"])
def test_the_re_enqueued_event_carries_the_key_as_the_embed_handler_reads_it(key: str) -> None:
    event: dict[str, Any] = object_created_event("bucket", key, etag="e", size=3, sequencer="0A", event_id="1")

    [change] = parse_notification(event)

    assert (change.key, change.etag, change.size, change.sequencer, change.kind.value) == (key, "e", 3, "0A", "created")


def test_the_counts_are_powertools_metrics_too(stack: Stack) -> None:
    for key in ("acme/one.txt", "acme/two.txt"):
        stack.put(key, text(key))
    stack.lose_events()
    metrics = Metrics(namespace="Autotag", service="autotag")
    metrics.clear_metrics()  # Powertools shares one metric set between instances; start empty

    response = handle_reprocess({"workspace": "acme"}, LocalContext("ReprocessFunction", 900), metrics)

    emitted: dict[str, Any] = dict(metrics.serialize_metric_set())  # EMF: the values sit beside "_aws"
    assert response["reconcile"]["missing"] == 2
    assert emitted["ReprocessMissing"] == [2.0] and emitted["ReprocessEnqueued"] == [2.0]
    assert emitted["ReprocessObjectsChecked"] == [2.0] and emitted["ReprocessGone"] == [0.0]


def test_an_object_uploaded_back_during_the_page_is_not_tombstoned(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race between the listing and the rows: an upload lands right after the page's listing."""
    from autotag.runtime import get_runtime

    embed_with_model(stack, monkeypatch, MODEL, {"acme/report.txt": text("hiring")})
    stack.delete("acme/report.txt")
    stack.lose_events()
    listings: list[int] = []

    def upload_after_the_first_listing(**_: Any) -> None:
        listings.append(1)
        if len(listings) == 1:
            stack.put("acme/report.txt", text("hiring"))  # same content: the row is still current
            stack.lose_events()

    # A botocore event hook on the reprocessor's own client: the upload happens between its
    # page listing and its tombstone, where a real upload could.
    get_runtime().s3.meta.events.register("after-call.s3.ListObjectsV2", upload_after_the_first_listing)

    counts = stack.reprocess({"workspace": "acme"})["reconcile"]

    assert counts["gone"] == 1  # the page saw a row without its object...
    assert counts["tombstoned"] == 0  # ...but the object was back before the tombstone
    assert rows_by_key("acme")["acme/report.txt"] == [("embedded", stack.etag("acme/report.txt"), MODEL, 1)]
