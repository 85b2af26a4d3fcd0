"""Category quality on labelled corpora, in one run on the same document vectors.

For each corpus: our grouping (k chosen automatically), KMeans told the true k, and BERTopic
with its defaults (UMAP + HDBSCAN on the same vectors; its outliers, topic -1, count as one
more cluster, as BERTopic reports them). NMI, ARI, number of categories, share of documents
left unassigned, and wall time. Then, on BBC News, whether each category's offline label is
recognisable: the label and the class names are embedded with the same model, and a label
counts when the class name nearest to it is its category's majority class.

    python benchmarks/quality.py ../shared/corpora/bbc-news [--second out/corpora/manpages]
        [--third out/corpora/scipy-docs]

BBC News is also cut to very unequal class sizes, by several share profiles (which class is
big changes between them), so that the choice of k is not judged on balanced classes alone.

Vectors come from benchmarks/corpus_vectors.py's cache (built on first use).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_vectors import CorpusVectors, load_corpus_vectors
from docstring_corpus import build as build_docstrings
from manpage_corpus import build as build_manpages

from autotag.categorize import LABEL_TEXT_CHARS, typical_members
from autotag.clustering import group_documents
from autotag.embeddings import build_embedder
from autotag.labels import name_categories
from autotag.settings import Settings

Labels = npt.NDArray[np.int64]

# Share of each BBC class kept (classes in alphabetical order: business, entertainment,
# politics, sport, tech): one class whole, the others ever smaller, the big class varying.
UNEQUAL_PROFILES: dict[str, list[float]] = {
    "unequal 1/.4/.15/.06/.03": [1.0, 0.4, 0.15, 0.06, 0.03],
    "unequal 1/.5/.25/.12/.06": [1.0, 0.5, 0.25, 0.12, 0.06],
    "unequal .03/.06/.15/.4/1": [0.03, 0.06, 0.15, 0.4, 1.0],
    "unequal .15/1/.03/.4/.06": [0.15, 1.0, 0.03, 0.4, 0.06],
}


@dataclass(frozen=True)
class Row:
    corpus: str
    method: str
    categories: int
    nmi: float
    ari: float
    unassigned: float
    seconds: float


def measure(corpus: str, method: str, truth: Sequence[str], run: Callable[[], Labels]) -> tuple[Row, Labels]:
    started = time.perf_counter()
    labels = run()
    seconds = time.perf_counter() - started
    row = Row(
        corpus,
        method,
        len(set(labels[labels >= 0].tolist())),
        normalized_mutual_info_score(truth, labels),
        adjusted_rand_score(truth, labels),
        float(np.mean(labels < 0)),
        seconds,
    )
    print(_line(row), file=sys.stderr, flush=True)
    return row, labels


def ours(data: CorpusVectors) -> Labels:
    return group_documents(data.vectors).labels


def kmeans_true_k(data: CorpusVectors) -> Labels:
    labels: Labels = KMeans(n_clusters=data.classes, n_init=4, random_state=0).fit_predict(data.vectors)
    return labels


def bertopic_defaults(data: CorpusVectors) -> Labels:
    from bertopic import BERTopic

    topics, _ = BERTopic().fit_transform(data.texts, embeddings=data.vectors)
    return np.asarray(topics, dtype=np.int64)


METHODS: dict[str, Callable[[CorpusVectors], Labels]] = {
    "ours (auto k)": ours,
    "KMeans (true k)": kmeans_true_k,
    "BERTopic (defaults)": bertopic_defaults,
}


def subsample(data: CorpusVectors, shares: Sequence[float]) -> CorpusVectors:
    """Classes cut to very unequal sizes (the first class whole, the next ones ever smaller)."""
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for label, share in zip(sorted(set(data.labels)), shares, strict=False):
        rows = [i for i, lab in enumerate(data.labels) if lab == label]
        keep += sorted(rng.choice(rows, max(1, round(share * len(rows))), replace=False).tolist())
    keep.sort()
    return CorpusVectors(
        data.vectors[keep],
        [data.files[i] for i in keep],
        [data.labels[i] for i in keep],
        [data.texts[i] for i in keep],
    )


def recognisable_labels(data: CorpusVectors, labels: Labels, settings: Settings) -> tuple[int, list[str]]:
    """How many categories' labels are nearest (by embedding) to their majority class's name."""
    groups = sorted(set(labels.tolist()))
    grouping = group_documents(data.vectors)
    assert np.array_equal(grouping.labels, labels)  # deterministic: the same grouping again
    texts = [[data.texts[i][:LABEL_TEXT_CHARS] for i in typical_members(grouping, g)] for g in groups]
    names = [naming.label for naming in name_categories(texts)]
    classes = sorted(set(data.labels))
    embedder = build_embedder(settings)
    label_vectors, class_vectors = embedder.embed(names), embedder.embed(classes)
    nearest = (label_vectors @ class_vectors.T).argmax(axis=1)
    lines, hits = [], 0
    for g, name, near in zip(groups, names, nearest, strict=True):
        majority = Counter(data.labels[i] for i in np.flatnonzero(labels == g)).most_common(1)[0][0]
        hit = classes[near] == majority
        hits += hit
        lines.append(
            f"  {name!r:40} majority {majority:14} nearest class name {classes[near]:14} {'ok' if hit else 'MISS'}"
        )
    return hits, lines


def _line(row: Row) -> str:
    return (
        f"| {row.corpus:34} | {row.method:24} | {row.categories:10} | {row.nmi:6.4f} | {row.ari:6.4f} "
        f"| {row.unassigned:10.1%} | {row.seconds:7.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument(
        "--second", type=Path, default=Path("out/corpora/manpages"), help="second corpus (built if missing)"
    )
    parser.add_argument(
        "--third", type=Path, default=Path("out/corpora/scipy-docs"), help="third corpus (built if missing)"
    )
    args = parser.parse_args()
    settings = Settings()
    bbc = load_corpus_vectors(args.corpus, settings=settings)
    corpora = {f"{args.corpus.name} ({bbc.classes} classes)": bbc}
    for profile, shares in UNEQUAL_PROFILES.items():
        corpora[f"{args.corpus.name} {profile}"] = subsample(bbc, shares)
    for path, build in ((args.second, build_manpages), (args.third, build_docstrings)):
        if not path.exists():
            build(path)
        data = load_corpus_vectors(path, settings=settings)
        corpora[f"{path.name} ({data.classes} classes)"] = data
    rows: list[Row] = []
    bbc_labels: Labels | None = None
    for name, data in corpora.items():
        print(
            f"{name}: {len(data.files)} documents, class sizes {sorted(Counter(data.labels).values())}", file=sys.stderr
        )
        for method, run in METHODS.items():
            row, labels = measure(name, method, data.labels, partial(run, data))
            rows.append(row)
            if data is bbc and run is ours:
                bbc_labels = labels
    print(f"\n| {'corpus':34} | {'method':24} | categories | NMI    | ARI    | unassigned | seconds |")
    print("|" + "|".join("-" * (width + 2) for width in (34, 24, 10, 6, 6, 10, 7)) + "|")
    for row in rows:
        print(_line(row))
    assert bbc_labels is not None
    hits, lines = recognisable_labels(bbc, bbc_labels, settings)
    print(f"\nBBC labels nearest their majority class name: {hits}/{len(lines)} (bar: at least 4 of 5)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
