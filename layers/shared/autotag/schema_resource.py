"""The CloudFormation custom resource that applies the schema migrations on every deploy.

CloudFormation sends Create/Update/Delete and then waits for an answer PUT to a presigned
URL; a function that raises without answering leaves the stack waiting until the resource's
ServiceTimeout. So every outcome, failures included, is answered, and a failure carries the
reason (a dimension mismatch, an unreachable database) into the stack's events, where the
operator running `sam deploy` sees it.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from autotag import database
from autotag.settings import Settings

logger = logging.getLogger(__name__)

# Stable across updates: a new physical id would make CloudFormation "replace" the schema and
# send a Delete for the old one.
PHYSICAL_RESOURCE_ID = "autotag-schema"
# CloudFormation rejects a response body over 4 KB; the reason is what may be long.
_MAX_REASON = 1000
_RESPONSE_TIMEOUT_SECONDS = 30


class ResourceEventError(ValueError):
    """The event is not a CloudFormation custom resource request."""


@dataclass(frozen=True)
class ResourceRequest:
    request_type: str  # Create, Update or Delete
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ResourceRequest:
        try:
            request = cls(
                request_type=str(event["RequestType"]),
                response_url=str(event["ResponseURL"]),
                stack_id=str(event["StackId"]),
                request_id=str(event["RequestId"]),
                logical_resource_id=str(event["LogicalResourceId"]),
            )
        except KeyError as exc:
            raise ResourceEventError(f"not a CloudFormation custom resource event: no {exc.args[0]}") from None
        if request.request_type not in {"Create", "Update", "Delete"}:
            raise ResourceEventError(f"unknown RequestType {request.request_type!r}")
        # CloudFormation always answers on https; anything else is not a request from it.
        if urlparse(request.response_url).scheme != "https" and not _is_loopback(request.response_url):
            raise ResourceEventError("ResponseURL must be an https URL")
        return request


def _is_loopback(url: str) -> bool:
    # The tests answer to a real HTTP server on the loopback interface.
    parsed = urlparse(url)
    return parsed.scheme == "http" and parsed.hostname in {"127.0.0.1", "localhost"}


def handle_schema_resource(event: dict[str, Any], load_settings: Callable[[], Settings]) -> dict[str, Any]:
    """Migrate on Create and Update; keep the schema on Delete. Always answers CloudFormation.

    Settings are loaded inside, so that a bad setting is answered as FAILED too.
    """
    request = ResourceRequest.from_event(event)
    try:
        data = _apply(request, load_settings)
    except Exception as exc:
        logger.exception("schema migration failed")
        reason = f"{type(exc).__name__}: {exc}"
        return _respond(request, "FAILED", reason=reason, data={})
    return _respond(request, "SUCCESS", reason="", data=data)


def _apply(request: ResourceRequest, load_settings: Callable[[], Settings]) -> dict[str, str]:
    if request.request_type == "Delete":
        # The database outlives the stack (snapshot on delete); dropping tables here would lose
        # every vector on a stack rename or rollback.
        logger.info("Delete: schema left in place")
        return {}
    settings = load_settings()
    conn = database.connect(database.database_url(settings))
    try:
        applied = database.migrate(conn, dimensions=settings.embedding_dimensions, model=settings.embedding_model)
    finally:
        conn.close()
    latest = database.migration_files()[-1][0]
    logger.info("schema at %s; applied now: %s", latest, applied or "nothing")
    return {"SchemaVersion": latest, "Applied": ",".join(applied) or "none"}


def _respond(request: ResourceRequest, status: str, *, reason: str, data: dict[str, str]) -> dict[str, Any]:
    body = {
        "Status": status,
        "Reason": (reason or "see the function's log")[:_MAX_REASON],
        "PhysicalResourceId": PHYSICAL_RESOURCE_ID,
        "StackId": request.stack_id,
        "RequestId": request.request_id,
        "LogicalResourceId": request.logical_resource_id,
        "Data": data,
    }
    payload = json.dumps(body).encode("utf-8")
    # The presigned URL is signed for an empty content type.
    put = urllib.request.Request(  # noqa: S310 - the scheme was checked in ResourceRequest
        request.response_url, data=payload, method="PUT", headers={"Content-Type": ""}
    )
    # A failed answer raises: CloudFormation invokes custom resources asynchronously, so Lambda
    # retries the whole request (the migrations are idempotent) and the answer gets another try.
    with urllib.request.urlopen(put, timeout=_RESPONSE_TIMEOUT_SECONDS) as response:  # noqa: S310
        logger.info("answered CloudFormation %s: HTTP %s", status, response.status)
    return body
