"""`report.html` of a local run: the categories at a glance.

A 2-D map of the documents coloured by category with each label at its cluster's centre, a
table of the categories (label, keywords, size, most typical files), and the documents the
grouping is least sure about (about as close to another category as to their own). One
self-contained file: the map is a PNG embedded as base64, so it opens anywhere offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from autotag.embeddings import Vectors, normalise
from autotag.store import CategoryRecord

EXAMPLES_PER_CATEGORY = 3
# A document whose own category's centre is barely closer than another's (cosine margin)
# could as well be in that other category: worth a person's look.
LOW_CONFIDENCE_MARGIN = 0.03
MAX_LOW_CONFIDENCE = 50
# More points than this make the map a blur and slow to draw; a fixed sample is shown.
MAX_MAP_POINTS = 5000


@dataclass(frozen=True)
class MappedDocument:
    key: str
    category_id: str
    vector: Vectors


@dataclass(frozen=True)
class Doubt:
    key: str
    label: str
    other: str
    margin: float


def write_report(
    path: Path, workspace: str, categories: Sequence[CategoryRecord], documents: Sequence[MappedDocument]
) -> None:
    path.write_text(render_report(workspace, categories, documents), encoding="utf-8")


def render_report(workspace: str, categories: Sequence[CategoryRecord], documents: Sequence[MappedDocument]) -> str:
    ordered = sorted(categories, key=lambda c: (-c.size, c.label))
    known = {c.id for c in ordered}
    placed = [d for d in documents if d.category_id in known]
    vectors = normalise(np.vstack([d.vector for d in placed])) if placed else np.zeros((0, 0), dtype=np.float32)
    own = np.asarray([_index(ordered, d.category_id) for d in placed], dtype=np.int64)
    similarity: npt.NDArray[np.float64] = (
        (vectors @ normalise(np.vstack([c.centroid for c in ordered])).T).astype(np.float64)
        if placed
        else np.zeros((0, 0))
    )
    examples = _examples(placed, own, similarity, len(ordered))
    doubts = _doubts(placed, own, similarity, ordered)
    image = _map_png(vectors, own, [c.label for c in ordered]) if len(placed) >= 2 else None
    rows = "\n".join(
        f"<tr><td class=label>{_e(c.label)}</td><td>{_e(', '.join(c.keywords))}</td>"
        f"<td class=num>{c.size}</td><td>{_e(', '.join(examples[i]))}</td></tr>"
        for i, c in enumerate(ordered)
    )
    doubt_rows = "\n".join(
        f"<tr><td>{_e(d.key)}</td><td>{_e(d.label)}</td><td>{_e(d.other)}</td><td class=num>{d.margin:.3f}</td></tr>"
        for d in doubts
    )
    picture = (
        f'<img alt="map of the documents by category" src="data:image/png;base64,{image}">'
        if image
        else "<p>Too few documents for a map.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>autotag: {_e(workspace)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }} td.num {{ text-align: right; }} td.label {{ font-weight: bold; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
</style></head><body>
<h1>Workspace {_e(workspace)}: {len(ordered)} categories, {len(placed)} documents</h1>
{picture}
<h2>Categories</h2>
<table id="categories"><tr><th>category</th><th>keywords</th><th>size</th><th>most typical files</th></tr>
{rows}
</table>
<h2>Documents with low confidence</h2>
<p>Each is nearly as close to another category's centre as to its own (cosine margin below
{LOW_CONFIDENCE_MARGIN}); {len(doubts)} shown.</p>
<table id="low-confidence"><tr><th>file</th><th>category</th><th>also close to</th><th>margin</th></tr>
{doubt_rows}
</table>
</body></html>
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _index(ordered: Sequence[CategoryRecord], category_id: str) -> int:
    return next(i for i, c in enumerate(ordered) if c.id == category_id)


def _examples(
    placed: Sequence[MappedDocument], own: npt.NDArray[np.int64], similarity: npt.NDArray[np.float64], k: int
) -> list[list[str]]:
    examples: list[list[str]] = [[] for _ in range(k)]
    if not placed:
        return examples
    own_similarity = similarity[np.arange(len(placed)), own]
    for i in np.lexsort((np.arange(len(placed)), -own_similarity)):
        if len(examples[own[i]]) < EXAMPLES_PER_CATEGORY:
            examples[own[i]].append(placed[i].key)
    return examples


def _doubts(
    placed: Sequence[MappedDocument],
    own: npt.NDArray[np.int64],
    similarity: npt.NDArray[np.float64],
    ordered: Sequence[CategoryRecord],
) -> list[Doubt]:
    if len(ordered) < 2 or not placed:
        return []
    rows = np.arange(len(placed))
    own_similarity = similarity[rows, own]
    others = similarity.copy()
    others[rows, own] = -np.inf
    runner_up = others.argmax(axis=1)
    margins = own_similarity - others[rows, runner_up]
    doubtful = [int(i) for i in np.argsort(margins, kind="stable") if margins[i] < LOW_CONFIDENCE_MARGIN]
    return [
        Doubt(placed[i].key, ordered[own[i]].label, ordered[runner_up[i]].label, float(margins[i]))
        for i in doubtful[:MAX_LOW_CONFIDENCE]
    ]


def project_2d(vectors: Vectors) -> npt.NDArray[np.float64]:
    """The first two principal components of the centred vectors: deterministic and fast."""
    from sklearn.decomposition import PCA

    centred = vectors - vectors.mean(axis=0)
    if vectors.shape[0] < 3:
        return np.column_stack([np.arange(vectors.shape[0], dtype=np.float64), np.zeros(vectors.shape[0])])
    points: npt.NDArray[np.float64] = PCA(n_components=2, svd_solver="full").fit_transform(centred.astype(np.float64))
    return points


def _map_png(vectors: Vectors, own: npt.NDArray[np.int64], labels: Sequence[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(vectors) > MAX_MAP_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(vectors), MAX_MAP_POINTS, replace=False))
        vectors, own = vectors[keep], own[keep]
    points = project_2d(vectors)
    colours = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    figure, axes = plt.subplots(figsize=(10, 7), dpi=100)
    for g, label in enumerate(labels):
        mine = points[own == g]
        if not len(mine):
            continue
        axes.scatter(mine[:, 0], mine[:, 1], s=10, alpha=0.6, color=colours(g % colours.N), label=label)
        centre = mine.mean(axis=0)
        axes.annotate(
            label,
            centre,
            ha="center",
            va="center",
            fontsize=11,
            fontweight="bold",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": colours(g % colours.N)},
        )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title("Documents by category (first two principal components)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
