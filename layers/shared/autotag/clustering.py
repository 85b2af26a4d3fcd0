"""Group a workspace's document vectors into categories, choosing how many automatically,
and carry category ids over from the previous grouping when a group barely changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from autotag.embeddings import Vectors, normalise

# Choosing k compares a KMeans fit per candidate k; on a fixed-size sample that costs the same
# for 500 or 100,000 documents (silhouette is quadratic in the documents it looks at).
SAMPLE_SIZE = 3000
# Restarts per candidate k: KMeans from one start can merge two true groups and split a third.
N_INIT = 4
# Lloyd iterations over every document after k is chosen on the sample.
REFINE_ITERATIONS = 10
# Rows per block when a pass goes over every document: bounds temporary memory for large
# workspaces (8192 x 1536 float32 is 48 MB) whatever their size.
BLOCK_ROWS = 8192
RANDOM_STATE = 0
# A new group inherits an old category's id when at least this share of their members agree.
KEEP_ID_JACCARD = 0.5

Member = TypeVar("Member", bound=Hashable)


@dataclass(frozen=True)
class Grouping:
    labels: npt.NDArray[np.int64]  # group index per document
    centroids: Vectors  # unit-length mean of each group's document vectors
    scores: npt.NDArray[np.float32]  # cosine similarity of each document to its group's centroid

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def members(self, group: int) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.labels == group)


def group_documents(vectors: Vectors, *, min_groups: int = 2, max_groups: int = 30) -> Grouping:
    """Spherical KMeans on centred document vectors, k chosen by the cosine silhouette.

    Embedding models put every text in a narrow cone (any two documents have a high cosine),
    so what tells topics apart is each vector's offset from the corpus mean: the vectors are
    centred on the workspace mean and re-normalised before clustering. k is the candidate
    in [min_groups, max_groups] whose KMeans grouping of a fixed-size sample has the best
    silhouette; the sample's centres are then refined over every document, block by block.
    Deterministic for a given input. Workspaces too small to compare two groupings (fewer
    than 3 documents) form one group.
    """
    n = vectors.shape[0]
    if n == 0:
        return Grouping(
            np.zeros(0, dtype=np.int64),
            np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32),
            np.zeros(0, dtype=np.float32),
        )
    candidates = range(max(2, min_groups), min(max_groups, n - 1) + 1)
    if n < 3 or not candidates:
        return _grouping(vectors, np.zeros(n, dtype=np.int64))
    mean = _mean(vectors)
    sample = _centred(vectors[_sample_rows(n)], mean)
    centres = _best_centres(sample, candidates)
    if centres is None:
        return _grouping(vectors, np.zeros(n, dtype=np.int64))
    return _grouping(vectors, _refine(vectors, mean, centres))


def _mean(vectors: Vectors) -> npt.NDArray[np.float32]:
    total = np.zeros(vectors.shape[1], dtype=np.float64)
    for start in range(0, vectors.shape[0], BLOCK_ROWS):
        total += vectors[start : start + BLOCK_ROWS].sum(axis=0, dtype=np.float64)
    mean: npt.NDArray[np.float32] = (total / vectors.shape[0]).astype(np.float32)
    return mean


def _centred(block: Vectors, mean: npt.NDArray[np.float32]) -> Vectors:
    return normalise(block - mean)


def _sample_rows(n: int) -> npt.NDArray[np.int64]:
    if n <= SAMPLE_SIZE:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(RANDOM_STATE).choice(n, SAMPLE_SIZE, replace=False)).astype(np.int64)


def _best_centres(sample: Vectors, candidates: range) -> Vectors | None:
    """Unit centres of the candidate k whose grouping of `sample` has the best cosine silhouette."""
    best: Vectors | None = None
    best_score = -np.inf
    for k in candidates:
        model = KMeans(n_clusters=k, n_init=N_INIT, random_state=RANDOM_STATE).fit(sample)
        labels = model.labels_
        if len(np.unique(labels)) < 2:
            continue
        score = float(silhouette_score(sample, labels, metric="cosine"))
        if score > best_score:
            best_score, best = score, normalise(model.cluster_centers_)
    return best


def _refine(vectors: Vectors, mean: npt.NDArray[np.float32], centres: Vectors) -> npt.NDArray[np.int64]:
    """Spherical Lloyd iterations over every document, from the sample's centres.

    Only one block of centred rows exists at a time, so memory stays at the input plus
    O(BLOCK_ROWS x dimensions). A centre that loses every member keeps its last position
    and so may stay empty; empty groups are dropped when the grouping is built.
    """
    labels = np.full(vectors.shape[0], -1, dtype=np.int64)
    for _ in range(REFINE_ITERATIONS):
        sums = np.zeros_like(centres, dtype=np.float64)
        changed = 0
        for start in range(0, vectors.shape[0], BLOCK_ROWS):
            block = _centred(vectors[start : start + BLOCK_ROWS], mean)
            assigned = np.argmax(block @ centres.T, axis=1).astype(np.int64)
            changed += int(np.count_nonzero(assigned != labels[start : start + len(block)]))
            labels[start : start + len(block)] = assigned
            sums += _group_sums(assigned, block, len(centres))
        if not changed:
            break
        filled = np.linalg.norm(sums, axis=1) > 0
        centres = np.where(filled[:, None], normalise(sums), centres).astype(np.float32)
    return labels


def _group_sums(labels: npt.NDArray[np.int64], rows: Vectors, k: int) -> npt.NDArray[np.float64]:
    """Per-group sums of `rows` (k x dimensions), as one sparse one-hot product."""
    one_hot = sparse.csr_matrix(
        (np.ones(len(labels), dtype=np.float64), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    sums: npt.NDArray[np.float64] = np.asarray(one_hot @ rows.astype(np.float64))
    return sums


def _grouping(vectors: Vectors, labels: npt.NDArray[np.int64]) -> Grouping:
    # Renumber groups by first appearance so the same input always yields the same order.
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    remap = np.zeros(int(labels.max()) + 1 if labels.size else 0, dtype=np.int64)
    remap[order] = np.arange(len(order))
    labels = remap[labels]
    sums = np.zeros((len(order), vectors.shape[1]), dtype=np.float64)
    for start in range(0, vectors.shape[0], BLOCK_ROWS):
        sums += _group_sums(labels[start : start + BLOCK_ROWS], vectors[start : start + BLOCK_ROWS], len(order))
    centroids = normalise(sums)
    scores = np.zeros(vectors.shape[0], dtype=np.float32)
    for start in range(0, vectors.shape[0], BLOCK_ROWS):
        block = vectors[start : start + BLOCK_ROWS]
        own = labels[start : start + BLOCK_ROWS]
        scores[start : start + len(block)] = np.einsum("ij,ij->i", normalise(block), centroids[own])
    return Grouping(labels, centroids, scores)


def carry_over_ids(
    previous: Sequence[set[Member]], current: Sequence[set[Member]], *, threshold: float = KEEP_ID_JACCARD
) -> list[int | None]:
    """For each current group, the index of the previous group whose id it keeps, or None.

    Groups are sets of document ids (or keys); a one-to-one matching maximises the total Jaccard
    overlap, and a pair below `threshold` does not count as the same category.
    """
    if not previous or not current:
        return [None] * len(current)
    overlap = np.zeros((len(current), len(previous)))
    for i, new in enumerate(current):
        for j, old in enumerate(previous):
            union = len(new | old)
            overlap[i, j] = len(new & old) / union if union else 0.0
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    matched: list[int | None] = [None] * len(current)
    for i, j in zip(rows, cols, strict=True):
        if overlap[i, j] >= threshold:
            matched[int(i)] = int(j)
    return matched


def jaccard(a: set[Member], b: set[Member]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def new_category_id(workspace: str, member_keys: Sequence[str], *, salt: int = 0) -> str:
    """A fresh id derived from the founding members, so rebuilding from scratch gives the same ids."""
    digest = hashlib.blake2b(digest_size=6)
    digest.update(workspace.encode())
    if salt:
        digest.update(f"\x00salt{salt}".encode())
    for key in sorted(member_keys):
        digest.update(b"\x00" + key.encode())
    return f"cat_{digest.hexdigest()}"
