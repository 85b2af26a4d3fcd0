"""Security: workspaces never mix (a test that tries, and a static check of every SQL statement),
labels are cleaned and bounded whoever names them, and the database is reached over TLS."""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from autotag.categorize import recompute_workspace
from autotag.database import connect, database_url, migrate, tls_for_remote_hosts
from autotag.events import object_created_event
from autotag.labels import clean_keywords, clean_label, unique_label
from autotag.runtime import get_runtime, reset_runtime
from autotag.settings import LOCAL_MODEL, Settings, SettingsError, load_settings
from autotag.store import ObjectRef, Store
from tests.aws import BUCKET, FakeAWS, fake_aws, invoke, query
from tests.conftest import ROOT
from tests.support.openai_server import FakeOpenAIServer
from tests.test_labels import DIMENSIONS, INCIDENTS, INVOICES, LEASES, WORKSPACE, Library, version

# --- workspace isolation, tried -------------------------------------------------------------

A, B = "acme", "acme-eu"  # B's name begins with A's: a prefix match would mix them
RELATIVE_KEYS = [f"finance/invoice-{i}.txt" for i in range(len(INVOICES))] + [
    f"legal/lease-{i}.txt" for i in range(len(LEASES))
]
TEXTS = dict(zip(RELATIVE_KEYS, INVOICES + LEASES, strict=True))


@pytest.fixture
def aws(openai_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with fake_aws(monkeypatch) as aws:
        ingest = aws.sqs.create_queue(QueueName="IngestQueue")["QueueUrl"]
        monkeypatch.setenv("AUTOTAG_INGEST_QUEUE_URL", ingest)
        reset_runtime()
        yield aws


def sqs_batch(bodies: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "receiptHandle": f"h{i}", "body": body, "eventSource": "aws:sqs", "attributes": {}}
            for i, body in enumerate(bodies)
        ]
    }


def created(aws: FakeAWS, key: str) -> str:
    head = aws.s3.head_object(Bucket=BUCKET, Key=key)
    etag = str(head["ETag"]).strip('"')
    return json.dumps(
        object_created_event(BUCKET, key, etag=etag, size=head["ContentLength"], sequencer="00A1", event_id=key)
    )


def snapshot(workspace: str) -> dict[str, Any]:
    """Everything stored for `workspace`: rows, chunks, categories, assignments, bookkeeping."""
    return {
        "documents": query(
            "SELECT key, status, etag, embedded_at, updated_at FROM documents WHERE workspace = %s ORDER BY key",
            workspace,
        ),
        "chunks": query("SELECT document_id, ordinal FROM chunks WHERE workspace = %s ORDER BY 1, 2", workspace),
        "categories": query(
            "SELECT id, label, keywords, size, updated_at FROM categories WHERE workspace = %s ORDER BY id", workspace
        ),
        "assignments": query(
            "SELECT document_id, category_id FROM document_categories WHERE workspace = %s ORDER BY 1", workspace
        ),
        "workspace": query("SELECT change_version, clustered_version FROM workspaces WHERE workspace = %s", workspace),
    }


