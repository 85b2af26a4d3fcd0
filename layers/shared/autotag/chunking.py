"""Split a document into windows of the embedding model's own tokens.

Chunks are cut on token boundaries of the model in use (so none is silently truncated by
the model) and kept as substrings of the original text, so they read well in search hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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


def chunk_text(
    text: str, tokenizer: Tokenizer, *, max_tokens: int, overlap: int, max_chunks: int
) -> ChunkedText:
    """Windows of at most `max_tokens` tokens, `overlap` tokens shared between neighbours."""
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    spans = tokenizer.token_spans(text)
    step = max_tokens - overlap
    chunks: list[Chunk] = []
    covered = 0  # tokens up to here are in some chunk
    for start in range(0, len(spans), step):
        if len(chunks) == max_chunks:
            break
        window = spans[start : start + max_tokens]
        chunks.append(Chunk(len(chunks), text[window[0][0] : window[-1][1]], len(window)))
        covered = start + len(window)
        if covered == len(spans):
            break
    return ChunkedText(chunks=chunks, total_tokens=len(spans), truncated=covered < len(spans))
