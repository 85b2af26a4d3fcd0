"""This instance's share of the embedding API's rate limits.

OpenAI limits requests and tokens per minute for the whole account, and up to
`AUTOTAG_EMBED_CONCURRENCY` EmbedFunction instances call it at once. Each instance keeps to
1/concurrency of each limit with a token bucket, so together they stay under the limits instead
of meeting 429s; a request that could only start after the invocation's deadline is not started
(its records go back to the queue, as for any provider failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Burst allowed per bucket, in seconds of its rate: small enough that every instance bursting at
# once stays near the per-minute limit, large enough for one full batch at typical limits.
BURST_SECONDS = 10.0


class RateBudgetExceededError(RuntimeError):
    """Waiting for this instance's share would outlast the invocation."""


@dataclass
class _Bucket:
    per_second: float
    capacity: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` may be spent; a cost above the burst waits for a full bucket."""
        needed = min(cost, self.capacity) - self.level
        return max(0.0, needed / self.per_second)


class RateBudget:
    def __init__(
        self,
        *,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        share: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_seconds: float = BURST_SECONDS,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _bucket(requests_per_minute, share, now, burst_seconds)
        self._tokens = _bucket(tokens_per_minute, share, now, burst_seconds)

    def acquire(self, tokens: int, deadline: float | None = None) -> float:
        """Wait until one request of `tokens` fits this instance's share; returns the seconds waited."""
        now = self._clock()
        spends = [(b, c) for b, c in ((self._requests, 1.0), (self._tokens, float(tokens))) if b is not None]
        for bucket, _ in spends:
            bucket.refill(now)
        wait = max((bucket.wait_for(cost) for bucket, cost in spends), default=0.0)
        if deadline is not None and now + wait > deadline:
            raise RateBudgetExceededError(
                f"this instance's share of the rate limit allows the next request in {wait:.1f} s, "
                "after the invocation's deadline; the records will be retried"
            )
        if wait > 0:
            self._sleep(wait)
            now = self._clock()
            for bucket, _ in spends:
                bucket.refill(now)
        for bucket, cost in spends:
            bucket.level -= cost  # may go below zero for a request above the burst: later ones wait
        return wait


def _bucket(per_minute: float | None, share: int, now: float, burst_seconds: float) -> _Bucket | None:
    if not per_minute:
        return None
    per_second = per_minute / 60.0 / max(share, 1)
    capacity = per_second * burst_seconds
    return _Bucket(per_second=per_second, capacity=capacity, level=capacity, updated=now)
