"""Offline category names from each category's own documents.

Keywords are ranked by a class-based TF-IDF over document frequencies: a word that most
documents of the category use and few documents elsewhere use names the category. The
label is the top one or two keywords, readable ("Invoice and Payment").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

# The longest chat reply taken as a name at all (then cut to AUTOTAG_MAX_LABEL_CHARS like any label).
MAX_LABEL_LENGTH = 60
# What a stored label may be at most (AUTOTAG_MAX_LABEL_CHARS): a filter name in the drive's UI.
DEFAULT_MAX_LABEL_CHARS = 48
MAX_KEYWORD_CHARS = 32
MAX_KEYWORDS = 12
FALLBACK_LABEL = "Miscellaneous"
_MARKUP = re.compile(r"<[^>]*>|&[#\w]+;")
# Punctuation a label may keep; anything else that is not a letter, digit or space becomes a space.
_LABEL_PUNCTUATION = frozenset("&'\u2019-/,.()+")
# Words a cut label must not end on ("Invoice and").
_DANGLING = frozenset(["and", "or", "of", "the", "for", "to", "in", "&", "+", "-", "/", ","])
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


def unique_label(
    preferred: str | None, keywords: Sequence[str], used: set[str], *, max_chars: int = DEFAULT_MAX_LABEL_CHARS
) -> str:
    """`preferred` if no other category has it, else a label from `keywords` that none has.

    `used` holds the lower-cased labels already taken. Every candidate passes `clean_label`,
    so what comes out is fit to store and never empty.
    """
    preferred = clean_label(preferred or "", max_chars)
    if preferred and preferred.lower() not in used:
        return preferred
    nameable = [word for word in keywords if _label_word(word)] or list(keywords)
    for first in range(len(nameable)):
        label = clean_label(" and ".join(word.capitalize() for word in nameable[first : first + 2]), max_chars)
        if label and label.lower() not in used:
            return label
    base = clean_label(preferred or " ".join(word.capitalize() for word in nameable[:3]), max_chars - 4)
    base = base or FALLBACK_LABEL
    label, n = base, 2
    while label.lower() in used:
        label, n = f"{base} {n}", n + 1
    return label


def clean_label(text: str, max_chars: int = DEFAULT_MAX_LABEL_CHARS) -> str:
    """`text` as a label may be stored and shown; "" when nothing of it is fit (the caller falls back).

    Whatever names a category (keywords, a chat model's reply, a label kept from an earlier
    recompute) ends up as a filter in the drive's UI: no markup, control or invisible
    characters, no line breaks, single spaces, and at most `max_chars`, cut at a word boundary.
    """
    text = _MARKUP.sub(" ", unicodedata.normalize("NFKC", text))
    kept = "".join(ch if ch in _LABEL_PUNCTUATION or _is_label_character(ch) else " " for ch in text)
    words = kept.split()
    while words and len(" ".join(words)) > max_chars:
        if len(words) == 1:
            words = [words[0][:max_chars]]
            break
        words.pop()
    while words and (words[-1].lower() in _DANGLING or not any(ch.isalnum() for ch in words[-1])):
        words.pop()
    while words and not any(ch.isalnum() for ch in words[0]):
        words.pop(0)
    return " ".join(words)


def clean_keywords(keywords: Sequence[str]) -> list[str]:
    """At most `MAX_KEYWORDS` distinct keywords, each cleaned like a label and bounded."""
    cleaned: list[str] = []
    for keyword in keywords:
        word = clean_label(keyword, MAX_KEYWORD_CHARS)
        if word and word not in cleaned:
            cleaned.append(word)
    return cleaned[:MAX_KEYWORDS]


def _is_label_character(ch: str) -> bool:
    # Letters (any script), combining marks and digits; not symbols, controls or format characters.
    return unicodedata.category(ch)[0] in "LMN"
