"""MigrateFunction, the custom resource that migrates the schema on deploy: driven by
events/cloudformation-schema-create.json, answering a real HTTP server the way CloudFormation's
presigned ResponseURL would be answered, against a real PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from autotag.database import migration_files
from autotag.runtime import reset_runtime
from autotag.schema_resource import PHYSICAL_RESOURCE_ID, ResourceEventError
from tests.aws import invoke
from tests.conftest import load_event


class CloudFormationEndpoint:
    """Receives the PUT answers a custom resource sends to its ResponseURL."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        self.content_types: list[str | None] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                endpoint.answers.append(json.loads(self.rfile.read(length)))
                endpoint.content_types.append(self.headers.get("Content-Type"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cloudformation-response"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cloudformation() -> Iterator[CloudFormationEndpoint]:
    endpoint = CloudFormationEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def local_settings(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AUTOTAG_EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("AUTOTAG_EMBEDDING_MODEL", "text-embedding-3-small")
    return database_url


def _request(cloudformation: CloudFormationEndpoint, request_type: str = "Create") -> dict[str, Any]:
    event = load_event("cloudformation-schema-create.json")
    event["ResponseURL"] = cloudformation.url
    event["RequestType"] = request_type
    return event


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_create_applies_every_migration_and_answers_success(
    cloudformation: CloudFormationEndpoint, local_settings: str
) -> None:
    invoke("migrate", _request(cloudformation))

    [answer] = cloudformation.answers
    latest = migration_files()[-1][0]
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == PHYSICAL_RESOURCE_ID
    assert answer["LogicalResourceId"] == "DatabaseSchema"
    assert answer["RequestId"] == "6f2a4c1e-2d3b-4e5f-8a9b-0c1d2e3f4a5b"
    assert answer["Data"] == {"SchemaVersion": latest, "Applied": ",".join(v for v, _ in migration_files())}
    # The presigned URL is signed for an empty content type; anything else gets a 403 from S3.
    assert cloudformation.content_types == [""]
    assert {"documents", "chunks", "categories", "document_categories", "schema_migrations"} <= _tables(local_settings)


def test_update_is_idempotent_and_keeps_the_physical_id(
    cloudformation: CloudFormationEndpoint, local_settings: str
) -> None:
    invoke("migrate", _request(cloudformation, "Create"))
    invoke("migrate", _request(cloudformation, "Update"))

    first, second = cloudformation.answers
    assert second["Status"] == "SUCCESS"
    assert second["Data"]["Applied"] == "none"
    # A changed physical id would make CloudFormation delete the "old" schema.
    assert first["PhysicalResourceId"] == second["PhysicalResourceId"]


def test_delete_keeps_the_schema(cloudformation: CloudFormationEndpoint, local_settings: str) -> None:
    invoke("migrate", _request(cloudformation, "Create"))
    invoke("migrate", _request(cloudformation, "Delete"))

    assert cloudformation.answers[-1]["Status"] == "SUCCESS"
    assert "documents" in _tables(local_settings)


def test_dimension_mismatch_fails_the_deploy_with_the_reason(
    cloudformation: CloudFormationEndpoint, local_settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("migrate", _request(cloudformation))
    monkeypatch.setenv("AUTOTAG_EMBEDDING_DIMENSIONS", "512")  # a stack update shortening the vectors
    reset_runtime()  # a new deploy: new function instances read the new settings
    invoke("migrate", _request(cloudformation, "Update"))

    answer = cloudformation.answers[-1]
    assert answer["Status"] == "FAILED"
    assert "1536-dimensional" in answer["Reason"] and "produces 512" in answer["Reason"]


def test_a_bad_setting_is_answered_not_left_waiting(
    cloudformation: CloudFormationEndpoint, local_settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOTAG_EMBEDDING_DIMENSIONS", "many")

    invoke("migrate", _request(cloudformation))

    [answer] = cloudformation.answers
    assert answer["Status"] == "FAILED"
    assert "EMBEDDING_DIMENSIONS" in answer["Reason"].upper()


def test_an_unreachable_database_is_answered_as_failed(
    cloudformation: CloudFormationEndpoint, local_settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")

    invoke("migrate", _request(cloudformation))

    [answer] = cloudformation.answers
    assert answer["Status"] == "FAILED"
    assert "OperationalError" in answer["Reason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RequestType": None}, "no RequestType"),
        ({"RequestType": "Rename"}, "unknown RequestType"),
        ({"ResponseURL": "ftp://example.com/answer"}, "https"),
    ],
)
def test_not_a_cloudformation_request_is_rejected(change: dict[str, Any], message: str) -> None:
    event = load_event("cloudformation-schema-create.json")
    for key, value in change.items():
        if value is None:
            del event[key]
        else:
            event[key] = value

    with pytest.raises(ResourceEventError, match=message):
        invoke("migrate", event)