def test_two_workspaces_with_the_same_keys_and_texts_never_mix(aws: FakeAWS) -> None:
    for key, text in TEXTS.items():
        aws.put(f"{A}/{key}", text.encode())
        aws.put(f"{B}/{key}", f"{text} Copy kept by the EU office.".encode())
    # One batch, the two workspaces interleaved.
    bodies = [created(aws, f"{ws}/{key}") for key in RELATIVE_KEYS for ws in (A, B)]
    assert invoke("embed", sqs_batch(bodies))["batchItemFailures"] == []
    requests = aws.cluster_requests()
    assert sorted(r["workspace"] for r in requests) == [A, B]
    for request in requests:
        invoke("cluster", request)

    store = get_runtime().store
    ids = {
        ws: {key: doc for doc, key in query("SELECT id, key FROM documents WHERE workspace = %s", ws)} for ws in (A, B)
    }
    assert len(ids[A]) == len(ids[B]) == len(RELATIVE_KEYS)
    # Nothing stored under one workspace points at the other's rows.
    assert query(
        "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.workspace <> d.workspace"
    ) == [(0,)]
    assert query(
        "SELECT count(*) FROM document_categories dc JOIN documents d ON d.id = dc.document_id"
        " JOIN categories c ON c.id = dc.category_id AND c.workspace = dc.workspace"
        " WHERE d.workspace <> dc.workspace"
    ) == [(0,)]
    for ws, other in ((A, B), (B, A)):
        own, foreign = set(ids[ws].values()), set(ids[other].values())
        categories = store.load_categories(ws)
        assert len(categories) == 2 and sum(c.size for c in categories) == len(RELATIVE_KEYS)
        assert set().union(*(c.document_ids for c in categories)) == own
        doc_ids, keys, vectors = store.load_embedded_vectors(ws, "text-embedding-3-small")
        assert set(doc_ids) == own and all(key.startswith(f"{ws}/") for key in keys) and len(vectors) == len(own)
        assert store.load_texts(ws, sorted(foreign), max_chars=100) == {}  # another's ids read nothing
        assert len(store.load_texts(ws, sorted(own), max_chars=100)) == len(own)
        assert store.get_document(ObjectRef(ws, BUCKET, f"{other}/{RELATIVE_KEYS[0]}")) is None
        assert [r.key for r in store.document_rows(ws)] == sorted(ids[ws])
    store.conn.commit()
    category_ids = {
        ws: {row[0] for row in query("SELECT id FROM categories WHERE workspace = %s", ws)} for ws in (A, B)
    }
    assert not category_ids[A] & category_ids[B]  # ids derive from the workspace too

    # A delete in A of a key B also has: only A's row goes, and only A is re-clustered.
    before_b = snapshot(B)
    aws.s3.delete_object(Bucket=BUCKET, Key=f"{A}/legal/lease-0.txt")
    deleted = {
        "source": "aws.s3",
        "detail-type": "Object Deleted",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": f"{A}/legal/lease-0.txt", "sequencer": "00B1"}},
    }
    invoke("embed", deleted)
    [request] = aws.cluster_requests()
    assert request["workspace"] == A
    invoke("cluster", request)
    assert query("SELECT status FROM documents WHERE key = %s", f"{A}/legal/lease-0.txt") == [("deleted",)]
    assert snapshot(B) == before_b

    # A reconcile of A does not see B's lost delete; B's own reconcile does, and leaves A alone.
    aws.s3.delete_object(Bucket=BUCKET, Key=f"{B}/finance/invoice-0.txt")  # its event is lost
    before_a = snapshot(A)
    pass_a = invoke("reprocess", {"workspace": A})
    assert pass_a["reconcile"]["objects"] == len(RELATIVE_KEYS) - 1 and pass_a["reconcile"]["gone"] == 0
    assert snapshot(B) == before_b and snapshot(A) == before_a
    pass_b = invoke("reprocess", {"workspace": B})
    assert pass_b["completed_workspaces"] == [B] and pass_b["reconcile"]["tombstoned"] == 1
    assert query("SELECT status FROM documents WHERE key = %s", f"{B}/finance/invoice-0.txt") == [("deleted",)]
    assert snapshot(A) == before_a
    assert [r["workspace"] for r in aws.cluster_requests()] == [B]


# --- every SQL statement is parameterised and scoped by workspace, statically ---------------------

PACKAGE = ROOT / "layers" / "shared" / "autotag"
WORKSPACE_TABLES = frozenset(
    {"documents", "chunks", "categories", "document_categories", "workspaces", "reconcile_cursors"}
)
_TABLES = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)", re.IGNORECASE)
_SCOPED = re.compile(r"\bworkspace\s*=\s*(?:%s|ANY\(%s\))", re.IGNORECASE)
_JOINS = re.compile(
    r"\bJOIN\s+\w+(?:\s+\w+)?\s+ON\s+(.*?)(?=\bLEFT\b|\bJOIN\b|\bWHERE\b|\bGROUP\b|$)", re.IGNORECASE | re.DOTALL
)
_INSERT_COLUMNS = re.compile(r"\bINSERT\s+INTO\s+\w+(?:\s+AS\s+\w+)?\s*\(([^)]*)\)", re.IGNORECASE)
# Statements that read across workspaces on purpose, each with the reason.
CROSS_WORKSPACE = {
    "SELECT workspace FROM workspaces ORDER BY workspace": "the operator's status view lists every workspace",
    "SELECT workspace FROM workspaces WHERE (workspace || '/') COLLATE \"C\" > %s "
    "ORDER BY (workspace || '/') COLLATE \"C\" LIMIT %s": "a reconcile sweep walks the workspaces one by one",
    "SELECT to_regclass('workspaces') IS NOT NULL": "whether the schema exists yet",
}


