"""The openai embedding provider: the real `openai` client against the local compatible server."""

from __future__ import annotations

import itertools

import numpy as np
import openai
import pytest

from autotag.embeddings import OPENAI_MAX_INPUTS_PER_REQUEST, EmbeddingInputError, OpenAIEmbedder, build_embedder
from autotag.settings import load_settings
from tests.support.openai_server import FakeOpenAIServer


def embedder(server: FakeOpenAIServer, *, dimensions: int = 1536, max_retries: int = 0) -> OpenAIEmbedder:
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=max_retries, timeout=5)
    return OpenAIEmbedder(client, "text-embedding-3-small", dimensions)


def test_vectors_are_unit_length_in_input_order(openai_server: FakeOpenAIServer) -> None:
    texts = ["invoice for consulting services", "office lease agreement", "database outage report"]

    vectors = embedder(openai_server).embed(texts)

    assert vectors.shape == (3, 1536)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = embedder(openai_server).embed(list(reversed(texts)))
    assert np.allclose(vectors, again[::-1], atol=1e-6)


def test_inputs_are_split_at_the_per_request_limit(openai_server: FakeOpenAIServer) -> None:
    texts = [f"document number {i}" for i in range(OPENAI_MAX_INPUTS_PER_REQUEST + 5)]
    provider = embedder(openai_server)

    vectors = provider.embed(texts)

    assert vectors.shape[0] == len(texts)
    sizes = [len(r.body["input"]) for r in openai_server.embedding_requests()]
    assert sizes == [OPENAI_MAX_INPUTS_PER_REQUEST, 5]
    assert provider.requests_sent == 2 and provider.tokens_sent > len(texts)


def test_shortened_dimensions_are_requested(openai_server: FakeOpenAIServer) -> None:
    vectors = embedder(openai_server, dimensions=512).embed(["a short text"])

    assert vectors.shape == (1, 512)
    assert openai_server.embedding_requests()[0].body["dimensions"] == 512


def test_native_dimensions_are_not_sent(openai_server: FakeOpenAIServer) -> None:
    embedder(openai_server).embed(["a short text"])

    assert "dimensions" not in openai_server.embedding_requests()[0].body


def test_rate_limit_is_retried_by_the_client_honouring_retry_after(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(429, retry_after=0.1, path="/v1/embeddings")

    vectors = embedder(openai_server, max_retries=2).embed(["retried text"])

    assert vectors.shape == (1, 1536)
    assert [r.status for r in openai_server.requests] == [429, 200]


def test_errors_surface_after_the_retries(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(503, count=3, path="/v1/embeddings")

    with pytest.raises(openai.InternalServerError):
        embedder(openai_server, max_retries=2).embed(["text"])
    assert len(openai_server.requests) == 3


def test_chunking_tokenizer_is_the_models_own(openai_server: FakeOpenAIServer) -> None:
    spans = embedder(openai_server).tokenizer.token_spans("Invoice INV-2025-0112 is overdue.")

    assert spans[0][0] == 0 and spans[-1][1] == len("Invoice INV-2025-0112 is overdue.")
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_settings_build_the_openai_provider(openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("AUTOTAG_EMBEDDING_DIMENSIONS", "256")

    provider = build_embedder(load_settings())

    assert provider.embed(["hello there"]).shape == (1, 256)
    assert openai_server.embedding_requests()[0].headers["authorization"] == "Bearer key"


def test_a_rotated_key_is_read_again_once(openai_server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="old-key", max_retries=0)
    provider = OpenAIEmbedder(client, "text-embedding-3-small", 1536, refresh_api_key=lambda: "new-key")
    openai_server.inject(401, path="/v1/embeddings")

    vectors = provider.embed(["text"])

    assert vectors.shape == (1, 1536)
    assert [r.headers["authorization"] for r in openai_server.requests] == ["Bearer old-key", "Bearer new-key"]


def test_rejected_input_is_reported_as_such(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject(400, path="/v1/embeddings")

    with pytest.raises(EmbeddingInputError):
        embedder(openai_server).embed(["text"])


def test_requests_are_cut_to_the_time_left(openai_server: FakeOpenAIServer) -> None:
    openai_server.inject_delay(3.0, path="/v1/embeddings")

    with pytest.raises(openai.APITimeoutError):
        embedder(openai_server).embed(["slow text"], timeout=1.5)
