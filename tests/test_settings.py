"""Tests for autotag.settings: defaults, provider-dependent defaults, and start-up errors."""

from __future__ import annotations

import os

import pytest

from autotag.settings import EmbeddingProvider, Settings, SettingsError, load_settings

ENV_PREFIXES = ("AUTOTAG_", "OPENAI_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting leaks in from the developer's shell or another test."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def openai_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    clean_env.setenv("AUTOTAG_EMBEDDING_PROVIDER", "openai")
    clean_env.setenv("OPENAI_API_KEY", "sk-test")
    return clean_env


def load_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    return str(info.value)


def test_defaults_use_the_onnx_provider() -> None:
    settings = load_settings()
    assert settings.embedding_provider is EmbeddingProvider.ONNX
    assert settings.embedding_model == "all-MiniLM-L6-v2"
    assert settings.embedding_dimensions == 384
    assert settings.chunk_tokens == 256
    assert settings.chunk_overlap_tokens < settings.chunk_tokens
    assert settings.min_categories <= settings.max_categories


def test_openai_provider_defaults(openai_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.embedding_provider is EmbeddingProvider.OPENAI
    assert settings.embedding_model == "text-embedding-3-small"
    assert settings.embedding_dimensions == 1536
    assert settings.chunk_tokens == 512
    assert settings.openai_api_key == "sk-test"


def test_openai_key_may_come_from_a_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AUTOTAG_EMBEDDING_PROVIDER", "openai")
    clean_env.setenv("AUTOTAG_OPENAI_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:k")
    settings = load_settings()
    assert settings.openai_api_key is None
    assert settings.openai_api_key_secret_arn is not None


def test_openai_without_key_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    message = load_error(clean_env, AUTOTAG_EMBEDDING_PROVIDER="openai")
    assert "OPENAI_API_KEY" in message


@pytest.mark.parametrize(
    "value", ["azure", "bedrock", "sentence-transformers"], ids=["azure", "bedrock", "sentence-transformers"]
)
def test_unknown_provider_names_the_variable(clean_env: pytest.MonkeyPatch, value: str) -> None:
    message = load_error(clean_env, AUTOTAG_EMBEDDING_PROVIDER=value)
    assert "AUTOTAG_EMBEDDING_PROVIDER" in message


def test_unknown_openai_model_needs_dimensions(openai_env: pytest.MonkeyPatch) -> None:
    message = load_error(openai_env, AUTOTAG_EMBEDDING_MODEL="my-finetuned-embedder")
    assert "AUTOTAG_EMBEDDING_DIMENSIONS" in message
    assert "my-finetuned-embedder" in message


def test_unknown_openai_model_with_dimensions_is_accepted(openai_env: pytest.MonkeyPatch) -> None:
    openai_env.setenv("AUTOTAG_EMBEDDING_MODEL", "my-finetuned-embedder")
    openai_env.setenv("AUTOTAG_EMBEDDING_DIMENSIONS", "768")
    settings = load_settings()
    assert (settings.embedding_model, settings.embedding_dimensions) == ("my-finetuned-embedder", 768)


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [
        ("text-embedding-3-small", 512),
        ("text-embedding-3-small", 1536),
        ("text-embedding-3-large", 256),
        ("text-embedding-3-large", 1536),
        ("text-embedding-ada-002", 1536),
    ],
    ids=["3-small-shortened", "3-small-native", "3-large-shortened", "3-large-to-1536", "ada-native"],
)
def test_openai_dimensions_accepted(openai_env: pytest.MonkeyPatch, model: str, dimensions: int) -> None:
    openai_env.setenv("AUTOTAG_EMBEDDING_MODEL", model)
    openai_env.setenv("AUTOTAG_EMBEDDING_DIMENSIONS", str(dimensions))
    settings = load_settings()
    assert (settings.embedding_model, settings.embedding_dimensions) == (model, dimensions)


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [
        ("text-embedding-3-small", 2048),
        ("text-embedding-3-large", 4096),
        ("text-embedding-3-large", 3072),
        ("text-embedding-ada-002", 512),
    ],
    ids=[
        "3-small-longer-than-native",
        "3-large-longer-than-native",
        "3-large-native-over-hnsw-limit",
        "ada-not-shortenable",
    ],
)
def test_openai_dimensions_rejected(openai_env: pytest.MonkeyPatch, model: str, dimensions: int) -> None:
    message = load_error(openai_env, AUTOTAG_EMBEDDING_MODEL=model, AUTOTAG_EMBEDDING_DIMENSIONS=str(dimensions))
    assert "AUTOTAG_EMBEDDING_DIMENSIONS" in message
    assert model in message


