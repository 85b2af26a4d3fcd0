"""Document vectors of a labelled corpus, computed once with the pipeline's own code and cached.

A corpus is laid out as <label>/<file>. Each file goes through the same steps as in the
EmbedFunction (extract → chunk by the model's tokens → embed every chunk → token-weighted
document vector), so clustering experiments and `make bench-quality` see the vectors the
pipeline would store, without paying the embedding time (minutes on CPU) more than once.

    python benchmarks/corpus_vectors.py ../shared/corpora/bbc-news   # writes out/vectors/bbc-news-<model>-<provider>/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotag.chunking import chunk_text
from autotag.embeddings import Embedder, Vectors, build_embedder, document_vector, embed_documents
from autotag.extraction import Extracted, extract
from autotag.ingest import chunk_windows
from autotag.settings import Settings

CACHE_ROOT = Path("out/vectors")
# Documents whose chunks go to the model in one call: big enough to batch well, small enough
# to show progress.
EMBED_SLICE = 64
# Bumped whenever the way vectors are computed changes, so older caches are rebuilt
# (version 1 cut every document into no chunks: all its vectors were zero; version 2 batched
# chunks across documents, as the pipeline did then).
CACHE_FORMAT = 3


@dataclass(frozen=True)
class CorpusVectors:
    vectors: Vectors  # one unit-length document vector per file
    files: list[str]  # "<label>/<file>", in row order
    labels: list[str]  # the folder of each file
    texts: list[str]  # the extracted text of each file

    @property
    def classes(self) -> int:
        return len(set(self.labels))


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted(p for p in corpus.glob("*/*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SystemExit(f"no <label>/<file> documents under {corpus}")
    return files


def load_corpus_vectors(
    corpus: Path, *, cache_root: Path = CACHE_ROOT, settings: Settings | None = None
) -> CorpusVectors:
    """The cached vectors of `corpus`, embedding it first when there is no cache for its files."""
    settings = settings or Settings()
    # The provider too: the onnx int8 export and sentence-transformers run the same model but
    # give slightly different vectors, and one must not be measured with the other's cache.
    cache = cache_root / f"{corpus.resolve().name}-{settings.embedding_model}-{settings.embedding_provider.value}"
    files = corpus_files(corpus)
    names = [f"{p.parent.name}/{p.name}" for p in files]
    meta_path, vectors_path = cache / "meta.json", cache / "vectors.npy"
    if meta_path.exists() and vectors_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") == CACHE_FORMAT and meta["corpus_files"] == names:
            return CorpusVectors(np.load(vectors_path), meta["files"], meta["labels"], meta["texts"])
    embedded = embed_corpus(files, build_embedder(settings), settings)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(vectors_path, embedded.vectors)
    meta_path.write_text(
        json.dumps(
            {
                "format": CACHE_FORMAT,
                "corpus_files": names,
                "files": embedded.files,
                "labels": embedded.labels,
                "texts": embedded.texts,
            }
        ),
        encoding="utf-8",
    )
    return embedded


def embed_corpus(files: list[Path], embedder: Embedder, settings: Settings) -> CorpusVectors:
    # The pipeline's own windows (an uncapped AUTOTAG_MAX_CHUNKS_PER_DOCUMENT is 0, not "no chunks").
    windows = chunk_windows(settings, embedder.max_input_tokens)
    extracted: list[tuple[Path, Extracted]] = []
    for path in files:
        result = extract(path.name, path.read_bytes())
        if isinstance(result, Extracted) and result.text.strip():
            extracted.append((path, result))
        else:
            print(f"skipped {path}: no text", file=sys.stderr)
    rows: list[Vectors] = []
    started = time.perf_counter()
    for offset in range(0, len(extracted), EMBED_SLICE):
        part = extracted[offset : offset + EMBED_SLICE]
        chunked = [
            chunk_text(
                doc.text,
                embedder.tokenizer,
                max_tokens=windows.tokens,
                overlap=windows.overlap,
                max_chunks=windows.max_chunks,
            ).chunks
            for _, doc in part
        ]
        for chunks, vectors in zip(chunked, embed_documents(embedder, chunked), strict=True):
            rows.append(document_vector(vectors, [c.token_count for c in chunks]))
        done = offset + len(part)
        print(f"embedded {done}/{len(extracted)} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return CorpusVectors(
        vectors=np.vstack(rows).astype(np.float32),
        files=[f"{p.parent.name}/{p.name}" for p, _ in extracted],
        labels=[p.parent.name for p, _ in extracted],
        texts=[doc.text for _, doc in extracted],
    )


def build_corpus_main(description: str, build: Callable[[Path], dict[str, int]], unit: str) -> int:
    """The command line of a corpus builder: `build` writes <out>/<class>/<file>, the class sizes are printed."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    sizes = build(args.out)
    for label, size in sizes.items():
        print(f"{label:12} {size}")
    print(f"{sum(sizes.values())} {unit} in {len(sizes)} classes under {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    args = parser.parse_args()
    corpus = load_corpus_vectors(args.corpus)
    print(f"{len(corpus.files)} documents, {corpus.classes} classes, vectors {corpus.vectors.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
