"""Does a document vector built from all of a document's chunks cluster better than its first chunk?

Every document of a labelled corpus (<label>/<file>) is extracted and chunked exactly as the
embed function does (the local model's tokens, the default window and overlap, no chunk cap),
every chunk is embedded once with the local model and cached under --cache, then the
project's clustering (`group_documents`, k chosen automatically) runs on two document
vectors per document:

- first chunk: the vector of the document's first window only (what a single-window
  embedding of the opening would give);
- all chunks: the token-weighted mean of every chunk's vector (what the pipeline stores).

NMI and ARI against the labels are printed for the whole corpus and for its long documents
(more than `--long-chunks` chunks), where the two variants differ.

    python benchmarks/long_documents.py ../shared/corpora/bbc-news
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from autotag.chunking import chunk_text
from autotag.clustering import group_documents
from autotag.embeddings import LocalEmbedder, Vectors, document_vector
from autotag.extraction import Extracted, extract
from autotag.settings import Settings

# No cap: the point is to see every chunk of every document.
UNCAPPED_CHUNKS = 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("out/long-documents"))
    parser.add_argument("--long-chunks", type=int, default=2, help="a document with more chunks than this is long")
    args = parser.parse_args()

    files = sorted(p for p in args.corpus.glob("*/*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SystemExit(f"no <label>/<file> documents under {args.corpus}")
    embedder = LocalEmbedder()
    settings = Settings()
    window = min(settings.chunk_tokens, embedder.max_input_tokens)
    texts: list[str] = []
    labels: list[str] = []
    doc_of_chunk: list[int] = []
    tokens: list[int] = []
    for path in files:
        result = extract(path.name, path.read_bytes())
        if not isinstance(result, Extracted):
            continue
        chunked = chunk_text(
            result.text,
            embedder.tokenizer,
            max_tokens=window,
            overlap=settings.chunk_overlap_tokens,
            max_chunks=UNCAPPED_CHUNKS,
        )
        for chunk in chunked.chunks:
            texts.append(chunk.text)
            doc_of_chunk.append(len(labels))
            tokens.append(chunk.token_count)
        labels.append(path.parent.name)
    vectors = _cached_embeddings(args.cache, embedder, texts)
    owner = np.asarray(doc_of_chunk)
    weights = np.asarray(tokens)

    members = [np.flatnonzero(owner == d) for d in range(len(labels))]
    first = np.vstack([vectors[idx[0]] for idx in members])
    every = np.vstack([document_vector(vectors[idx], weights[idx].tolist()) for idx in members])
    counts = np.bincount(owner, minlength=len(labels))
    long_docs = np.flatnonzero(counts > args.long_chunks)
    report = {
        "corpus": str(args.corpus),
        "documents": len(labels),
        "chunks": len(texts),
        "chunk_tokens": window,
        "chunks_per_document": {"mean": round(float(counts.mean()), 2), "max": int(counts.max())},
        "all_documents": _compare(first, every, labels, np.arange(len(labels))),
        f"long_documents_over_{args.long_chunks}_chunks": _compare(first, every, labels, long_docs),
    }
    print(json.dumps(report, indent=2))
    (args.cache / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _cached_embeddings(cache: Path, embedder: LocalEmbedder, texts: list[str]) -> Vectors:
    """The chunk vectors, embedded once per distinct set of chunk texts and model."""
    digest = hashlib.sha256("\x00".join([embedder.model, *texts]).encode()).hexdigest()[:16]
    path = cache / f"chunks-{digest}.npy"
    if path.exists():
        return np.load(path)  # type: ignore[no-any-return]
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    print(f"embedded {len(texts)} chunks in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    np.save(path, vectors)
    return vectors


def _compare(first: Vectors, every: Vectors, labels: list[str], subset: np.ndarray) -> dict[str, object]:
    truth = [labels[i] for i in subset]
    scores: dict[str, object] = {"documents": len(subset)}
    for name, matrix in (("first_chunk", first), ("all_chunks", every)):
        grouping = group_documents(matrix[subset])
        scores[name] = {
            "k": grouping.k,
            "nmi": round(normalized_mutual_info_score(truth, grouping.labels), 4),
            "ari": round(adjusted_rand_score(truth, grouping.labels), 4),
        }
    return scores


if __name__ == "__main__":
    sys.exit(main())
