"""The `onnx` provider against sentence-transformers: same vectors, same token limits, no torch.

Uses the model `make model` exports to build/model (`make test` builds it first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

from autotag.chunking import chunk_text
from autotag.embeddings import LocalEmbedder, build_embedder, embed_documents
from autotag.onnx_embedding import BATCH_SIZE, MissingModelError, OnnxEmbedder, mean_pool
from autotag.onnx_export import TOKENIZER_FILE, packaged_model_dir, tokenizer_config
from autotag.settings import DEFAULT_ONNX_MODEL_DIR, EmbeddingProvider, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "drive"


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxEmbedder:
    return OnnxEmbedder(DEFAULT_ONNX_MODEL_DIR)


@pytest.fixture(scope="module")
def torch_embedder() -> LocalEmbedder:
    return LocalEmbedder()


def demo_texts() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted(DEMO.rglob("*")) if path.suffix in {".txt", ".md"}]


def test_vectors_match_sentence_transformers_on_real_documents(
    onnx_embedder: OnnxEmbedder, torch_embedder: LocalEmbedder
) -> None:
    texts = demo_texts()
    assert len(texts) > 20
    ours = onnx_embedder.embed(texts)
    reference = torch_embedder.embed(texts)
    cosines = (ours * reference).sum(axis=1)
    assert ours.shape == reference.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.97


def test_long_texts_are_embedded_to_256_tokens_not_the_packaged_128(
    onnx_embedder: OnnxEmbedder, torch_embedder: LocalEmbedder
) -> None:
    """The packaged tokenizer.json truncates at 128 tokens; sentence-transformers reads 256."""
    opening = " ".join(["The quarterly invoice was paid by the finance team on time."] * 11)  # 154 tokens
    endings = [
        " ".join(["Volcanic eruptions reshape mountain glaciers and rivers."] * 6),
        " ".join(["The striker scored twice in the cup final at the stadium."] * 6),
    ]
    texts = [f"{opening} {ending}" for ending in endings]
    counts = [len(onnx_embedder.tokenizer.token_spans(text)) for text in texts]
    assert all(150 < count <= onnx_embedder.max_input_tokens for count in counts)
    ours = onnx_embedder.embed(texts)
    reference = torch_embedder.embed(texts)
    # Cut at 128 tokens both texts would be the same opening, and embed identically.
    assert float(ours[0] @ ours[1]) < 0.95
    assert (ours * reference).sum(axis=1).min() >= 0.98


def test_chunker_limits_and_spans_are_sentence_transformers(
    onnx_embedder: OnnxEmbedder, torch_embedder: LocalEmbedder
) -> None:
    assert onnx_embedder.max_input_tokens == torch_embedder.max_input_tokens == 254
    text = demo_texts()[0]
    assert onnx_embedder.tokenizer.token_spans(text) == torch_embedder.tokenizer.token_spans(text)
    chunked = chunk_text(text, onnx_embedder.tokenizer, max_tokens=254, overlap=32, max_chunks=64)
    assert chunked.chunks and all(chunk.token_count <= 254 for chunk in chunked.chunks)


TRICKY = (
    "The reimbursement of £5,000 was approved; naïve café owners in Zürich and 東京 paid "
    "US$12.50 per e-mail (re-sent) at 09:30. Antidisestablishmentarianism isn't new. "
)


def test_chunks_carry_the_ids_their_text_tokenises_into(onnx_embedder: OnnxEmbedder) -> None:
    texts = [*demo_texts(), TRICKY * 40]
    chunks = [
        chunk
        for text in texts
        for chunk in chunk_text(text, onnx_embedder.tokenizer, max_tokens=60, overlap=12, max_chunks=200).chunks
    ]
    with_ids = [chunk for chunk in chunks if chunk.token_ids is not None]
    spans = HFTokenizer.from_file(str(DEFAULT_ONNX_MODEL_DIR / TOKENIZER_FILE))
    spans.no_truncation()
    for chunk in with_ids:
        assert list(chunk.token_ids or ()) == spans.encode(chunk.text, add_special_tokens=False).ids, chunk.text
    # Windows that end inside a word ("reimburse|ment", "£|5") go as text; most carry their ids.
    without = [chunk for chunk in chunks if chunk.token_ids is None]
    assert without and len(with_ids) > 0.6 * len(chunks)
    assert any(spans.encode(c.text, add_special_tokens=False).ids != list(c.token_ids or ()) for c in without)


def test_chunks_embed_exactly_as_their_texts_without_tokenising_again() -> None:
    embedder = OnnxEmbedder(DEFAULT_ONNX_MODEL_DIR)
    chunks = [
        chunk
        for text in [*demo_texts(), TRICKY * 40]
        for chunk in chunk_text(text, embedder.tokenizer, max_tokens=254, overlap=32, max_chunks=64).chunks
    ]
    by_text = embedder.embed([chunk.text for chunk in chunks])
    tokenised: list[str] = []
    batch_tokenizer = embedder._batch_tokenizer

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(batch_tokenizer, name)

        def encode_batch(self, texts: list[str]) -> object:
            tokenised.extend(texts)
            return batch_tokenizer.encode_batch(texts)

        def encode(self, text: str) -> object:
            tokenised.append(text)
            return batch_tokenizer.encode(text)

    embedder._batch_tokenizer = Counting()  # type: ignore[assignment]
    by_ids = embedder.embed_chunks(chunks)

    assert np.array_equal(by_ids, by_text)  # the same batches, so bit for bit the same vectors
    assert sorted(tokenised) == sorted(chunk.text for chunk in chunks if chunk.token_ids is None)
    assert len(tokenised) < len(chunks) / 2


def test_embedding_order_and_empty_input(onnx_embedder: OnnxEmbedder) -> None:
    texts = ["short", "a much longer text about invoices, payments and late fees " * 5, "contract"]
    together = onnx_embedder.embed(texts)
    alone = np.vstack([onnx_embedder.embed([text]) for text in texts])
    # Not bit-identical: dynamic int8 quantisation scales activations per batch.
    assert np.diag(together @ alone.T).min() > 0.98
    assert (together @ alone.T).argmax(axis=1).tolist() == [0, 1, 2]
    assert onnx_embedder.embed([]).shape == (0, 384)


def test_concurrent_callers_share_the_cores_and_each_gets_its_own_vectors(onnx_embedder: OnnxEmbedder) -> None:
    """The local driver's five invocations embed at once, their batches running side by side."""
    texts = demo_texts()
    calls = [texts[i::4] for i in range(4)]
    serial = [onnx_embedder.embed(call) for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        concurrent = list(pool.map(onnx_embedder.embed, calls))
    assert all(len(call) > BATCH_SIZE for call in calls)
    for alone, together in zip(serial, concurrent, strict=True):
        assert np.array_equal(alone, together)


def test_mean_pool_ignores_padding() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)
    assert np.allclose(mean_pool(hidden, mask), [[1.0, 0.0]])


