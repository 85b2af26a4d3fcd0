"""Split a document into windows of the embedding model's own tokens.

Chunks are cut on token boundaries of the model in use (so none is silently truncated by
the model) and kept as substrings of the original text, so they read well in search hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# How far a window start may move forward to land on the beginning of a word.
_WORD_LOOKAHEAD = 16


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every token of `text`, without special tokens."""
        ...


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    token_count: int


@dataclass(frozen=True)
class ChunkedText:
    chunks: list[Chunk]
    total_tokens: int  # tokens in the whole text, including any beyond the chunk cap
    truncated: bool


def chunk_text(text: str, tokenizer: Tokenizer, *, max_tokens: int, overlap: int, max_chunks: int) -> ChunkedText:
    """Windows of at most `max_tokens` tokens, `overlap` tokens shared between neighbours."""
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    spans = tokenizer.token_spans(text)
    step = max_tokens - overlap
    chunks: list[Chunk] = []
    covered = 0  # tokens up to here are in some chunk
    start = 0
    while start < len(spans):
        if len(chunks) == max_chunks:
            break
        window = spans[start : start + max_tokens]
        chunks.append(Chunk(len(chunks), text[window[0][0] : window[-1][1]], len(window)))
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
