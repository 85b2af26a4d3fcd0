"""Offline category names from each category's own documents.

Keywords are ranked by a class-based TF-IDF over document frequencies: a word that most
documents of the category use and few documents elsewhere use names the category. The
label is the top one or two keywords, readable ("Invoice and Payment").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

MAX_LABEL_LENGTH = 60
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")

# Words that are frequent in any drive and name nothing: reporting verbs, modal and legal
# boilerplate, calendar and number words.
_BOILERPLATE = frozenset(
    """
    said says say told also would could should shall may might must will can just like get got make
    made use used using new one two three four five six seven eight nine ten first second third last
    next year years month months week weeks day days time times today per via etc including include
    includes within upon herein hereof thereof hereby whereas mr mrs ms dr page section item items
    number total note notes based following set well way ways many much lot lots need needs want
    wants take takes work works january february march april may june july august september october
    november december monday tuesday wednesday thursday friday saturday sunday people thing things
    going good great best better
    """.split()  # noqa: SIM905
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | _BOILERPLATE


@dataclass(frozen=True)
class Naming:
    label: str
    keywords: list[str]


def name_categories(texts_per_category: Sequence[Sequence[str]], *, keywords_per_category: int = 8) -> list[Naming]:
    """A distinct label and ranked keywords for every category, from its documents' texts."""
    casing: Counter[str] = Counter()  # occurrences written in lower case, minus the others
    doc_terms = [[_terms(text, casing) for text in texts] for texts in texts_per_category]
    total_docs = sum(len(docs) for docs in doc_terms) or 1
    overall: Counter[str] = Counter()
    per_category: list[Counter[str]] = []
    for docs in doc_terms:
        counts: Counter[str] = Counter()
        for terms in docs:
            counts.update(terms)
        per_category.append(counts)
        overall.update(counts)
    rankings = []
    for docs, counts in zip(doc_terms, per_category, strict=True):
        size = max(len(docs), 1)
        scored = {
            term: (df / size) * math.log(1 + total_docs / overall[term])
            for term, df in counts.items()
            # Names and acronyms (mostly written capitalised: "Larkspur", "VAT") identify a
            # company or a column header, not a kind of document.
            if df >= min(2, size) and casing[term] >= 0
        }
        rankings.append([t for t, _ in sorted(scored.items(), key=lambda item: (-item[1], item[0]))])
    return _distinct_labels(rankings, keywords_per_category)


def _terms(text: str, casing: Counter[str]) -> set[str]:
    """Singular-form word set of one document (document frequency, not term frequency).

    `casing` counts, per term, occurrences written in lower case minus capitalised ones,
    leaving out words at the start of a sentence or line, which are capitalised anyway.
    """
    terms = set()
    for match in _WORD.finditer(text):
        written = match.group(0).strip("'-")
        word = written.lower()
        if len(word) <= 2 or word in STOP_WORDS or "'" in word:
            continue
        term = _singular(word)
        terms.add(term)
        if not _starts_sentence(text, match.start()):
            casing[term] += 1 if written == word else -1
    return terms


def _starts_sentence(text: str, position: int) -> bool:
    before = text[max(0, position - 4) : position].rstrip(" \t")
    return not before or before[-1] in ".!?:\n#>*-|"


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _distinct_labels(rankings: Sequence[list[str]], keywords_per_category: int) -> list[Naming]:
    namings: list[Naming] = []
    used: set[str] = set()
    for ranking in rankings:
        keywords = ranking[:keywords_per_category]
        label = unique_label(None, keywords, used)
        used.add(label.lower())
        namings.append(Naming(label=label, keywords=keywords))
    return namings


def _label_word(word: str) -> bool:
    # Participles and adverbs ("governed", "promptly") describe; a label should name.
    return not word.endswith(("ed", "ly"))


def unique_label(preferred: str | None, keywords: Sequence[str], used: set[str]) -> str:
    """`preferred` if no other category has it, else a label from `keywords` that none has.

    `used` holds the lower-cased labels already taken.
    """
    if preferred and preferred.lower() not in used:
        return preferred
    nameable = [word for word in keywords if _label_word(word)] or list(keywords)
    for first in range(len(nameable)):
        label = " and ".join(word.capitalize() for word in nameable[first : first + 2])[:MAX_LABEL_LENGTH]
        if label.lower() not in used:
            return label
    base = (preferred or " ".join(word.capitalize() for word in nameable[:3]) or "Miscellaneous")[
        : MAX_LABEL_LENGTH - 4
    ]
    label, n = base, 2
    while label.lower() in used:
        label, n = f"{base} {n}", n + 1
    return label