def test_local_provider_rejects_other_models(clean_env: pytest.MonkeyPatch) -> None:
    message = load_error(clean_env, AUTOTAG_EMBEDDING_MODEL="text-embedding-3-small")
    assert "AUTOTAG_EMBEDDING_MODEL" in message


def test_local_provider_rejects_other_dimensions(clean_env: pytest.MonkeyPatch) -> None:
    message = load_error(clean_env, AUTOTAG_EMBEDDING_DIMENSIONS="768")
    assert "AUTOTAG_EMBEDDING_DIMENSIONS" in message


@pytest.mark.parametrize(
    ("chunk", "overlap"),
    [("256", "256"), ("128", "200"), ("", "256")],
    ids=["equal", "larger", "larger-than-default-chunk"],
)
def test_overlap_must_be_smaller_than_chunk(clean_env: pytest.MonkeyPatch, chunk: str, overlap: str) -> None:
    if chunk:
        clean_env.setenv("AUTOTAG_CHUNK_TOKENS", chunk)
    message = load_error(clean_env, AUTOTAG_CHUNK_OVERLAP_TOKENS=overlap)
    assert "AUTOTAG_CHUNK_OVERLAP_TOKENS" in message


def test_overlap_just_below_chunk_is_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AUTOTAG_CHUNK_TOKENS", "100")
    clean_env.setenv("AUTOTAG_CHUNK_OVERLAP_TOKENS", "99")
    settings = load_settings()
    assert (settings.chunk_tokens, settings.chunk_overlap_tokens) == (100, 99)


def test_min_categories_above_max_is_rejected(clean_env: pytest.MonkeyPatch) -> None:
    message = load_error(clean_env, AUTOTAG_MIN_CATEGORIES="10", AUTOTAG_MAX_CATEGORIES="5")
    assert "AUTOTAG_MIN_CATEGORIES" in message


def test_min_categories_equal_to_max_is_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AUTOTAG_MIN_CATEGORIES", "5")
    clean_env.setenv("AUTOTAG_MAX_CATEGORIES", "5")
    settings = load_settings()
    assert (settings.min_categories, settings.max_categories) == (5, 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTOTAG_CHUNK_TOKENS", "lots"),
        ("AUTOTAG_MAX_CATEGORIES", "0"),
        ("AUTOTAG_OPENAI_MAX_RETRIES", "11"),
    ],
    ids=["not-an-int", "below-minimum", "above-maximum"],
)
def test_field_errors_name_the_variable(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    message = load_error(clean_env, **{name: value})
    assert name in message


def test_embedded_database_by_default() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.uses_embedded_database is True


@pytest.mark.parametrize(
    "name",
    ["DATABASE_URL", "AUTOTAG_DATABASE_URL"],
    ids=["DATABASE_URL", "AUTOTAG_DATABASE_URL"],
)
def test_database_url_disables_embedded_database(clean_env: pytest.MonkeyPatch, name: str) -> None:
    clean_env.setenv(name, "postgresql://user@db.example/autotag")
    settings = load_settings()
    assert settings.database_url == "postgresql://user@db.example/autotag"
    assert settings.uses_embedded_database is False


def test_database_secret_disables_embedded_database(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AUTOTAG_DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:db")
    assert load_settings().uses_embedded_database is False


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.chunk_tokens = 1
    assert isinstance(settings, Settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTOTAG_MAX_PAGES", "0"),
        ("AUTOTAG_MAX_EXTRACTED_CHARS", "0"),
        ("AUTOTAG_MAX_DECOMPRESSED_BYTES", "-1"),
        ("AUTOTAG_EXTRACTION_TIME_BUDGET_SECONDS", "0"),
    ],
)
def test_extraction_limits_must_be_positive(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


@pytest.mark.parametrize("provider", ["local", "onnx"])
def test_both_local_providers_run_minilm(clean_env: pytest.MonkeyPatch, provider: str) -> None:
    clean_env.setenv("AUTOTAG_EMBEDDING_PROVIDER", provider)
    settings = load_settings()
    assert settings.embedding_provider.value == provider
    assert (settings.embedding_model, settings.embedding_dimensions, settings.chunk_tokens) == (
        "all-MiniLM-L6-v2",
        384,
        256,
    )
    message = load_error(clean_env, AUTOTAG_EMBEDDING_MODEL="text-embedding-3-small")
    assert f"the {provider} provider only ships" in message