def sql_calls(source: str) -> list[tuple[int, ast.expr]]:
    """(line, first argument) of every `.execute(...)` / `.executemany(...)` call in `source`."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"execute", "executemany"}
            and node.args
        ):
            calls.append((node.lineno, node.args[0]))
    return calls


def sql_problems(source: str) -> list[str]:
    """What is wrong with the SQL of `source`: built from strings, or not scoped by workspace."""
    problems = []
    for line, argument in sql_calls(source):
        if _is_composed_migration(argument):
            continue
        if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
            problems.append(f"line {line}: SQL built at run time ({type(argument).__name__}), not a literal")
            continue
        statement = " ".join(argument.value.split())
        problems += [f"line {line}: {problem}: {statement}" for problem in _scope_problems(statement)]
    return problems


def _is_composed_migration(argument: ast.expr) -> bool:
    # psycopg's sql.SQL(...).format(...) with sql.Literal: a shipped migration file, values quoted by psycopg.
    return (
        isinstance(argument, ast.Call)
        and isinstance(argument.func, ast.Attribute)
        and argument.func.attr == "format"
        and isinstance(argument.func.value, ast.Call)
        and ast.unparse(argument.func.value.func) == "sql.SQL"
    )


def _scope_problems(statement: str) -> list[str]:
    tables = {name.lower() for name in _TABLES.findall(statement)}
    if not tables & WORKSPACE_TABLES or statement in CROSS_WORKSPACE:
        return []
    problems = []
    columns = _INSERT_COLUMNS.search(statement)
    inserts_workspace = columns is not None and "workspace" in [c.strip() for c in columns.group(1).split(",")]
    if not (_SCOPED.search(statement) or inserts_workspace):
        problems.append("no workspace predicate")
    if re.match(r"\s*(UPDATE|DELETE)\b", statement, re.IGNORECASE) and not _SCOPED.search(statement):
        problems.append("an UPDATE or DELETE not limited to one workspace")
    problems += [
        f"a join without a workspace condition ({on.strip()})"
        for on in _JOINS.findall(statement)
        if "workspace" not in on
    ]
    return problems


def test_every_sql_statement_is_a_parameterised_literal_scoped_by_workspace() -> None:
    problems = {}
    statements = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        statements += len(sql_calls(source))
        if found := sql_problems(source):
            problems[str(path.relative_to(ROOT))] = found
    assert problems == {}
    assert statements >= 40  # the check did look at the store's statements


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("conn.execute(f\"SELECT id FROM documents WHERE key = '{key}'\")", "not a literal"),
        ('conn.execute("SELECT id FROM documents WHERE key = %s" % key)', "not a literal"),
        ('conn.execute("DELETE FROM chunks WHERE id = {}".format(i))', "not a literal"),
        ('conn.execute("SELECT id FROM documents WHERE key = %s", (key,))', "no workspace predicate"),
        ('conn.execute("UPDATE categories SET label = %s WHERE id = %s", (l, i))', "not limited to one workspace"),
        (
            'conn.execute("SELECT d.id FROM documents d JOIN chunks c ON c.document_id = d.id WHERE d.workspace = %s")',
            "a join without a workspace condition",
        ),
    ],
    ids=["f-string", "percent", "format", "unscoped-select", "unscoped-update", "unscoped-join"],
)
def test_the_sql_check_catches_what_it_looks_for(source: str, problem: str) -> None:
    found = sql_problems(source)
    assert found and any(problem in line for line in found)


def test_ruff_forbids_sql_built_from_strings_in_the_package() -> None:
    """S608 (SQL built by string formatting) is on for the package: the `S` rules, not ignored there."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]["lint"]
    assert "S" in config["select"] and "S608" not in config.get("ignore", [])
    assert all(
        "S608" not in rules or not glob.startswith("layers") for glob, rules in config["per-file-ignores"].items()
    )


