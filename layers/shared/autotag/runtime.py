"""Per-process singletons a function needs: settings, database, embedder, AWS clients.

Built on first use (a cold start) and reused by every invocation of the execution
environment; the database connection is reopened when it was lost between invocations.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

import boto3
import psycopg

from autotag import database
from autotag.embeddings import Embedder, build_embedder
from autotag.settings import Settings, get_settings
from autotag.store import Store

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()  # psycopg connections are not shared between threads
        self._migrated = False
        self._lock = threading.Lock()

    @cached_property
    def database_url(self) -> str:
        return database.database_url(self.settings)

    @property
    def store(self) -> Store:
        """This thread's store, on a live connection, with the schema migrated once per process."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = database.connect(self.database_url)
            with self._lock:
                if not self._migrated:
                    database.migrate(
                        conn, dimensions=self.settings.embedding_dimensions, model=self.settings.embedding_model
                    )
                    self._migrated = True
            self._local.conn = conn
        return Store(conn)

    @cached_property
    def embedder(self) -> Embedder:
        return build_embedder(self.settings)

    @cached_property
    def s3(self) -> Any:
        return boto3.client("s3")

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime


def reset_runtime() -> None:
    """Forget the process's runtime and settings (the local stack and tests switch environments)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None
        get_settings.cache_clear()
