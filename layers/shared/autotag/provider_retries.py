"""When and after how long a failed embedding request is tried again inside one invocation.

The openai client retries by itself, but its pauses (up to two minutes when the API sends
Retry-After) know nothing of the invocation's deadline, and an invocation that sleeps past it
is stopped by Lambda and reports nothing, failing its whole batch. So the embedder retries
itself, with the client's own rules (exponential backoff from 0.5 s, at most 8 s, up to a
quarter shorter at random; Retry-After honoured), and makes a retry only if it can still
finish in time; otherwise the records go back to the queue and SQS is the next retry.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Any

# Statuses the openai client retries too: request timeout, lock timeout, rate limit, server errors.
TRANSIENT_STATUSES = frozenset({408, 409, 429})
# A longer Retry-After is not worth holding an invocation for; the queue retries the records.
MAX_RETRY_AFTER_SECONDS = 60.0
# Fraction by which a pause may be shortened at random, so instances failing together do not
# all retry at the same moment.
JITTER = 0.25


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_seconds: float = 0.5
    cap_seconds: float = 8.0

    def backoff(self, retry: int) -> float:
        """The pause before retry number `retry` (0 for the first) when the API named none."""
        return min(self.base_seconds * 2.0**retry, self.cap_seconds) * (1 - JITTER * random.random())

    def pause(self, retry: int, error: Exception) -> float | None:
        """Seconds to wait before retrying after `error`, or None when it is not retried here."""
        if retry >= self.max_retries or not is_transient(error):
            return None
        wait = retry_after(error)
        if wait is None:
            return self.backoff(retry)
        return wait if wait <= MAX_RETRY_AFTER_SECONDS else None


def is_transient(error: Exception) -> bool:
    """Whether the same request may succeed later: a dropped or timed-out connection, or a
    status that says "not now" rather than "not this input"."""
    import openai

    if isinstance(error, openai.APIConnectionError):  # also APITimeoutError
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in TRANSIENT_STATUSES or error.status_code >= 500
    return False


def retry_after(error: Exception) -> float | None:
    """The wait the API asked for (`retry-after-ms`, or `retry-after` in seconds or as a date)."""
    response: Any = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        seconds: float | None
        try:
            seconds = float(value) * scale
        except ValueError:
            seconds = _seconds_until(value)
        if seconds is not None and math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


def _seconds_until(http_date: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(http_date).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