# --- labels: cleaned and bounded, whoever names them -------------------------------------------


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("<b>Leases</b>\n<script>alert(1)</script>", "Leases alert(1)"),
        ("Leases\r\n\tand   Rentals", "Leases and Rentals"),
        ("\u202eLeases\u200b \x00Rentals\x1b[31m", "Leases Rentals 31m"),
        ("\uff2c\uff45\uff41\uff53\uff45\uff53", "Leases"),
        ("Invoices &amp; Payments", "Invoices Payments"),
        ("**Leases** | `Rentals` # {x}", "Leases Rentals x"),
        ("Telecommunications Internationalisation Reconciliation Overview", "Telecommunications Internationalisation"),
        ("Invoices and Payments and Reconciliation of Supplier", "Invoices and Payments and Reconciliation"),
        ("X" * 300, "X" * 48),
        ("<>\n\u200b", ""),
    ],
    ids=[
        "markup",
        "whitespace",
        "controls-and-bidi",
        "fullwidth",
        "entities",
        "markdown",
        "word-boundary",
        "dangling",
        "one-long-word",
        "nothing-left",
    ],
)
def test_clean_label(hostile: str, expected: str) -> None:
    assert clean_label(hostile) == expected
    assert len(clean_label(hostile)) <= 48


def test_an_empty_label_falls_back_and_keywords_are_bounded() -> None:
    assert unique_label("<script></script>", [], set()) == "Miscellaneous"
    assert unique_label("\u200b", ["lease", "tenant"], set()) == "Lease and Tenant"
    assert clean_keywords(["<b>", "a" * 100, "lease", "lease", *[f"word{i}" for i in range(20)]]) == [
        "a" * 32,
        "lease",
        *[f"word{i}" for i in range(10)],
    ]


LONG_WORD = "antidisestablishmentarianism-counterrevolutionaries"  # one 51-character keyword


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    conn = connect(database_url)
    migrate(conn, dimensions=DIMENSIONS, model=LOCAL_MODEL)
    yield Store(conn)
    conn.close()


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTOTAG_") or name in {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}:
            monkeypatch.delenv(name)


def stored_categories(store: Store) -> list[tuple[str, list[str]]]:
    rows = store.conn.execute("SELECT label, keywords FROM categories WHERE workspace = %s", (WORKSPACE,)).fetchall()
    store.conn.commit()
    return [(str(label), list(keywords)) for label, keywords in rows]


def assert_clean(categories: list[tuple[str, list[str]]], max_chars: int) -> None:
    for label, keywords in categories:
        assert label and label == clean_label(label, max_chars) and len(label) <= max_chars
        assert keywords and all(k == clean_label(k, 32) for k in keywords) and len(keywords) <= 12


