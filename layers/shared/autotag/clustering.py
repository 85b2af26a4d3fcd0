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
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from autotag.embeddings import Vectors, normalise

# Silhouette is quadratic in n; a fixed-size sample keeps choosing k cheap on big workspaces.
SILHOUETTE_SAMPLE = 3000
RANDOM_STATE = 0
# A new group inherits an old category's id when at least this share of their members agree.
KEEP_ID_JACCARD = 0.5

Member = TypeVar("Member", bound=Hashable)


@dataclass(frozen=True)
class Grouping:
    labels: npt.NDArray[np.int64]  # group index per document
    centroids: Vectors  # unit-length centroid per group
    scores: npt.NDArray[np.float32]  # cosine similarity of each document to its group's centroid

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def members(self, group: int) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.labels == group)


def group_documents(vectors: Vectors, *, min_groups: int = 2, max_groups: int = 30) -> Grouping:
    """KMeans on unit vectors with k chosen by the cosine silhouette; deterministic for a given input.

    Workspaces too small to compare two groupings (fewer than 3 documents) form one group.
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
    best_labels: npt.NDArray[np.int64] | None = None
    best_score = -np.inf
    for k in candidates:
        labels = KMeans(n_clusters=k, n_init=4, random_state=RANDOM_STATE).fit_predict(vectors).astype(np.int64)
        if len(np.unique(labels)) < 2:
            continue
        score = float(
            silhouette_score(
                vectors, labels, metric="cosine", sample_size=min(n, SILHOUETTE_SAMPLE), random_state=RANDOM_STATE
            )
        )
        if score > best_score:
            best_score, best_labels = score, labels
    if best_labels is None:
        best_labels = np.zeros(n, dtype=np.int64)
    return _grouping(vectors, best_labels)


def _grouping(vectors: Vectors, labels: npt.NDArray[np.int64]) -> Grouping:
    # Renumber groups by first appearance so the same input always yields the same order.
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    remap = {int(old): new for new, old in enumerate(order)}
    labels = np.asarray([remap[int(label)] for label in labels], dtype=np.int64)
    centroids = normalise(np.vstack([vectors[labels == g].mean(axis=0) for g in range(len(order))]))
    scores = np.einsum("ij,ij->i", vectors, centroids[labels]).astype(np.float32)
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
