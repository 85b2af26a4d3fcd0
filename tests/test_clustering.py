"""Tests for autotag.clustering: choosing k, centroids and scores, and carrying category ids over."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from autotag.clustering import Grouping, carry_over_ids, group_documents, jaccard, new_category_id
from autotag.embeddings import normalise


def blobs(
    directions: int, per_blob: int, *, dimensions: int = 32, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered tightly around `directions` random unit directions, shuffled; with true labels."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((directions, dimensions)))
    truth = np.repeat(np.arange(directions), per_blob)
    points = centres[truth] + noise * rng.standard_normal((len(truth), dimensions))
    order = rng.permutation(len(truth))
    return normalise(points[order]), truth[order]


def check_consistent(grouping: Grouping, vectors: np.ndarray) -> None:
    """Shapes agree, every group is non-empty and groups are numbered by first appearance."""
    n = vectors.shape[0]
    assert grouping.labels.shape == (n,)
    assert grouping.scores.shape == (n,)
    assert grouping.centroids.shape == (grouping.k, vectors.shape[1])
    assert grouping.scores.dtype == np.float32
    if n:
        _, first = np.unique(grouping.labels, return_index=True)
        assert list(grouping.labels[np.sort(first)]) == list(range(grouping.k))
        np.testing.assert_allclose(np.linalg.norm(grouping.centroids, axis=1), 1.0, rtol=1e-5)
    assert sum(len(grouping.members(g)) for g in range(grouping.k)) == n


# --- group_documents -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected_k"), [(0, 0), (1, 1), (2, 1)], ids=["no-documents", "one-document", "two-documents"]
)
def test_tiny_workspaces(n: int, expected_k: int) -> None:
    vectors = normalise(np.random.default_rng(3).standard_normal((n, 8)))
    grouping = group_documents(vectors)
    assert grouping.k == expected_k
    check_consistent(grouping, vectors)
    if n:
        assert list(grouping.labels) == [0] * n


def test_empty_matrix_without_columns() -> None:
    # Store.load_embedded_vectors returns a (0, 0) matrix for an empty workspace.
    grouping = group_documents(np.zeros((0, 0), dtype=np.float32))
    assert grouping.k == 0
    assert grouping.labels.shape == (0,)


def test_one_document_scores_one() -> None:
    vector = normalise(np.random.default_rng(4).standard_normal((1, 16)))
    grouping = group_documents(vector)
    np.testing.assert_allclose(grouping.centroids, vector, rtol=1e-6)
    assert grouping.scores[0] == pytest.approx(1.0, abs=1e-6)


def test_two_orthogonal_documents_share_one_group() -> None:
    vectors = np.eye(2, 4, dtype=np.float32)
    grouping = group_documents(vectors)
    assert grouping.k == 1
    np.testing.assert_allclose(grouping.scores, [np.sqrt(0.5)] * 2, rtol=1e-5)


def test_five_documents_in_two_directions() -> None:
    rng = np.random.default_rng(5)
    a, b = normalise(rng.standard_normal((2, 16)))
    truth = np.array([0, 1, 0, 1, 0])
    vectors = normalise(np.vstack([a, b])[truth] + 0.02 * rng.standard_normal((5, 16)))
    grouping = group_documents(vectors)
    assert grouping.k == 2
    assert list(grouping.labels) == list(truth)
    check_consistent(grouping, vectors)


@pytest.mark.parametrize(
    ("seed", "per_blob", "max_groups"),
    [(0, 20, 30), (1, 30, 8), (2, 30, 8)],
    ids=["seed-0-20-each-default-max", "seed-1-30-each-max-8", "seed-2-30-each-max-8"],
)
def test_well_separated_blobs_are_recovered(seed: int, per_blob: int, max_groups: int) -> None:
    vectors, truth = blobs(4, per_blob, seed=seed)
    grouping = group_documents(vectors, max_groups=max_groups)
    assert grouping.k == 4
    assert normalized_mutual_info_score(truth, grouping.labels) == pytest.approx(1.0)
    check_consistent(grouping, vectors)
    assert grouping.scores.min() > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_topics_of_very_unequal_sizes_in_a_narrow_cone(seed: int) -> None:
    # Like real embeddings, every vector shares one strong common direction; one topic has 40
    # times the documents of the smallest. Centring on the workspace mean (which then lies
    # inside the big topic) would merge the small topics into one and split the big one.
    rng = np.random.default_rng(seed)
    sizes = [600, 120, 40, 15]
    cone = normalise(rng.standard_normal((1, 64)))
    topics = normalise(rng.standard_normal((len(sizes), 64)))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    vectors = normalise(2.0 * cone + topics[truth] + 0.08 * rng.standard_normal((len(truth), 64)))
    grouping = group_documents(vectors)
    assert grouping.k == len(sizes)
    assert normalized_mutual_info_score(truth, grouping.labels) == pytest.approx(1.0)
    check_consistent(grouping, vectors)


def test_grouping_is_deterministic() -> None:
    vectors, _ = blobs(5, 12, seed=7, noise=0.2)
    first = group_documents(vectors, max_groups=8)
    second = group_documents(vectors.copy(), max_groups=8)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    np.testing.assert_array_equal(first.scores, second.scores)


@pytest.mark.parametrize("max_groups", [2, 3, 4], ids=["max-2", "max-3", "max-4"])
def test_max_groups_is_respected(max_groups: int) -> None:
    vectors, _ = blobs(8, 6, seed=11)
    grouping = group_documents(vectors, max_groups=max_groups)
    assert 2 <= grouping.k <= max_groups
    check_consistent(grouping, vectors)


def test_max_groups_allows_the_true_k_when_large_enough() -> None:
    vectors, truth = blobs(8, 6, seed=11)
    grouping = group_documents(vectors, max_groups=10)
    assert grouping.k == 8
    assert normalized_mutual_info_score(truth, grouping.labels) == pytest.approx(1.0)


def test_min_groups_is_respected() -> None:
    vectors, _ = blobs(2, 10, seed=13)
    assert group_documents(vectors, max_groups=6).k == 2
    assert group_documents(vectors, min_groups=4, max_groups=6).k >= 4


def test_scores_are_cosine_similarity_to_group_centroid() -> None:
    vectors, _ = blobs(3, 10, seed=17, noise=0.3)
    grouping = group_documents(vectors, max_groups=5)
    for g in range(grouping.k):
        members = vectors[grouping.labels == g]
        mean = members.mean(axis=0)
        centroid = mean / np.linalg.norm(mean)
        np.testing.assert_allclose(grouping.centroids[g], centroid, rtol=1e-5, atol=1e-6)
        cosine = members @ centroid / (np.linalg.norm(members, axis=1) * np.linalg.norm(centroid))
        np.testing.assert_allclose(grouping.scores[grouping.labels == g], cosine, rtol=1e-5, atol=1e-6)


def test_each_document_is_closest_to_its_own_centroid() -> None:
    vectors, _ = blobs(4, 15, seed=19, noise=0.15)
    grouping = group_documents(vectors, max_groups=8)
    similarity = vectors @ grouping.centroids.T
    np.testing.assert_array_equal(similarity.argmax(axis=1), grouping.labels)


# --- carry_over_ids --------------------------------------------------------------------


def keys(text: str) -> set[str]:
    return set(text)


def test_slightly_changed_groups_keep_their_ids() -> None:
    previous = [keys("abcd"), keys("efgh"), keys("ijkl")]
    current = [keys("efghm"), keys("ijkl"), keys("abc")]
    assert carry_over_ids(previous, current) == [1, 2, 0]


def test_brand_new_group_gets_none() -> None:
    previous = [keys("abcd"), keys("efgh")]
    current = [keys("abcd"), keys("xyz"), keys("efgh")]
    assert carry_over_ids(previous, current) == [0, None, 1]


def test_split_group_keeps_its_id_only_once() -> None:
    previous = [keys("abcdef")]
    current = [keys("abc"), keys("def")]  # both halves overlap 0.5, exactly the threshold
    matched = carry_over_ids(previous, current)
    assert sorted(matched, key=lambda m: -1 if m is None else m) == [None, 0]


def test_matching_is_one_to_one_and_maximises_total_overlap() -> None:
    # current[0] overlaps old 0 by 0.70 and old 1 by 0.67; current[1] overlaps old 0 by 0.90 and old 1 by 0.55.
    # Matching current[0] first (greedily) would give [0, 1] (total 1.25); the best total is [1, 0] (1.57).
    previous = [keys("abcdefghij"), keys("abcdefxy")]
    current = [keys("abcdefg"), keys("abcdefghi")]
    assert carry_over_ids(previous, current) == [1, 0]


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(0.5, [None]), (1 / 3, [0]), (0.34, [None]), (0.2, [0])],
    ids=["default-rejects-third", "exact-third-accepted", "just-above-third-rejects", "low-accepts"],
)
def test_threshold_is_respected(threshold: float, expected: list[int | None]) -> None:
    previous = [keys("abcd")]
    current = [keys("abxy")]  # Jaccard 2 / 6
    assert carry_over_ids(previous, current, threshold=threshold) == expected


def test_default_threshold_is_half() -> None:
    assert carry_over_ids([keys("abcd")], [keys("abcdef")]) == [0]  # 4 / 6
    assert carry_over_ids([keys("ab")], [keys("abcd")]) == [0]  # exactly 0.5 is kept
    assert carry_over_ids([keys("ab")], [keys("abcde")]) == [None]  # 0.4


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [([], [keys("ab")], [None]), ([keys("ab")], [], []), ([], [], [])],
    ids=["no-previous", "no-current", "neither"],
)
def test_empty_sides(previous: list[set[str]], current: list[set[str]], expected: list[int | None]) -> None:
    assert carry_over_ids(previous, current) == expected


def test_jaccard() -> None:
    assert jaccard(keys("abc"), keys("abc")) == 1.0
    assert jaccard(keys("ab"), keys("cd")) == 0.0
    assert jaccard(keys("abc"), keys("bcd")) == pytest.approx(0.5)
    assert jaccard(set(), set()) == 1.0


# --- new_category_id -------------------------------------------------------------------


def test_new_category_id_is_deterministic_and_order_independent() -> None:
    ident = new_category_id("ws", ["b.txt", "a.txt", "c.txt"])
    assert re.fullmatch(r"cat_[0-9a-f]{12}", ident)
    assert new_category_id("ws", ["b.txt", "a.txt", "c.txt"]) == ident
    assert new_category_id("ws", ["c.txt", "b.txt", "a.txt"]) == ident
    assert new_category_id("ws", ("a.txt", "b.txt", "c.txt")) == ident


@pytest.mark.parametrize(
    ("workspace", "members"),
    [("other", ["a.txt", "b.txt", "c.txt"]), ("ws", ["a.txt", "b.txt"]), ("ws", ["a.txtb.txt", "c.txt"])],
    ids=["other-workspace", "fewer-members", "concatenated-keys"],
)
def test_new_category_id_differs_for_other_inputs(workspace: str, members: list[str]) -> None:
    assert new_category_id(workspace, members) != new_category_id("ws", ["a.txt", "b.txt", "c.txt"])


def test_a_split_off_group_never_takes_a_kept_id() -> None:
    from autotag.categorize import _fresh_id

    founders = ["ws/a.txt", "ws/b.txt"]
    kept = {new_category_id("ws", founders)}  # the category they founded kept its id

    fresh = _fresh_id("ws", founders, kept)

    assert fresh.startswith("cat_") and fresh != new_category_id("ws", founders)
    assert fresh in kept  # reserved for the rest of the recompute
    assert _fresh_id("ws", founders, set()) == new_category_id("ws", founders)


def test_preferred_k_does_not_override_a_clearly_better_grouping() -> None:
    vectors, truth = blobs(4, 20, seed=23)
    grouping = group_documents(vectors, preferred_k=3)
    assert grouping.k == 4
    assert normalized_mutual_info_score(truth, grouping.labels) == pytest.approx(1.0)


def test_large_workspaces_are_grouped_from_a_sample_and_every_document_assigned() -> None:
    vectors, truth = blobs(6, 700, dimensions=48, noise=0.1, seed=29)  # 4,200 documents: above the sample
    grouping = group_documents(vectors, max_groups=10)
    assert grouping.k == 6
    assert normalized_mutual_info_score(truth, grouping.labels) > 0.99
    check_consistent(grouping, vectors)


def test_max_one_group_puts_everything_together() -> None:
    vectors, _ = blobs(3, 10, seed=31)
    grouping = group_documents(vectors, min_groups=1, max_groups=1)
    assert grouping.k == 1
    check_consistent(grouping, vectors)


def test_the_covariance_refinement_runs_until_its_assignments_settle() -> None:
    # Four overlapping topics started from a grouping with 30% of documents misplaced: EM
    # needs several steps to settle here, more than the three hard steps it once stopped at.
    from autotag.clustering import _compact, _covariance_model, _discriminant

    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 16))
    truth = rng.integers(0, 4, 400)
    vectors = normalise((centres[truth] + rng.standard_normal((400, 16))).astype(np.float32))
    start = truth.copy()
    misplaced = rng.random(400) < 0.3
    start[misplaced] = rng.integers(0, 4, int(misplaced.sum()))

    model = _covariance_model(vectors, start.astype(np.int64))

    assigned = _compact(model.predict(vectors))
    again = _compact(_discriminant(vectors, model.memberships(vectors)).predict(vectors))
    assert np.array_equal(again, assigned)  # a fixed point: one more EM step moves no document
    assert normalized_mutual_info_score(truth, assigned) > normalized_mutual_info_score(truth, start)