def test_exported_tokenizer_fixes_the_packaged_truncation() -> None:
    packaged = json.loads((packaged_model_dir() / TOKENIZER_FILE).read_text(encoding="utf-8"))
    assert packaged["truncation"]["max_length"] == 128
    fixed = tokenizer_config(packaged, 256)
    assert fixed["truncation"]["max_length"] == 256
    assert fixed["padding"]["strategy"] == "BatchLongest"
    exported = json.loads((DEFAULT_ONNX_MODEL_DIR / TOKENIZER_FILE).read_text(encoding="utf-8"))
    assert exported["truncation"]["max_length"] == 256


def test_provider_runs_without_torch_or_transformers() -> None:
    script = (
        "import sys\n"
        "from autotag.embeddings import build_embedder\n"
        "from autotag.settings import load_settings\n"
        "embedder = build_embedder(load_settings())\n"
        "assert embedder.embed(['an invoice']).shape == (1, 384)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "AUTOTAG_EMBEDDING_PROVIDER": "onnx"},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert result.stdout.strip() == "[]"


def test_build_embedder_picks_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_EMBEDDING_PROVIDER", "onnx")
    settings = load_settings()
    assert settings.embedding_provider is EmbeddingProvider.ONNX
    assert (settings.embedding_model, settings.embedding_dimensions, settings.chunk_tokens) == (
        "all-MiniLM-L6-v2",
        384,
        256,
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder is build_embedder(load_settings())  # one session per process


def test_missing_model_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOTAG_EMBEDDING_PROVIDER", "onnx")
    monkeypatch.setenv("AUTOTAG_ONNX_MODEL_DIR", str(tmp_path))
    settings = load_settings()  # the cluster function shares the settings, not the model
    with pytest.raises(
        MissingModelError, match=r"AUTOTAG_ONNX_MODEL_DIR=.*model.onnx, tokenizer.json, export.json.*make model"
    ):
        build_embedder(settings)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(MissingModelError, match=r"tokenizer.json, export.json not found"):
        OnnxEmbedder(tmp_path)


def test_a_documents_vectors_do_not_depend_on_the_other_documents_in_the_call(onnx_embedder: OnnxEmbedder) -> None:
    """Which files share an SQS batch depends on upload timing; the vectors must not."""
    documents = [
        chunk_text(text, onnx_embedder.tokenizer, max_tokens=60, overlap=12, max_chunks=200).chunks
        for text in demo_texts()
    ]
    assert len(documents) >= 6 and max(len(chunks) for chunks in documents) > BATCH_SIZE
    together = embed_documents(onnx_embedder, documents)
    alone = [embed_documents(onnx_embedder, [chunks])[0] for chunks in documents]
    order = list(range(1, len(documents), 2)) + list(range(0, len(documents), 2))
    regrouped = dict(zip(order, embed_documents(onnx_embedder, [documents[i] for i in order]), strict=True))
    for number, vectors in enumerate(together):
        assert vectors.shape == (len(documents[number]), onnx_embedder.dimensions)
        assert np.array_equal(vectors, alone[number])  # bit for bit
        assert np.array_equal(vectors, regrouped[number])
    # Batches across documents, as the pipeline had them, are not: the int8 model quantises per batch.
    flat = onnx_embedder.embed_chunks([chunk for chunks in documents for chunk in chunks])
    assert not np.array_equal(flat, np.vstack(together))
