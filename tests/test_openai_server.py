"""Tests for the fake OpenAI server, driven through the real ``openai`` client.

Using the real client is the point: these tests pin down that the helper
speaks the wire format, status codes and headers the client actually relies on.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.openai_server import (
    CLIENT_CLOSED,
    NO_RESPONSE,
    FakeOpenAIServer,
    FaultMix,
    fake_embedding,
)

MODEL = "text-embedding-3-small"
EMBEDDINGS = "/v1/embeddings"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(dimensions=64) as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def _embed(client: openai.OpenAI, texts: list[str], **kwargs: object) -> np.ndarray:
    response = client.embeddings.create(model=MODEL, input=texts, **kwargs)  # type: ignore[arg-type]
    return np.array([item.embedding for item in response.data])


def test_embeddings_round_trip(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    texts = [
        "The lease agreement for the office building",
        "Office building lease agreement, signed",
        "Chocolate cake recipe with vanilla frosting",
    ]
    response = client.embeddings.create(model=MODEL, input=texts, dimensions=32)
    assert [item.index for item in response.data] == [0, 1, 2]
    assert response.model == MODEL
    assert response.usage.prompt_tokens > 0
    vectors = np.array([item.embedding for item in response.data])
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

    # Deterministic, and the float format carries exactly the base64 values.
    again = _embed(client, texts, dimensions=32, encoding_format="float")
    np.testing.assert_array_equal(vectors, again)
    np.testing.assert_array_equal(vectors[2], fake_embedding(texts[2], 32))

    similar = float(vectors[0] @ vectors[1])
    dissimilar = float(vectors[0] @ vectors[2])
    assert similar > 0.5 > dissimilar
    # Same words, different text: near-duplicates but not identical.
    twins = _embed(client, ["Lease agreement", "lease agreement!"])
    assert twins.shape == (2, 64)  # server default dimensions
    assert 0.99 < float(twins[0] @ twins[1]) < 1.0

    recorded = server.embedding_requests()
    assert len(recorded) == 3
    assert recorded[0].body["dimensions"] == 32
    assert recorded[0].body["encoding_format"] == "base64"  # the client's default
    assert recorded[0].headers["authorization"] == "Bearer test"


def test_token_inputs(client: openai.OpenAI) -> None:
    single = client.embeddings.create(model=MODEL, input=[101, 2023, 102])
    nested = client.embeddings.create(model=MODEL, input=[[101, 2023, 102], [7, 8]])
    assert len(single.data) == 1
    assert len(nested.data) == 2
    assert single.data[0].embedding == nested.data[0].embedding
    assert single.usage.prompt_tokens == 3


@pytest.mark.parametrize("bad_input", ["", ["ok", ""], [], ["x"] * 2049])
def test_invalid_embedding_inputs_rejected(server: FakeOpenAIServer, client: openai.OpenAI, bad_input: object) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model=MODEL, input=bad_input)  # type: ignore[arg-type]
    assert excinfo.value.param == "input"
    assert server.embedding_requests() == []


def test_rate_limit_injection(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.inject(429, retry_after=3)
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.embeddings.create(model=MODEL, input="hello world")
    assert excinfo.value.response.headers["retry-after"] == "3"
    assert excinfo.value.code == "rate_limit_exceeded"
    # The injection is used up: the next call succeeds.
    client.embeddings.create(model=MODEL, input="hello world")
    assert [r.status for r in server.requests] == [429, 200]
    assert len(server.embedding_requests()) == 1


def test_injection_path_filter_and_custom_body(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.inject(
        400,
        path="/v1/embeddings",
        body={"error": {"message": "custom", "type": "x", "code": "c"}},
    )
    assert [m.id for m in client.models.list()]  # not the targeted path
    with pytest.raises(openai.BadRequestError, match="custom"):
        client.embeddings.create(model=MODEL, input="hello")


def test_single_503_is_retried(server: FakeOpenAIServer) -> None:
    server.inject(503)
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=2) as retrying:
        response = retrying.embeddings.create(model=MODEL, input=["retry me"])
    assert len(response.data) == 1
    assert [r.status for r in server.requests] == [503, 200]


def test_delay_triggers_client_timeout(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.inject_delay(5.0)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).embeddings.create(model=MODEL, input="slow")
    assert time.monotonic() - started < 2.0
    client.embeddings.create(model=MODEL, input="fast")
    # The server notices the departed client and does not count it as served.
    deadline = time.monotonic() + 2.0
    while server.requests[0].status != CLIENT_CLOSED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.status for r in server.requests] == [CLIENT_CLOSED, 200]
    assert len(server.embedding_requests()) == 1


def test_reset_raises_connection_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.inject_reset()
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=MODEL, input="dropped")
    client.embeddings.create(model=MODEL, input="fine")
    assert [r.status for r in server.requests] == [NO_RESPONSE, 200]


def test_chat_completion(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name this cluster"}]
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert completion.choices[0].message.content == "Contracts and Leases"
    assert completion.usage is not None and completion.usage.total_tokens > 0

    server.chat_reply = "Recipes"
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Recipes"
    assert chunks[-1].usage is not None


def test_models_and_unknown_path(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    assert MODEL in [m.id for m in client.models.list()]
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(server.base_url + "/nope", timeout=5)
    assert excinfo.value.code == 404
    assert json.loads(excinfo.value.read())["error"]["message"] == "Invalid URL (GET /v1/nope)"
    excinfo.value.close()


def test_server_is_quiet(server: FakeOpenAIServer, client: openai.OpenAI, capfd: pytest.CaptureFixture[str]) -> None:
    server.inject_reset()
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=MODEL, input="x")
    client.embeddings.create(model=MODEL, input="y")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def _served(server: FakeOpenAIServer, seed: int, requests: int) -> list[tuple[str | None, int]]:
    """(fault, status) of each of `requests` embedding calls under a fault mix, retries off."""
    server.fail_randomly(
        FaultMix(rate_limited=0.2, rate_limited_bare=0.2, server_error=0.2, reset=0.1, slow=0.1, slow_seconds=0.01),
        seed=seed,
    )
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
        for _ in range(requests):
            with contextlib.suppress(openai.APIError):
                _embed(client, ["a lease"])
    return [(r.fault, r.status) for r in server.requests]


def test_a_fault_mix_is_reproducible_from_its_seed_and_serves_each_fault_as_drawn() -> None:
    with FakeOpenAIServer(dimensions=8) as first, FakeOpenAIServer(dimensions=8) as second:
        served = _served(first, 3, 60)
        assert served == _served(second, 3, 60)
    statuses = {fault: {status for f, status in served if f == fault} for fault, _ in served}
    assert statuses == {
        None: {200},
        "rate_limited": {429},
        "rate_limited_bare": {429},
        "server_error": {500},
        "reset": {NO_RESPONSE},
        "slow": {200},
    }
    counts = first.fault_counts()
    assert counts["rate_limited"] == sum(1 for f, _ in served if f == "rate_limited") > 0
    assert counts["unavailable"] == counts["stalled"] == counts["timed_out"] == 0


def test_every_kind_first_serves_each_fault_of_the_mix_once_on_every_other_request() -> None:
    mix = FaultMix(rate_limited=0.01, server_error=0.01, reset=0.01, slow=0.01, slow_seconds=0.01)
    with FakeOpenAIServer(dimensions=8) as server:
        server.fail_randomly(mix, seed=5, every_kind_first=True)
        with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
            for _ in range(8):
                with contextlib.suppress(openai.APIError):
                    _embed(client, ["a lease"])
        faults = [r.fault for r in server.requests]

    # With chances of 1% each, the draws alone would most likely serve none in 8 requests.
    assert sorted(f for f in faults[0::2] if f) == ["rate_limited", "reset", "server_error", "slow"]


def test_the_real_client_retries_through_a_fault_mix_honouring_retry_after(server: FakeOpenAIServer) -> None:
    server.fail_randomly(
        FaultMix(rate_limited=0.3, stalled=0.2, retry_after_seconds=0.05, stall_seconds=2.0, path=EMBEDDINGS),
        seed=11,
    )
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=8, timeout=0.5) as client:
        vectors = [_embed(client, [f"document {i}"]) for i in range(10)]

    assert all(v.shape == (1, 64) for v in vectors)
    counts = server.fault_counts()
    assert counts["rate_limited"] > 0 and counts["stalled"] > 0
    assert counts["timed_out"] == counts["stalled"]  # the client gave up on each stalled answer
    rate_limited = [r for r in server.requests if r.fault == "rate_limited"]
    assert all(r.status == 429 for r in rate_limited)
    server.fail_randomly(None)
    before = len(server.requests)
    _embed(openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0), ["after"])
    assert [r.fault for r in server.requests[before:]] == [None]


def test_a_fault_mix_must_be_a_probability_distribution() -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        FaultMix(rate_limited=0.6, server_error=0.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        FaultMix(reset=-0.1)
