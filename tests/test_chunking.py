"""Tests for autotag.chunking: token windows with overlap, cut on the tokenizer's own boundaries."""

from __future__ import annotations

import random
import re

import pytest

from autotag.chunking import ChunkedText, Tokenizer, chunk_text
from autotag.embeddings import LocalEmbedder


class WhitespaceTokenizer:
    """One token per run of non-space characters."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in re.finditer(r"\S+", text)]


TOKENIZER: Tokenizer = WhitespaceTokenizer()


def words(n: int) -> str:
    """`n` distinct words with varied spacing, so windows are identifiable."""
    separators = [" ", "  ", "\n", "\t", " \n "]
    return "".join(f"w{i}{separators[i % len(separators)]}" for i in range(n)).rstrip()


def chunk_words(text: str, *, max_tokens: int, overlap: int, max_chunks: int = 100) -> ChunkedText:
    return chunk_text(text, TOKENIZER, max_tokens=max_tokens, overlap=overlap, max_chunks=max_chunks)


def tokens(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize(
    ("n_words", "max_tokens", "overlap", "expected"),
    [
        (10, 4, 1, [(0, 4), (3, 7), (6, 10)]),
        (10, 4, 0, [(0, 4), (4, 8), (8, 10)]),
        (9, 4, 2, [(0, 4), (2, 6), (4, 8), (6, 9)]),
        (4, 4, 1, [(0, 4)]),
        (3, 4, 1, [(0, 3)]),
        (1, 5, 2, [(0, 1)]),
        (7, 1, 0, [(i, i + 1) for i in range(7)]),
    ],
    ids=["overlap-1", "no-overlap", "overlap-half", "exactly-one-window", "shorter-than-window", "one-word", "size-1"],
)
def test_windows(n_words: int, max_tokens: int, overlap: int, expected: list[tuple[int, int]]) -> None:
    text = words(n_words)
    result = chunk_words(text, max_tokens=max_tokens, overlap=overlap)
    all_tokens = tokens(text)
    assert [tokens(chunk.text) for chunk in result.chunks] == [all_tokens[a:b] for a, b in expected]
    assert [chunk.token_count for chunk in result.chunks] == [b - a for a, b in expected]
    assert result.total_tokens == n_words
    assert result.truncated is False


@pytest.mark.parametrize(
    ("n_words", "max_tokens", "overlap"),
    [(100, 10, 3), (101, 10, 3), (57, 8, 7), (250, 64, 16), (33, 5, 0)],
    ids=["100x10o3", "101x10o3", "max-overlap", "250x64o16", "no-overlap"],
)
def test_chunk_invariants(n_words: int, max_tokens: int, overlap: int) -> None:
    text = words(n_words)
    result = chunk_words(text, max_tokens=max_tokens, overlap=overlap, max_chunks=1000)
    all_tokens = tokens(text)

    assert [chunk.ordinal for chunk in result.chunks] == list(range(len(result.chunks)))
    position = 0
    for chunk in result.chunks:
        # a substring of the original, starting and ending on token boundaries
        start = text.index(chunk.text, position)
        position = start + 1
        assert chunk.text == chunk.text.strip()
        assert 0 < chunk.token_count <= max_tokens
        assert len(tokens(chunk.text)) == chunk.token_count
    for previous, current in zip(result.chunks, result.chunks[1:], strict=False):
        assert previous.token_count == max_tokens  # only the last window may be short
        shared = tokens(previous.text)[max_tokens - overlap :]
        assert shared == tokens(current.text)[:overlap]
    assert result.chunks[0].text.startswith("w0")
    assert text.endswith(result.chunks[-1].text)  # the last chunk covers the end
    covered = {word for chunk in result.chunks for word in tokens(chunk.text)}
    assert covered == set(all_tokens)
    assert result.total_tokens == n_words
    assert result.truncated is False


def test_overlap_is_shared_between_neighbours() -> None:
    result = chunk_words(words(20), max_tokens=6, overlap=2)
    for previous, current in zip(result.chunks, result.chunks[1:], strict=False):
        assert tokens(previous.text)[-2:] == tokens(current.text)[:2]


def test_chunk_text_keeps_original_spacing() -> None:
    text = "alpha  beta\n\tgamma   delta"
    result = chunk_words(text, max_tokens=3, overlap=1)
    assert [chunk.text for chunk in result.chunks] == ["alpha  beta\n\tgamma", "gamma   delta"]


def test_leading_and_trailing_space_is_not_in_chunks() -> None:
    result = chunk_words("   one two three   \n", max_tokens=10, overlap=2)
    assert [chunk.text for chunk in result.chunks] == ["one two three"]


@pytest.mark.parametrize(
    ("n_words", "max_chunks", "expected_chunks", "truncated"),
    [
        (100, 3, 3, True),
        (100, 1, 1, True),
        (10, 3, 3, False),  # the third window reaches the end exactly
        (11, 3, 3, True),  # one token left over
        (10, 100, 3, False),
    ],
    ids=["cut-early", "single-chunk-cap", "cap-reached-at-end", "cap-one-short", "cap-not-reached"],
)
def test_truncation(n_words: int, max_chunks: int, expected_chunks: int, truncated: bool) -> None:
    # max_tokens 4, overlap 1: windows start at tokens 0, 3, 6, 9, ...
    result = chunk_words(words(n_words), max_tokens=4, overlap=1, max_chunks=max_chunks)
    assert len(result.chunks) == expected_chunks
    assert result.truncated is truncated
    assert result.total_tokens == n_words


def test_truncated_chunks_are_the_first_windows() -> None:
    text = words(100)
    result = chunk_words(text, max_tokens=10, overlap=2, max_chunks=2)
    assert [tokens(chunk.text) for chunk in result.chunks] == [tokens(text)[0:10], tokens(text)[8:18]]


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"], ids=["empty", "spaces", "whitespace-mix"])
def test_empty_text_has_no_chunks(text: str) -> None:
    result = chunk_words(text, max_tokens=4, overlap=1)
    assert result == ChunkedText(chunks=[], total_tokens=0, truncated=False)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(4, 4), (4, 5), (1, 1)], ids=["equal", "larger", "size-1-equal"])
def test_overlap_not_smaller_than_window_is_rejected(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_words(words(10), max_tokens=max_tokens, overlap=overlap)


# --- the real local tokenizer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder()


def long_document(n_words: int = 2000) -> str:
    rng = random.Random(7)
    vocabulary = [
        "invoice",
        "payment",
        "société",
        "naïve",
        "über-long-hyphenated-compound",
        "e-mail:",
        "2026-11-12",
        "£7,260.00",
        "antidisestablishmentarianism",
        "C++",
        "don't",
        "файл",
        "数据",
        "🙂",
        "https://example.com/a?b=c",
        "(parenthesised)",
        "policy.",
        "the",
        "of",
        "and",
    ]
    lines = []
    for _ in range(n_words // 10):
        lines.append(" ".join(rng.choice(vocabulary) for _ in range(10)))
    return "\n".join(lines)


def test_real_tokenizer_chunks_fit_the_model(local_embedder: LocalEmbedder) -> None:
    tokenizer = local_embedder.tokenizer
    text = long_document()
    result = chunk_text(text, tokenizer, max_tokens=254, overlap=32, max_chunks=1000)

    assert result.total_tokens == len(tokenizer.token_spans(text))
    assert result.total_tokens > 2000  # several tokens per word: the test exercises many windows
    assert len(result.chunks) > 5
    assert result.truncated is False
    assert [chunk.ordinal for chunk in result.chunks] == list(range(len(result.chunks)))
    position = 0
    for chunk in result.chunks:
        assert chunk.token_count <= 254
        assert len(tokenizer.token_spans(chunk.text)) <= 254
        start = text.index(chunk.text, position)
        position = start + 1
    assert text.endswith(result.chunks[-1].text)


MID_WORD_CASES = {
    # 'reimbursement' is rei ##mb ##urse ##ment: windows starting at ##urse or ##ment re-tokenise
    # as 'ur ##se ##ment' / 'men ##t', one token more than the window held.
    "repeated-prose": " ".join(["The reimbursement of travel expenses follows the finance policy."] * 300),
    # the second window (max_tokens 254, overlap 32) starts at token 222: the '##ment' here.
    "window-starts-at-ment": " ".join(["the"] * 219 + ["reimbursement"] + ["the"] * 300),
}


@pytest.mark.parametrize("text", list(MID_WORD_CASES.values()), ids=list(MID_WORD_CASES))
def test_real_tokenizer_window_starting_mid_word_fits(local_embedder: LocalEmbedder, text: str) -> None:
    tokenizer = local_embedder.tokenizer
    result = chunk_text(text, tokenizer, max_tokens=254, overlap=32, max_chunks=64)
    assert len(result.chunks) > 1
    assert [len(tokenizer.token_spans(chunk.text)) for chunk in result.chunks] == [
        chunk.token_count for chunk in result.chunks
    ]
    assert all(chunk.token_count <= 254 for chunk in result.chunks)


def test_an_overlap_valid_for_the_setting_but_not_for_the_model_window_is_cut() -> None:
    """AUTOTAG_CHUNK_TOKENS=512 with a 300-token overlap passes settings; the model allows 254."""
    from autotag.ingest import chunk_windows
    from autotag.settings import EmbeddingProvider, Settings

    settings = Settings(embedding_provider=EmbeddingProvider.ONNX, chunk_tokens=512, chunk_overlap_tokens=300)

    windows = chunk_windows(settings, max_input_tokens=254)

    assert (windows.tokens, windows.overlap) == (254, 127)
    # Uncapped by default: enough windows for the whole text within the character limit.
    assert windows.max_chunks == -(-settings.max_extracted_chars // 127) + 1
    assert chunk_windows(settings.model_copy(update={"max_chunks_per_document": 8}), 254).max_chunks == 8
