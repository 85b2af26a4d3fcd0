"""Per-process singletons a function needs: settings, database, embedder, AWS clients.

Built on first use (a cold start) and reused by every invocation of the execution
environment. `begin_invocation` checks the database connection first: one the server or
RDS Proxy dropped while the environment was frozen still looks open until a query fails.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
import psycopg

from autotag import database
from autotag.embeddings import Embedder, build_embedder, openai_client
from autotag.settings import Labeler, Settings, get_settings
from autotag.store import Store

if TYPE_CHECKING:
    from autotag.chat_labels import Namer

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()  # psycopg connections are not shared between threads
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """This thread's store, on an open connection, with the schema migrated once per process."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            with self._lock:
                if not self._migrated:
                    database.migrate(
                        conn, dimensions=self.settings.embedding_dimensions, model=self.settings.embedding_model
                    )
                    self._migrated = True
            self._local.conn = conn
        return Store(conn)

    def begin_invocation(self) -> Store:
        """The store, after making sure its connection still answers (reconnecting if not)."""
        store = self.store
        try:
            store.conn.execute("SELECT 1")
            store.conn.commit()
        except psycopg.OperationalError:
            logger.warning("database connection lost since the last invocation; reconnecting")
            store.conn.close()
            store = self.store
        return store

    def _connect(self) -> psycopg.Connection[Any]:
        # The URL is built per connection, not cached: with Secrets Manager it carries a
        # password that RDS rotates (get_secret caches it for five minutes).
        try:
            return database.connect(database.database_url(self.settings))
        except psycopg.OperationalError:
            if not self.settings.database_secret_arn:
                raise
            logger.warning("database connection failed; retrying with a freshly read secret")
            return database.connect(database.database_url(self.settings, force_fetch=True))

    @cached_property
    def embedder(self) -> Embedder:
        return build_embedder(self.settings)

    @cached_property
    def namer(self) -> Namer | None:
        """The chat labeler when AUTOTAG_LABELER=openai; None names categories by keywords only."""
        if self.settings.labeler is not Labeler.OPENAI:
            return None
        # Imported here: labels need scikit-learn, which only the ClusteringLayer carries.
        from autotag.chat_labels import ChatLabeler

        return ChatLabeler(openai_client(self.settings), self.settings.label_model)

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
