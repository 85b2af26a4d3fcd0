"""ClusterFunction: coalescing of requests, skipping covered ones, stable ids, bad messages."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.aws import FakeAWS, fake_aws, invoke, query
from tests.conftest import load_event
from tests.support.openai_server import FakeOpenAIServer

KINDS = {
    "invoices": "Invoice {n} for consulting services. Amount due 1,{n}00 EUR, payment within 30 days, bank transfer.",
    "leases": "Lease agreement {n}: the tenant rents the office premises, rent payable monthly, landlord repairs.",
    "outages": "Incident report {n}: database outage, failover to replica, latency alerts paged the on-call engineer.",
}


def embed_documents(aws: FakeAWS, kinds: dict[str, range]) -> None:
    records = []
    template = load_event("sqs-eventbridge-batch.json")["Records"][0]
    for kind, numbers in kinds.items():
        for n in numbers:
            key = f"demo/{kind}/{kind}-{n:03d}.txt"
            aws.put(key, KINDS[kind].format(n=n).encode())
            body = json.loads(template["body"])
            body["detail"]["object"].update(key=key, sequencer=f"00{n:016X}")
            body["detail"]["object"].pop("etag")
            record = copy.deepcopy(template)
            record.update(messageId=key, body=json.dumps(body))
            records.append(record)
    for start in range(0, len(records), 10):
        response = invoke("embed", {"Records": records[start : start + 10]})
        assert response["batchItemFailures"] == []


@pytest.fixture
def aws(openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with fake_aws(monkeypatch) as aws:
        yield aws


def cluster_batch(requests: list[dict[str, Any] | str]) -> dict[str, Any]:
    template = load_event("cluster-request.json")["Records"][0]
    records = []
    for i, request in enumerate(requests):
        record = copy.deepcopy(template)
        record.update(messageId=f"request-{i}", body=request if isinstance(request, str) else json.dumps(request))
        records.append(record)
    return {"Records": records}


def metric_total(output: str, name: str) -> float:
    total = 0.0
    for line in output.splitlines():
        if '"_aws"' in line and name in line:
            total += sum(json.loads(line)[name])
    return total


def categories() -> dict[str, tuple[str, int]]:
    return {row[0]: (row[1], row[2]) for row in query("SELECT id, label, size FROM categories ORDER BY id")}


def test_requests_for_one_workspace_cause_one_recompute(aws: FakeAWS, capsys: pytest.CaptureFixture[str]) -> None:
    embed_documents(aws, {kind: range(8) for kind in KINDS})
    capsys.readouterr()

    response = invoke("cluster", load_event("cluster-request.json"))

    assert response["batchItemFailures"] == []
    output = capsys.readouterr().out
    assert metric_total(output, "ClusterRecomputes") == 1
    found = categories()
    assert sorted(size for _, size in found.values()) == [8, 8, 8]
    members = query(
        "SELECT split_part(d.key, '/', 2), count(DISTINCT dc.category_id) FROM documents d"
        " JOIN document_categories dc ON dc.document_id = d.id GROUP BY 1"
    )
    assert all(count == 1 for _, count in members), members  # each kind is one category

    # The same requests again are covered by the clustering just made.
    invoke("cluster", load_event("cluster-request.json"))
    output = capsys.readouterr().out
    assert metric_total(output, "ClusterRecomputes") == 0
    assert metric_total(output, "ClusterRequestsSkipped") == 1


def test_ids_and_labels_survive_a_small_change(aws: FakeAWS) -> None:
    embed_documents(aws, {kind: range(10) for kind in KINDS})
    invoke("cluster", {"workspace": "demo", "change_version": 30})
    before = categories()

    embed_documents(aws, {"invoices": range(10, 11)})
    version = query("SELECT change_version FROM workspaces WHERE workspace = 'demo'")[0][0]
    invoke("cluster", {"workspace": "demo", "change_version": version})

    after = categories()
    assert set(after) == set(before)
    assert {i: label for i, (label, _) in after.items()} == {i: label for i, (label, _) in before.items()}
    assert sorted(size for _, size in after.values()) == [10, 10, 11]


def test_malformed_request_fails_alone(aws: FakeAWS) -> None:
    embed_documents(aws, {kind: range(4) for kind in KINDS})

    response = invoke(
        "cluster", cluster_batch(["not json", {"workspace": ""}, {"workspace": "demo", "change_version": 1}])
    )

    assert sorted(item["itemIdentifier"] for item in response["batchItemFailures"]) == ["request-0", "request-1"]
    assert len(categories()) >= 2


def test_empty_workspace_gets_no_categories(aws: FakeAWS) -> None:
    response = invoke("cluster", {"workspace": "nobody", "change_version": 0})

    assert response["recomputed"] is True and response["categories"] == 0
    assert categories() == {}
