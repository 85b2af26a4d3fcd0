"""Split a document into windows of the embedding model's own tokens.

Chunks are cut on token boundaries of the model in use (so none is silently truncated by
the model) and kept as substrings of the original text, so they read well in search hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# How far a window start may move forward to land on the beginning of a word.
_WORD_LOOKAHEAD = 16


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every token of `text`, without special tokens."""
        ...


@dataclass(frozen=True)
class Tokens:
    ids: list[int]
    spans: list[tuple[int, int]]
    starts_word: list[bool]  # the token is the first of its word (WordPiece: no "##" prefix)


@runtime_checkable
class IdTokenizer(Tokenizer, Protocol):
    """A tokenizer that also gives the model's token ids, so chunks need not be tokenised again."""

    def tokens(self, text: str) -> Tokens: ...


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    token_count: int
    # The model's ids for exactly `text` (no special tokens), when the chunker knows them:
    # the window starts and ends on word boundaries, where re-tokenising the substring gives
    # the same tokens. The embedder then skips tokenising it again.
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ChunkedText:
    chunks: list[Chunk]
    total_tokens: int  # tokens in the whole text, including any beyond the chunk cap
    truncated: bool


def chunk_text(text: str, tokenizer: Tokenizer, *, max_tokens: int, overlap: int, max_chunks: int) -> ChunkedText:
    """Windows of at most `max_tokens` tokens, `overlap` tokens shared between neighbours."""
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    tokens = tokenizer.tokens(text) if isinstance(tokenizer, IdTokenizer) else None
    spans = tokens.spans if tokens is not None else tokenizer.token_spans(text)
    step = max_tokens - overlap
    chunks: list[Chunk] = []
    covered = 0  # tokens up to here are in some chunk
    start = 0
    while start < len(spans):
        if len(chunks) == max_chunks:
            break
        window = spans[start : start + max_tokens]
        ids = _word_aligned_ids(tokens, start, start + len(window)) if tokens is not None else None
        chunks.append(Chunk(len(chunks), text[window[0][0] : window[-1][1]], len(window), ids))
        covered = start + len(window)
        if covered == len(spans):
            break
        # Never beyond the overlap, so no token is left out of every chunk.
        start = _word_start(text, spans, start + step, lookahead=min(_WORD_LOOKAHEAD, overlap))
    return ChunkedText(chunks=chunks, total_tokens=len(spans), truncated=covered < len(spans))


def _word_start(text: str, spans: list[tuple[int, int]], index: int, *, lookahead: int) -> int:
    """The first token at or after `index` that begins a word.

    A chunk that starts inside a word ("ursement" of "reimbursement") re-tokenises into more
    tokens than its window counted, and the model would silently truncate it.
    """
    for candidate in range(index, min(index + lookahead + 1, len(spans))):
        begin = spans[candidate][0]
        # WordPiece tokens start at the word; tiktoken's carry the space before it.
        if begin == 0 or not (text[begin - 1].isalnum() and text[begin].isalnum()):
            return candidate
    return index


def _word_aligned_ids(tokens: Tokens, start: int, end: int) -> tuple[int, ...] | None:
    """The ids of tokens[start:end] if the window begins and ends at word starts, else None.

    Pre-tokenisation splits words on whitespace and punctuation only, so a substring from
    one word start to the next tokenises into exactly these tokens; a window that cuts a
    word ("reimburse" of "reimbursement") would not ("rei", "##mb", "##urse").
    """
    if not tokens.starts_word[start] or (end < len(tokens.ids) and not tokens.starts_word[end]):
        return None
    return tuple(tokens.ids[start:end])