def test_keyword_labels_and_labels_kept_from_before_are_cleaned(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("AUTOTAG_MAX_LABEL_CHARS", "24")
    settings = load_settings()
    library = Library(store)
    library.group("invoice", 0, [f"{text} {LONG_WORD}" for text in INVOICES], 10)
    library.group("lease", 1, LEASES, 10)
    recompute_workspace(store, settings, WORKSPACE, version(store))
    categories = stored_categories(store)
    assert_clean(categories, 24)
    assert any(k.startswith("antidisestablishment") for _, keywords in categories for k in keywords)

    # A label stored by an older version, with markup in it, is cleaned when it is kept.
    store.conn.execute(
        "UPDATE categories SET label = %s WHERE workspace = %s AND 'lease' = ANY(keywords)",
        ("<i>Lease</i>\nStuff", WORKSPACE),
    )
    store.conn.commit()
    library.add("invoice-10.txt", 0, INVOICES, 10)  # the lease category's membership is unchanged
    recompute_workspace(store, settings, WORKSPACE, version(store))
    labels = [label for label, _ in stored_categories(store)]
    assert "Lease Stuff" in labels
    assert_clean(stored_categories(store), 24)


HOSTILE_REPLIES = {
    # Passes the chat validation (4 plain words, under 60 characters): cut to 48 at a word.
    "lease": "Telecommunications Internationalisation Reconciliation",
    "invoice": "\u202eInvoices",  # a bidi override: refused, the keyword label stands
    "incident": "<b>Incidents</b>",  # markup: refused
}


def hostile_model(messages: list[Any]) -> str:
    prompt = str(messages[-1].get("content", "")).lower()
    return next(reply for kind, reply in HOSTILE_REPLIES.items() if kind in prompt)


def test_chat_labels_are_cleaned_or_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("AUTOTAG_LABELER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    reset_runtime()
    settings = get_runtime().settings
    openai_server.chat_replier = hostile_model
    library = Library(store)
    library.group("lease", 1, LEASES, 10)
    library.group("invoice", 0, INVOICES, 10)
    library.group("incident", 2, INCIDENTS, 10)

    recompute_workspace(store, settings, WORKSPACE, version(store), namer=get_runtime().namer)

    categories = stored_categories(store)
    assert len(categories) == 3
    assert_clean(categories, 48)
    labels = {label for label, _ in categories}
    assert "Telecommunications Internationalisation" in labels
    others = labels - {"Telecommunications Internationalisation"}
    assert len(others) == 2 and all(" and " in label for label in others)  # the keyword labels
    reset_runtime()


# --- TLS to the database, secrets from Secrets Manager -------------------------------------------


def test_a_database_secret_requires_an_sslmode_that_refuses_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("AUTOTAG_DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:db")
    assert load_settings().database_sslmode == "require"
    for mode in ("prefer", "allow", "disable"):
        monkeypatch.setenv("AUTOTAG_DATABASE_SSLMODE", mode)
        with pytest.raises(SettingsError, match=f"AUTOTAG_DATABASE_SSLMODE='{mode}' would allow an unencrypted"):
            load_settings()
    monkeypatch.setenv("AUTOTAG_DATABASE_SSLMODE", "verify-full")
    assert load_settings().database_sslmode == "verify-full"


@pytest.mark.parametrize(
    ("url", "expected_sslmode"),
    [
        ("postgresql://app@db.example.com/autotag", "require"),
        ("postgresql://app@db.example.com/autotag?sslmode=verify-full", "verify-full"),
        ("postgresql://app@db.example.com/autotag?sslmode=disable", "disable"),  # said on purpose
        ("host=10.0.0.5,db2.example.com dbname=autotag", "require"),
        ("postgresql://app@localhost/autotag", None),
        ("postgresql://app@127.0.0.1:5433/autotag", None),
        ("host=/tmp/pg dbname=autotag", None),
        ("dbname=autotag", None),
    ],
)
def test_a_remote_database_url_gets_tls(url: str, expected_sslmode: str | None) -> None:
    import psycopg

    assert psycopg.conninfo.conninfo_to_dict(tls_for_remote_hosts(url)).get("sslmode") == expected_sslmode


def test_an_operators_pgsslmode_is_not_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq lets a URL's sslmode win over PGSSLMODE: writing `require` would weaken verify-full."""
    import psycopg

    monkeypatch.setenv("PGSSLMODE", "verify-full")
    url = tls_for_remote_hosts("postgresql://app@db.example.com/autotag")
    assert "sslmode" not in psycopg.conninfo.conninfo_to_dict(url)


def test_kept_labels_that_clean_to_the_same_text_stay_distinct() -> None:
    """Two stored labels cut to the same words at a shorter bound, or one wrapped in markup,
    must not become two filters with one name."""
    import numpy as np

    from autotag.categorize import _kept_labels
    from autotag.labels import Naming
    from autotag.store import CategoryRecord

    def old(label: str, ids: set[int]) -> CategoryRecord:
        return CategoryRecord(f"c-{label}", label, [], np.zeros(2, dtype=np.float32), len(ids), sorted(ids))

    members = [{1, 2}, {3, 4}, {5, 6}, {7, 8}]
    olds: list[CategoryRecord | None] = [
        old("Invoice and Payment", members[0]),
        old("Invoice and Payment 2", members[1]),
        old("<b>Leases</b>", members[2]),
        old("Leases", members[3]),
    ]
    namings = [Naming("x", ["invoice", "payment", "receipt"])] * 2 + [Naming("y", ["lease", "tenant"])] * 2
    kept = _kept_labels(olds, members, namings, 16)
    assert all(kept)
    assert len({label.lower() for label in kept if label}) == 4
    assert all(len(label) <= 16 and "<" not in label for label in kept if label)


def test_the_secret_path_builds_a_tls_url_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password comes from the secret (moto's Secrets Manager), never from the environment."""
    import boto3
    import psycopg
    from moto import mock_aws

    clean_env(monkeypatch)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="autotag/db",
            SecretString=json.dumps(
                {"username": "autotag", "password": "s3cr3t", "host": "cluster.example", "port": 5432}
            ),
        )["ARN"]
        monkeypatch.setenv("AUTOTAG_DATABASE_SECRET_ARN", arn)
        monkeypatch.setenv("AUTOTAG_DATABASE_HOST", "proxy.example")
        params = psycopg.conninfo.conninfo_to_dict(database_url(Settings()))
    assert params["host"] == "proxy.example" and params["password"] == "s3cr3t"
    assert params["sslmode"] == "require"
    assert not any("s3cr3t" in value for value in os.environ.values())
