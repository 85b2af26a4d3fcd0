"""Tests for autotag.labels (offline category names) and for autotag.categorize.recompute_workspace,
which groups a workspace's stored vectors, names the groups and keeps ids and labels stable."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import psycopg
import pytest

from autotag.categorize import RecomputeResult, recompute_workspace
from autotag.chunking import Chunk
from autotag.database import connect, migrate
from autotag.embeddings import normalise
from autotag.labels import MAX_LABEL_LENGTH, STOP_WORDS, Naming, name_categories
from autotag.settings import LOCAL_MODEL, Settings
from autotag.store import CategoryRecord, EmbeddedContent, ObjectRef, ObjectVersion, Store

INVOICES = [
    "Larkspur sent the invoice for March consulting work. Payment of the amount due, VAT included, is expected by "
    "bank transfer.",
    "Please pay this invoice from Larkspur within thirty days. The amount due includes VAT and a late payment fee "
    "applies after the due date.",
    "Larkspur invoice for software licences: the unit price, VAT and the amount due are listed below. Payment by bank "
    "transfer only.",
    "Reminder from Larkspur: the invoice issued last month is overdue. Kindly settle the outstanding amount, VAT "
    "included, by transfer.",
    "This invoice covers the hosting subscription billed by Larkspur. VAT is charged at the standard rate and payment "
    "is due on receipt.",
    "Credit note and corrected invoice from Larkspur. The amount due after VAT has changed, so please adjust the "
    "payment accordingly.",
]
LEASES = [
    "This lease agreement is made between the landlord and the tenant for the premises at Harbour Street. The monthly "
    "rent is payable in advance.",
    "The tenant shall keep the premises in good repair. The landlord may inspect the premises with notice; rent "
    "increases follow the lease terms.",
    "Under this lease the tenant pays a security deposit and monthly rent. The landlord is responsible for structural "
    "repairs to the premises.",
    "Either party may terminate the lease with three months notice. The tenant returns the keys and the landlord "
    "refunds the deposit.",
    "The lease term is five years with an option to renew. Rent is reviewed annually and the tenant may not sublet "
    "the premises.",
    "Schedule to the lease: the landlord provides parking for the tenant, and the rent includes service charges for "
    "the premises.",
]
INCIDENTS = [
    "Incident report: the database server went down and customers saw errors. The engineer on call restored service "
    "and the outage lasted an hour.",
    "During the incident the load balancer dropped traffic. The outage affected customers in Europe; the root cause "
    "was an expired certificate.",
    "Postmortem of the incident: a failed deployment caused an outage of the checkout service. Engineers rolled back "
    "and monitoring alerted.",
    "The incident began when disk space ran out on the logging server. Customers reported slow pages before the "
    "outage was resolved.",
    "Incident summary: network latency spiked, an outage followed, and the engineer escalated to the vendor. Root "
    "cause analysis is ongoing.",
    "An alert fired for the payment gateway and the incident was declared. The outage was mitigated by failing over "
    "to the standby server.",
]
KINDS = {"invoice": INVOICES, "lease": LEASES, "incident": INCIDENTS}
INVOICE_WORDS = {"invoice", "payment", "vat", "amount", "due", "billing", "bill", "transfer", "bank", "fee"}


def check_label(naming: Naming) -> None:
    """1 to 4 title-cased words, "A and B" for two keywords, no stop words, short enough."""
    label = naming.label
    assert label, naming
    assert len(label) <= MAX_LABEL_LENGTH
    words = label.split(" ")
    assert 1 <= len(words) <= 4, label
    if "and" in words:
        assert len(words) == 3, label
        assert words[1] == "and", label
    named = [word for word in words if word != "and" and not word.isdigit()]
    assert named, label
    for word in named:
        assert word == word.capitalize(), f"{word!r} of {label!r} is not title-cased"
        assert word.lower() not in STOP_WORDS, f"{word!r} of {label!r} is a stop word"
    if naming.keywords:
        assert {word.lower() for word in named} <= set(naming.keywords), naming


def check_keywords(naming: Naming) -> None:
    for keyword in naming.keywords:
        assert keyword == keyword.lower()
        assert keyword not in STOP_WORDS
        assert len(keyword) > 2
    assert len(set(naming.keywords)) == len(naming.keywords)


# --- name_categories -------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_kinds() -> list[Naming]:
    return name_categories([INVOICES, LEASES, INCIDENTS])


def test_labels_are_well_formed_and_distinct(three_kinds: list[Naming]) -> None:
    assert len(three_kinds) == 3
    for naming in three_kinds:
        check_label(naming)
        check_keywords(naming)
        assert naming.keywords, naming
    assert len({naming.label.lower() for naming in three_kinds}) == 3


def test_two_keyword_labels_are_joined_by_and(three_kinds: list[Naming]) -> None:
    for naming in three_kinds:
        first, second = naming.keywords[:2]
        assert naming.label == f"{first.capitalize()} and {second.capitalize()}"


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, INVOICE_WORDS), (1, {"lease", "tenant", "landlord", "rent", "premise"}), (2, {"incident", "outage"})],
    ids=["invoices", "leases", "incidents"],
)
def test_top_keyword_names_the_kind(three_kinds: list[Naming], index: int, expected: set[str]) -> None:
    assert three_kinds[index].keywords[0] in expected
    assert three_kinds[index].label.split(" ")[0].lower() in expected


def test_keywords_are_specific_to_their_category(three_kinds: list[Naming]) -> None:
    invoice, lease, incident = (set(naming.keywords) for naming in three_kinds)
    assert "invoice" in invoice
    assert "invoice" not in lease | incident
    assert "tenant" in lease
    assert "tenant" not in invoice | incident
    assert "outage" in incident


def test_plural_and_singular_are_one_keyword() -> None:
    texts = ["The tenants signed.", "A tenant moved in.", "Tenants and landlords met.", "The landlord agreed."]
    [naming] = name_categories([texts])
    assert "tenant" in naming.keywords
    assert "tenants" not in naming.keywords
    assert "landlord" in naming.keywords


def test_company_name_in_every_document_is_not_a_keyword(three_kinds: list[Naming]) -> None:
    assert all("Larkspur" in text for text in INVOICES)
    assert "larkspur" not in three_kinds[0].keywords


def test_company_name_written_in_lower_case_would_be_a_keyword() -> None:
    # The control for the test above: the word itself is not filtered, only its capitalised use.
    lowered = [text.replace("Larkspur", "larkspur") for text in INVOICES]
    [invoice, _, _] = name_categories([lowered, LEASES, INCIDENTS])
    assert "larkspur" in invoice.keywords


def test_acronym_is_not_a_keyword(three_kinds: list[Naming]) -> None:
    assert all("VAT" in text for text in INVOICES)
    assert "vat" not in three_kinds[0].keywords
    [invoice, _, _] = name_categories([[text.replace("VAT", "vat") for text in INVOICES], LEASES, INCIDENTS])
    assert "vat" in invoice.keywords


def test_capitalised_sentence_start_does_not_hide_a_common_word() -> None:
    texts = [
        "Invoice for plumbing work: this invoice lists every repair on the invoice.",
        "Invoice attached. The invoice covers window cleaning, see the invoice header.",
        "Invoice enclosed for catering; the invoice shows each dish and the invoice date.",
        "Invoice for painting the hallway, the invoice is final and the invoice is paid.",
    ]
    [naming, _] = name_categories([texts, LEASES])
    assert naming.keywords[0] == "invoice"


@pytest.mark.parametrize(
    "categories",
    [[[]], [INVOICES, [], LEASES], [[], []], [["A B C"], ["VAT IBAN"]]],
    ids=["only-empty", "empty-in-the-middle", "two-empty", "nothing-nameable"],
)
def test_category_without_usable_words_gets_a_label(categories: list[list[str]]) -> None:
    namings = name_categories(categories)
    assert len(namings) == len(categories)
    for naming in namings:
        check_label(naming)
    assert len({naming.label.lower() for naming in namings}) == len(namings)


@pytest.mark.parametrize("copies", [2, 3, 5], ids=["two-copies", "three-copies", "five-copies"])
def test_duplicate_categories_get_distinct_labels(copies: int) -> None:
    namings = name_categories([INVOICES] * copies + [LEASES])
    assert len({naming.label.lower() for naming in namings}) == len(namings)
    for naming in namings:
        check_label(naming)
    assert namings[1].keywords == namings[0].keywords


def test_single_word_vocabulary_duplicates_get_numbered() -> None:
    namings = name_categories([["invoice invoice"], ["invoice"], ["invoice"]])
    assert [naming.label for naming in namings] == ["Invoice", "Invoice 2", "Invoice 3"]


def test_descriptive_words_are_not_used_as_label() -> None:
    texts = ["signed contract", "signed contract", "signed contract"]
    [naming] = name_categories([texts])
    assert naming.keywords == ["contract", "signed"]
    assert naming.label == "Contract"


def test_naming_is_deterministic() -> None:
    first = name_categories([INVOICES, LEASES, INCIDENTS])
    second = name_categories([list(reversed(INVOICES)), LEASES, list(reversed(INCIDENTS))])
    assert first == second


def test_keywords_per_category_caps_the_list() -> None:
    [naming] = name_categories([LEASES], keywords_per_category=3)
    assert len(naming.keywords) == 3


def test_no_categories() -> None:
    assert name_categories([]) == []


# --- recompute_workspace (integration) -------------------------------------------------

DIMENSIONS = 16
WORKSPACE = "team"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("AUTOTAG_") or name in {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}:
            monkeypatch.delenv(name)
    return Settings(min_categories=2, max_categories=10)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    conn = connect(database_url)
    migrate(conn, dimensions=DIMENSIONS, model=LOCAL_MODEL)
    yield Store(conn)
    conn.close()


class Library:
    """Writes synthetic documents: a vector near one of a few directions, chunk texts of one kind."""

    def __init__(self, store: Store, directions: int = 4, seed: int = 0) -> None:
        self.store = store
        self.rng = np.random.default_rng(seed)
        self.directions = normalise(self.rng.standard_normal((directions, DIMENSIONS)))
        self.writes = 0

    def add(self, key: str, direction: int, texts: Sequence[str], index: int) -> int:
        chunk_texts = [texts[index % len(texts)], texts[(index + 2) % len(texts)]]
        chunks = [Chunk(i, text, len(text.split())) for i, text in enumerate(chunk_texts)]
        chunk_vectors = normalise(
            self.directions[direction] + 0.05 * self.rng.standard_normal((len(chunks), DIMENSIONS))
        )
        content = EmbeddedContent(
            content_sha256=f"{index:064x}",
            content_type="text/plain",
            title=key.rsplit("/", 1)[-1],
            model=LOCAL_MODEL,  # what the default settings configure
            token_count=sum(chunk.token_count for chunk in chunks),
            chunks=chunks,
            chunk_vectors=chunk_vectors,
            vector=normalise(chunk_vectors.mean(axis=0, keepdims=True))[0],
        )
        self.writes += 1
        ref = ObjectRef(WORKSPACE, "drive", key)
        version = ObjectVersion(f"etag-{self.writes}", None, f"{self.writes:016X}", 1000)
        with self.store.locked_document(ref):
            self.store.write_embedded(ref, version, content)
        stored = self.store.get_document(ref)
        assert stored is not None
        return stored.id

    def group(self, prefix: str, direction: int, texts: Sequence[str], count: int, start: int = 0) -> list[int]:
        return [self.add(f"{prefix}-{i:02d}.txt", direction, texts, i) for i in range(start, start + count)]


def categories_of(store: Store) -> list[CategoryRecord]:
    categories = store.load_categories(WORKSPACE)
    store.conn.commit()
    return categories


def by_members(categories: Sequence[CategoryRecord]) -> dict[frozenset[int], CategoryRecord]:
    return {frozenset(category.document_ids): category for category in categories}


def version(store: Store) -> int:
    return store.pending_workspaces([WORKSPACE]).get(WORKSPACE, 0)


def recompute(store: Store, settings: Settings, requested: int) -> RecomputeResult:
    result = recompute_workspace(store, settings, WORKSPACE, requested)
    assert store.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return result


def assert_distinct_labels(categories: Sequence[CategoryRecord]) -> None:
    labels = [category.label.lower() for category in categories]
    assert len(set(labels)) == len(labels), labels


def test_recompute_stores_categories_and_assignments(store: Store, settings: Settings) -> None:
    library = Library(store)
    truth = {
        "invoice": set(library.group("invoice", 0, INVOICES, 10)),
        "lease": set(library.group("lease", 1, LEASES, 10)),
        "incident": set(library.group("incident", 2, INCIDENTS, 10)),
    }
    requested = version(store)
    assert requested == 30

    result = recompute(store, settings, requested)
    assert result == RecomputeResult(WORKSPACE, True, "", 30, 30, 3, 0)
    assert store.pending_workspaces([WORKSPACE]) == {}

    categories = categories_of(store)
    assert len(categories) == 3
    assert {frozenset(c.document_ids) for c in categories} == {frozenset(ids) for ids in truth.values()}
    assert_distinct_labels(categories)
    members = by_members(categories)
    invoice = members[frozenset(truth["invoice"])]
    assert invoice.keywords[0] in INVOICE_WORDS
    assert "larkspur" not in invoice.keywords
    assert "vat" not in invoice.keywords
    assert members[frozenset(truth["lease"])].keywords[0] in {"lease", "tenant", "landlord", "rent", "premise"}
    for category in categories:
        check_label(Naming(category.label, category.keywords))
        assert category.id.startswith("cat_")
        assert category.size == 10
        np.testing.assert_allclose(np.linalg.norm(category.centroid), 1.0, rtol=1e-5)

    rows = store.document_rows(WORKSPACE)
    assert len(rows) == 30
    label_of = {c.id: c.label for c in categories}
    for row in rows:
        assert row.category_id is not None, row
        assert row.label == label_of[row.category_id]
        assert row.score is not None
        assert 0.9 < row.score <= 1.0 + 1e-6
        assert row.id in set(next(c for c in categories if c.id == row.category_id).document_ids)

    # The same request again (a duplicate message) does nothing, as does an older one.
    assert recompute(store, settings, requested) == RecomputeResult(
        WORKSPACE, False, "already covered by a newer clustering", 30
    )
    assert recompute(store, settings, requested - 5).recomputed is False
    assert [(c.id, c.label, c.document_ids) for c in categories_of(store)] == [
        (c.id, c.label, c.document_ids) for c in categories
    ]


def test_recompute_keeps_ids_and_labels_when_a_group_grows(store: Store, settings: Settings) -> None:
    library = Library(store)
    invoices = library.group("invoice", 0, INVOICES, 10)
    library.group("lease", 1, LEASES, 10)
    library.group("incident", 2, INCIDENTS, 10)
    assert recompute(store, settings, version(store)).recomputed
    before = categories_of(store)

    added = library.group("invoice", 0, INVOICES, 2, start=10)
    requested = version(store)
    assert requested == 32

    result = recompute(store, settings, requested)
    assert (result.recomputed, result.version, result.documents, result.categories) == (True, 32, 32, 3)
    assert result.kept_ids == 3
    after = categories_of(store)
    assert {c.id: c.label for c in after} == {c.id: c.label for c in before}
    grown = next(c for c in after if set(invoices) <= set(c.document_ids))
    assert set(grown.document_ids) == set(invoices) | set(added)
    assert grown.size == 12
    assert_distinct_labels(after)


def test_recompute_gives_a_new_group_a_new_id(store: Store, settings: Settings) -> None:
    library = Library(store)
    library.group("invoice", 0, INVOICES, 8)
    library.group("lease", 1, LEASES, 8)
    assert recompute(store, settings, version(store)).recomputed
    before = {c.id for c in categories_of(store)}
    assert len(before) == 2

    library.group("incident", 2, INCIDENTS, 8)
    result = recompute(store, settings, version(store))
    assert (result.categories, result.kept_ids) == (3, 2)
    after = categories_of(store)
    new = [c for c in after if c.id not in before]
    assert len(new) == 1
    assert new[0].keywords[0] in {"incident", "outage"}
    assert_distinct_labels(after)


def test_recompute_of_workspace_without_documents(store: Store, settings: Settings) -> None:
    result = recompute(store, settings, 1)
    assert result.recomputed
    assert (result.documents, result.categories) == (0, 0)
    assert categories_of(store) == []


def test_recompute_never_gives_two_categories_the_same_label(store: Store, settings: Settings) -> None:
    # Round 1: the "a" group reads like invoices, "b" like leases, "c" like incident reports.
    library = Library(store)
    group_a = library.group("a", 0, INVOICES, 10)
    library.group("b", 1, LEASES, 10)
    library.group("c", 2, INCIDENTS, 10)
    assert recompute(store, settings, version(store)).recomputed
    [invoice_label] = [c.label for c in categories_of(store) if c.document_ids == group_a]

    # Round 2: "a" keeps exactly its members, so it keeps its invoice label, but now reads like incident
    # reports; "b" grows past the keep-label threshold and now reads like invoices, so its fresh name is
    # the invoice label again.
    library.group("a", 0, INCIDENTS, 10)
    library.group("b", 1, INVOICES, 13)
    library.group("c", 2, LEASES, 10)
    result = recompute(store, settings, version(store))
    assert result.kept_ids == 3
    after = categories_of(store)
    [kept] = [c for c in after if c.document_ids == group_a]
    assert kept.label == invoice_label
    assert_distinct_labels(after)
