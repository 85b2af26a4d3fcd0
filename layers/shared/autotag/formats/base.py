"""What every format reader shares: the budget it works within and how it says no."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime


class Refused(Exception):  # an outcome, not a fault: the document is skipped with this reason
    """The document cannot be read; `reason` is what the operator sees on its row."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds on the work one document may cause (AUTOTAG_* settings; see settings.py)."""

    max_pages: int = 1000
    max_chars: int = 500_000
    max_decompressed_bytes: int = 200 * 1024 * 1024
    time_budget_seconds: float = 30.0


@dataclass
class ExtractionBudget:
    """The limits of one document's extraction, and how much of them it has used.

    The time budget is cooperative: readers call `time_is_up()` between pages, slides,
    sheets and parts and stop there, keeping what they have read. Python cannot safely
    interrupt a library call in progress, so one pathological page can overrun the budget by
    its own duration; the invocation's deadline and the Lambda timeout bound that.
    """

    limits: ExtractionLimits
    deadline: float  # time.monotonic() at which the document's own time budget ends
    invocation_deadline: float | None = None  # when the whole invocation must stop
    chars: int = 0
    truncated_by: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, limits: ExtractionLimits, *, deadline: float | None = None) -> ExtractionBudget:
        return cls(limits, time.monotonic() + limits.time_budget_seconds, deadline)

    def time_is_up(self) -> bool:
        """True when the document's budget is spent (what was read is kept, with a note).

        When the invocation itself runs out first, the document is not cut short for good:
        TimeoutError fails it, and the message's retry reads it whole.
        """
        now = time.monotonic()
        if self.invocation_deadline is not None and now >= self.invocation_deadline:
            raise TimeoutError("the invocation ran out of time while extracting this document; it will be retried")
        if now < self.deadline:
            return False
        self.note(f"extraction stopped at the {self.limits.time_budget_seconds:g}-second time budget")
        return True

    def take(self, text: str) -> str:
        """`text`, cut to what is left of the character limit; count it as used."""
        left = self.limits.max_chars - self.chars
        if len(text) > left:
            text = text[: max(left, 0)]
            self.note(f"text cut at the {self.limits.max_chars}-character limit")
        self.chars += len(text)
        return text

    @property
    def full(self) -> bool:
        return self.chars >= self.limits.max_chars

    def pages_allowed(self, pages: int) -> int:
        if pages > self.limits.max_pages:
            self.note(f"only the first {self.limits.max_pages} of {pages} pages were read (page limit)")
            return self.limits.max_pages
        return pages

    def note(self, message: str) -> None:
        if message not in self.truncated_by:
            self.truncated_by.append(message)


@dataclass(frozen=True)
class Content:
    """What a reader found: the text (its parts joined by blank lines) and any metadata."""

    text: str
    title: str = ""
    author: str | None = None
    created: datetime | None = None
    pages: int | None = None


def clean(value: object) -> str | None:
    """A metadata string without surrounding or repeated whitespace; None when blank."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:500] or None
