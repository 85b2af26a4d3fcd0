"""Shared fixtures: a real embedded PostgreSQL with pgvector, moto, the fake OpenAI server,
and the event files in events/ (the same ones `sam local invoke -e` uses)."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from autotag.database import embedded_database_url
from autotag.runtime import reset_runtime
from tests.support.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"


def corpus(name: str) -> Path:
    """A labelled corpus from the shared research folder, read in place (never copied here).

    It sits beside the checkout (../shared/corpora); AUTOTAG_CORPORA points elsewhere, and
    /work/shared/corpora is where this workplace keeps it for clones made outside /work.
    """
    candidates = [Path(os.environ["AUTOTAG_CORPORA"])] if os.environ.get("AUTOTAG_CORPORA") else []
    candidates += [ROOT.parent / "shared" / "corpora", Path("/work/shared/corpora")]
    for folder in candidates:
        if (folder / name).is_dir():
            return folder / name
    raise AssertionError(f"corpus {name!r} not found in {', '.join(map(str, candidates))}")


def load_event(name: str) -> dict[str, Any]:
    """An event file from events/, parsed."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server every test database lives on: DATABASE_URL if given, else an embedded one.

    Not under pytest's tmp_path: pytest prunes old run folders, which can pull the files from
    under a server another run still uses.
    """
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return embedded_database_url(Path(tempfile.mkdtemp(prefix="autotag-test-pg-")), delete_on_exit=True)


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(postgres_url, dbname=name)
    yield url
    reset_runtime()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(dimensions=1536) as server:
        yield server


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAIServer, database_url: str) -> FakeOpenAIServer:
    """Settings for the openai provider against the local server and a fresh database."""
    monkeypatch.setenv("AUTOTAG_EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("AUTOTAG_OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("DATABASE_URL", database_url)
    reset_runtime()
    return openai_server


@pytest.fixture(autouse=True)
def _powertools_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What template.yaml's Globals set for every function, minus X-Ray (no daemon here)."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "autotag")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Autotag")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    for name in list(os.environ):
        if name.startswith(("AUTOTAG_", "OPENAI_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    # A local run quiets Powertools for its own output (LOCAL_POWERTOOLS); not for later tests.
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_LOG_LEVEL", raising=False)
    yield
    # The handler modules' Powertools Logger keeps one stream handler, bound to the sys.stdout
    # of the test that created it, which pytest closes afterwards: point it at the real one.
    for handler in logging.getLogger("autotag").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.__stdout__  # not setStream(): it flushes the closed one
