"""What the cluster function does for one workspace: regroup its documents, keep category
ids and labels where a group barely changed, name the rest, and store the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autotag.chat_labels import CategoryBrief, Namer
from autotag.clustering import Grouping, carry_over_ids, group_documents, jaccard, new_category_id
from autotag.labels import Naming, clean_keywords, name_categories, unique_label
from autotag.settings import Settings
from autotag.store import Assignment, CategoryRecord, Store

logger = logging.getLogger(__name__)

# A category whose membership changed less than this keeps its label (and so its filter name).
KEEP_LABEL_JACCARD = 0.8
# Documents per category read for naming: the ones closest to its centre are the most typical.
LABEL_SAMPLE = 100
LABEL_TEXT_CHARS = 4000


@dataclass(frozen=True)
class RecomputeResult:
    workspace: str
    recomputed: bool
    reason: str = ""
    version: int = 0
    documents: int = 0
    categories: int = 0
    kept_ids: int = 0


def recompute_workspace(
    store: Store, settings: Settings, workspace: str, requested_version: int, *, namer: Namer | None = None
) -> RecomputeResult:
    """Recompute `workspace` unless a clustering at or after `requested_version` already exists.

    `namer` (the chat labeler) names the categories whose label is not kept; without it, or
    when it returns nothing usable, the offline keyword label is used.
    """
    with store.clustering_lock(workspace) as (change_version, clustered_version):
        if clustered_version >= max(requested_version, 1) and clustered_version >= change_version:
            return RecomputeResult(workspace, False, "already covered by a newer clustering", clustered_version)
        ids, keys, vectors = store.load_embedded_vectors(workspace, settings.embedding_model)
        previous = store.load_categories(workspace)
        present = set(ids)
        # Categories that still have documents: the number to keep unless the data clearly says otherwise.
        surviving = sum(1 for c in previous if present.intersection(c.document_ids))
        grouping = group_documents(
            vectors,
            min_groups=settings.min_categories,
            max_groups=settings.max_categories,
            preferred_k=surviving or None,
        )
        categories, assignments, kept = _categories(
            store, workspace, ids, keys, grouping, previous, namer, max_label_chars=settings.max_label_chars
        )
        store.save_clustering(workspace, change_version, categories, assignments)
    logger.info(
        "recomputed %s: %d documents in %d categories (%d ids kept)",
        workspace,
        len(ids),
        len(categories),
        kept,
        extra={"workspace": workspace, "version": change_version},
    )
    return RecomputeResult(workspace, True, "", change_version, len(ids), len(categories), kept)


def _categories(
    store: Store,
    workspace: str,
    ids: list[int],
    keys: list[str],
    grouping: Grouping,
    previous: list[CategoryRecord],
    namer: Namer | None = None,
    *,
    max_label_chars: int,
) -> tuple[list[CategoryRecord], list[Assignment], int]:
    """Every label stored passes `clean_label` (through `unique_label`), every keyword list `clean_keywords`."""
    members = [grouping.members(g) for g in range(grouping.k)]
    member_ids = [{ids[i] for i in group} for group in members]
    matched = carry_over_ids([set(c.document_ids) for c in previous], member_ids)
    typical = [_typical_texts(store, workspace, ids, grouping, g) for g in range(grouping.k)]
    namings = name_categories(typical)

    olds = [previous[j] if j is not None else None for j in matched]
    kept_labels = _kept_labels(olds, member_ids, namings, max_label_chars)
    # Kept labels are claimed first, so a fresh name never takes a label a filter already shows.
    used_labels = {label.lower() for label in kept_labels if label}
    taken_ids = {old.id for old in olds if old is not None}
    categories: list[CategoryRecord] = []
    for g, group in enumerate(members):
        old, kept_label = olds[g], kept_labels[g]
        if kept_label:
            label = kept_label
        else:
            # Only categories that changed materially reach the chat model: no call per recompute.
            named = namer.name(CategoryBrief(namings[g].keywords, typical[g])) if namer else None
            label = unique_label(named or namings[g].label, namings[g].keywords, used_labels, max_chars=max_label_chars)
            used_labels.add(label.lower())
        categories.append(
            CategoryRecord(
                id=old.id if old is not None else _fresh_id(workspace, [keys[i] for i in group], taken_ids),
                label=label,
                keywords=clean_keywords(namings[g].keywords),
                centroid=grouping.centroids[g],
                size=len(group),
                document_ids=sorted(member_ids[g]),
            )
        )
    assignments = [
        Assignment(ids[i], categories[int(grouping.labels[i])].id, float(grouping.scores[i])) for i in range(len(ids))
    ]
    return categories, assignments, sum(old is not None for old in olds)


def _kept_labels(
    olds: list[CategoryRecord | None],
    member_ids: list[set[int]],
    namings: list[Naming],
    max_chars: int,
) -> list[str | None]:
    """The stored label of each category whose membership barely changed (None for the others),
    cleaned; two that clean to the same text (a cut, stripped markup) are told apart."""
    used: set[str] = set()
    kept: list[str | None] = []
    for g, old in enumerate(olds):
        if old is None or jaccard(set(old.document_ids), member_ids[g]) < KEEP_LABEL_JACCARD:
            kept.append(None)
            continue
        label = unique_label(old.label, namings[g].keywords, used, max_chars=max_chars)
        used.add(label.lower())
        kept.append(label)
    return kept


def _fresh_id(workspace: str, member_keys: list[str], taken: set[str]) -> str:
    """A new category id no other category of this recompute has.

    Ids derive from the founding members, so a group split off a category can hash to that
    category's own id (its founders left together); a salt separates them.
    """
    salt = 0
    category_id = new_category_id(workspace, member_keys)
    while category_id in taken:
        salt += 1
        category_id = new_category_id(workspace, member_keys, salt=salt)
    taken.add(category_id)
    return category_id


def typical_members(grouping: Grouping, group: int, limit: int = LABEL_SAMPLE) -> npt.NDArray[np.int64]:
    """The group's documents closest to its centre first: the most typical of the category."""
    members = grouping.members(group)
    return members[np.argsort(-grouping.scores[members], kind="stable")][:limit]


def _typical_texts(store: Store, workspace: str, ids: list[int], grouping: Grouping, group: int) -> list[str]:
    typical = typical_members(grouping, group)
    texts = store.load_texts(workspace, [ids[i] for i in typical], max_chars=LABEL_TEXT_CHARS)
    return [texts[ids[i]] for i in typical if ids[i] in texts]
