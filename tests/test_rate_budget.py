"""Each EmbedFunction instance keeps to its share of the account's embedding rate limits."""

from __future__ import annotations

import openai
import pytest

from autotag.embeddings import OPENAI_MAX_INPUTS_PER_REQUEST, OpenAIEmbedder, build_embedder
from autotag.rate_budget import BURST_SECONDS, RateBudget, RateBudgetExceededError
from autotag.settings import load_settings
from tests.support.openai_server import FakeOpenAIServer


class FakeTime:
    """A clock that only moves when the budget sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_beyond_the_burst_wait_for_the_instance_share() -> None:
    time = FakeTime()
    # 600 requests a minute for 5 instances: 2 per second each, a burst of 20.
    budget = RateBudget(requests_per_minute=600, tokens_per_minute=None, share=5, clock=time.clock, sleep=time.sleep)

    waits = [budget.acquire(tokens=100) for _ in range(22)]

    assert waits[:20] == [0.0] * 20
    assert waits[20:] == pytest.approx([0.5, 0.5])
    assert time.now - 1000.0 == pytest.approx(1.0)


def test_five_instances_together_stay_under_the_account_limit() -> None:
    times = [FakeTime() for _ in range(5)]
    budgets = [
        RateBudget(requests_per_minute=None, tokens_per_minute=60_000, share=5, clock=t.clock, sleep=t.sleep)
        for t in times
    ]

    # Each instance sends 1,000-token requests as fast as its budget lets it, for two minutes.
    for budget, time in zip(budgets, times, strict=True):
        sent = 0
        while time.now < 1120.0:
            budget.acquire(tokens=1000)
            sent += 1000
        time.sent = sent  # type: ignore[attr-defined]

    total = sum(t.sent for t in times)  # type: ignore[attr-defined]
    # Two minutes of the limit plus, at most, one burst per instance.
    assert total <= 2 * 60_000 + 5 * (60_000 / 5 / 60 * BURST_SECONDS) + 5 * 1000


def test_a_request_larger_than_the_burst_waits_for_a_full_bucket_and_the_next_one_pays() -> None:
    time = FakeTime()
    budget = RateBudget(requests_per_minute=None, tokens_per_minute=600, clock=time.clock, sleep=time.sleep)
    # 10 tokens a second, a burst of 100.

    assert budget.acquire(tokens=300) == 0.0  # full bucket: goes 200 into debt
    assert budget.acquire(tokens=50) == pytest.approx(25.0)  # 200 of debt and 50 more, at 10/s


def test_a_wait_past_the_deadline_is_refused_and_spends_nothing() -> None:
    time = FakeTime()
    budget = RateBudget(requests_per_minute=60, tokens_per_minute=None, clock=time.clock, sleep=time.sleep)
    for _ in range(10):  # one a second, burst of 10: the bucket is now empty
        budget.acquire(tokens=1)

    with pytest.raises(RateBudgetExceededError, match="deadline"):
        budget.acquire(tokens=1, deadline=time.now + 0.5)
    assert time.slept == []
    assert budget.acquire(tokens=1, deadline=time.now + 5) == pytest.approx(1.0)


def test_without_limits_nothing_waits() -> None:
    budget = RateBudget(requests_per_minute=None, tokens_per_minute=None)
    assert [budget.acquire(tokens=10**6) for _ in range(100)] == [0.0] * 100


def test_the_provider_asks_the_budget_before_sending(openai_server: FakeOpenAIServer) -> None:
    time = FakeTime()
    budget = RateBudget(requests_per_minute=60, tokens_per_minute=None, clock=time.clock, sleep=time.sleep)
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0, timeout=5)
    provider = OpenAIEmbedder(client, "text-embedding-3-small", 1536, budget=budget)
    texts = [f"document {i}" for i in range(OPENAI_MAX_INPUTS_PER_REQUEST * 11)]  # 11 requests

    provider.embed(texts)

    assert len(openai_server.embedding_requests()) == 11
    assert time.slept == pytest.approx([1.0])  # the 11th request waited for the 1-per-second share


def test_out_of_budget_and_out_of_time_nothing_is_sent(openai_server: FakeOpenAIServer) -> None:
    # Six requests a minute: a burst of one, then one every ten seconds.
    budget = RateBudget(requests_per_minute=6, tokens_per_minute=None)
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0, timeout=5)
    provider = OpenAIEmbedder(client, "text-embedding-3-small", 1536, budget=budget)
    provider.embed(["first document"], timeout=30)

    # The next request could start in ten seconds; the invocation has two.
    with pytest.raises(RateBudgetExceededError):
        provider.embed(["second document"], timeout=2)
    assert len(openai_server.embedding_requests()) == 1  # the records go back to the queue unsent


def test_settings_give_each_instance_its_share(monkeypatch: pytest.MonkeyPatch, openai_env: FakeOpenAIServer) -> None:
    monkeypatch.setenv("AUTOTAG_OPENAI_REQUESTS_PER_MINUTE", "3000")
    monkeypatch.setenv("AUTOTAG_OPENAI_TOKENS_PER_MINUTE", "1000000")
    monkeypatch.setenv("AUTOTAG_EMBED_CONCURRENCY", "5")

    provider = build_embedder(load_settings())

    assert isinstance(provider, OpenAIEmbedder)
    budget = provider._budget
    assert budget is not None
    assert budget._requests is not None and budget._requests.per_second == pytest.approx(3000 / 60 / 5)
    assert budget._tokens is not None and budget._tokens.per_second == pytest.approx(1_000_000 / 60 / 5)
