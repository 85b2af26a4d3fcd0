"""One typed settings object, parsed from environment variables once at start-up.

A wrong or missing setting must fail at cold start with a message an operator can act on,
not deep inside a request, so every check lives here.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmbeddingProvider(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    ONNX = "onnx"


# Providers that run all-MiniLM-L6-v2 in this process (sentence-transformers or onnxruntime).
LOCAL_PROVIDERS = frozenset({EmbeddingProvider.LOCAL, EmbeddingProvider.ONNX})
# Where `make model` writes the ONNX export: build/model at the root of a checkout.
DEFAULT_ONNX_MODEL_DIR = Path(__file__).resolve().parents[3] / "build" / "model"


class Labeler(StrEnum):
    KEYWORDS = "keywords"  # offline, from the category's own documents
    OPENAI = "openai"  # a chat model names the category; the keyword label is the fallback


LOCAL_MODEL = "all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"

# Native output sizes; a model not listed needs AUTOTAG_EMBEDDING_DIMENSIONS.
KNOWN_DIMENSIONS: dict[str, int] = {
    LOCAL_MODEL: 384,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# pgvector's HNSW index on the `vector` type stops at 2,000 dimensions.
MAX_INDEXED_DIMENSIONS = 2000
# Models that accept the `dimensions` request parameter (Matryoshka truncation).
SHORTENABLE_MODELS = frozenset({"text-embedding-3-small", "text-embedding-3-large"})


# libpq sslmodes that never fall back to a plaintext connection.
TLS_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


class SettingsError(RuntimeError):
    """Raised at start-up when the environment does not describe a runnable configuration."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOTAG_", extra="ignore", frozen=True)

    # onnx: the same model as `local` (sentence-transformers), at about twice its speed, no torch.
    embedding_provider: EmbeddingProvider = EmbeddingProvider.ONNX
    embedding_model: str = ""
    embedding_dimensions: int = Field(default=0, ge=0, le=16000)

    # The openai client reads OPENAI_API_KEY / OPENAI_BASE_URL itself; in AWS the key comes
    # from Secrets Manager instead of a plain environment variable.
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    openai_api_key_secret_arn: str | None = None
    openai_timeout_seconds: float = Field(default=30.0, gt=0)
    openai_max_retries: int = Field(default=3, ge=0, le=10)
    # First pause before retrying a failed embedding request; it doubles per retry, up to 8 s.
    openai_backoff_seconds: float = Field(default=0.5, gt=0, le=8)
    # The account's embedding rate limits; each EmbedFunction instance keeps to 1/embed_concurrency
    # of them (unset: no client-side budget, 429s are retried).
    openai_requests_per_minute: int | None = Field(default=None, gt=0)
    openai_tokens_per_minute: int | None = Field(default=None, gt=0)
    # How many EmbedFunction instances run at once (template: ReservedConcurrentExecutions).
    embed_concurrency: int = Field(default=5, ge=1)

    # Checked when the embedder loads, not here: the cluster function shares these settings
    # but not the model (nor its layer).
    onnx_model_dir: Path = DEFAULT_ONNX_MODEL_DIR

    chunk_tokens: int = Field(default=0, ge=0, le=8191)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    # 0: as many chunks as the whole text within AUTOTAG_MAX_EXTRACTED_CHARS can make, so a
    # long document's vector comes from all of it; a number caps the embedding cost per document.
    max_chunks_per_document: int = Field(default=0, ge=0)
    max_object_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # Extraction limits per document (see autotag.formats.base.ExtractionLimits).
    max_pages: int = Field(default=1000, ge=1)
    max_extracted_chars: int = Field(default=500_000, ge=1)
    max_decompressed_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    extraction_time_budget_seconds: float = Field(default=30.0, gt=0)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "AUTOTAG_DATABASE_URL")
    )
    database_secret_arn: str | None = None
    database_host: str | None = None
    database_name: str = "autotag"
    # The secret's host is remote (RDS Proxy): only modes that refuse a plaintext connection.
    database_sslmode: str = "require"

    data_dir: Path = Path(".autotag")
    documents_bucket: str = "autotag-local-documents"
    cluster_queue_url: str | None = None
    # Reprocessing: where re-enqueued objects go, and which DLQ drains into which queue.
    ingest_queue_url: str | None = None
    ingest_dlq_url: str | None = None
    cluster_dlq_url: str | None = None
    ingest_rule_dlq_url: str | None = None
    # A message redriven this many times and dead-lettered again stays in its DLQ.
    max_redrives: int = Field(default=3, ge=0, le=100)
    # SQS long polling: an empty answer then means an empty DLQ, not an unlucky sample.
    redrive_wait_seconds: int = Field(default=1, ge=0, le=20)
    # Keys compared per step of a reconcile (S3 ListObjectsV2 returns at most 1,000).
    reconcile_page_size: int = Field(default=500, ge=1, le=1000)

    min_categories: int = Field(default=2, ge=1)
    max_categories: int = Field(default=30, ge=1, le=200)
    labeler: Labeler = Labeler.KEYWORDS
    label_model: str = "gpt-4o-mini"
    # Longest label stored (a filter name in the drive's UI); longer ones are cut at a word.
    max_label_chars: int = Field(default=48, ge=16, le=200)

    @model_validator(mode="after")
    def _fill_model_defaults(self) -> Settings:
        # frozen model: defaults that depend on other fields are set through object.__setattr__
        if not self.embedding_model:
            default = LOCAL_MODEL if self.embedding_provider in LOCAL_PROVIDERS else DEFAULT_OPENAI_MODEL
            object.__setattr__(self, "embedding_model", default)
        if self.embedding_provider in LOCAL_PROVIDERS and self.embedding_model != LOCAL_MODEL:
            raise ValueError(
                f"AUTOTAG_EMBEDDING_MODEL: the {self.embedding_provider.value} provider only ships {LOCAL_MODEL!r}"
            )
        native = KNOWN_DIMENSIONS.get(self.embedding_model)
        if not self.embedding_dimensions:
            if native is None:
                raise ValueError(
                    f"AUTOTAG_EMBEDDING_DIMENSIONS is required for model {self.embedding_model!r} "
                    "(its vector size is not known to autotag)"
                )
            object.__setattr__(self, "embedding_dimensions", native)
        elif (
            native is not None
            and self.embedding_dimensions != native
            and (self.embedding_model not in SHORTENABLE_MODELS or self.embedding_dimensions > native)
        ):
            raise ValueError(
                f"AUTOTAG_EMBEDDING_DIMENSIONS={self.embedding_dimensions} does not match "
                f"{self.embedding_model!r}, which produces {native}-dimensional vectors"
            )
        if self.embedding_dimensions > MAX_INDEXED_DIMENSIONS:
            raise ValueError(
                f"AUTOTAG_EMBEDDING_DIMENSIONS={self.embedding_dimensions} for {self.embedding_model!r}: "
                f"pgvector's HNSW index takes at most "
                f"{MAX_INDEXED_DIMENSIONS} dimensions; text-embedding-3 models can be shortened, e.g. to 1536"
            )
        if not self.chunk_tokens:
            object.__setattr__(self, "chunk_tokens", 256 if self.embedding_provider in LOCAL_PROVIDERS else 512)
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("AUTOTAG_CHUNK_OVERLAP_TOKENS must be smaller than AUTOTAG_CHUNK_TOKENS")
        if self.database_secret_arn and self.database_sslmode not in TLS_SSLMODES:
            raise ValueError(
                f"AUTOTAG_DATABASE_SSLMODE={self.database_sslmode!r} would allow an unencrypted database "
                f"connection; use one of {', '.join(sorted(TLS_SSLMODES))}"
            )
        if self.min_categories > self.max_categories:
            raise ValueError("AUTOTAG_MIN_CATEGORIES must not exceed AUTOTAG_MAX_CATEGORIES")
        if (
            (self.embedding_provider is EmbeddingProvider.OPENAI or self.labeler is Labeler.OPENAI)
            and not self.openai_api_key
            and not self.openai_api_key_secret_arn
        ):
            raise ValueError(
                "the openai provider and the openai labeler need OPENAI_API_KEY (local runs) or "
                "AUTOTAG_OPENAI_API_KEY_SECRET_ARN (AWS, read from Secrets Manager)"
            )
        return self

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url and not self.database_secret_arn


def load_settings() -> Settings:
    """Parse settings from the process environment or raise SettingsError."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(err)) for err in exc.errors())
        raise SettingsError(f"invalid autotag configuration: {problems}") from None


def _describe(err: dict[str, object]) -> str:
    location = [str(part) for part in err.get("loc") or () if part]  # type: ignore[attr-defined]
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if not location:
        return message
    return f"AUTOTAG_{location[0].upper()}: {message}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, parsed on first use (a Lambda cold start)."""
    return load_settings()
