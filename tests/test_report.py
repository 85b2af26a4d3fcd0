"""Tests for autotag.local.report: report.html's map, category table and low-confidence list."""

from __future__ import annotations

import base64
import re

import numpy as np

from autotag.embeddings import normalise
from autotag.local.report import LOW_CONFIDENCE_MARGIN, MappedDocument, project_2d, render_report
from autotag.store import CategoryRecord


def library(seed: int = 0) -> tuple[list[CategoryRecord], list[MappedDocument]]:
    """Two categories of ten documents each around two directions, and one document halfway."""
    rng = np.random.default_rng(seed)
    directions = normalise(rng.standard_normal((2, 16)))
    documents = [
        MappedDocument(f"{name}-{i}.txt", name, normalise(directions[g] + 0.1 * rng.standard_normal((1, 16)))[0])
        for g, name in enumerate(["cat_a", "cat_b"])
        for i in range(10)
    ]
    documents.append(MappedDocument("halfway.txt", "cat_a", normalise(directions.sum(axis=0, keepdims=True))[0]))
    categories = [
        CategoryRecord(
            id=name,
            label=label,
            keywords=keywords,
            centroid=normalise(
                np.vstack([d.vector for d in documents if d.category_id == name]).mean(0, keepdims=True)
            )[0],
            size=sum(d.category_id == name for d in documents),
        )
        for name, label, keywords in [
            ("cat_a", "Invoices <&> Payments", ["invoice", "payment"]),
            ("cat_b", "Leases", ["lease", "tenant"]),
        ]
    ]
    return categories, documents


def test_report_lists_categories_with_escaped_labels_and_typical_files() -> None:
    categories, documents = library()
    page = render_report("team", categories, documents)

    table = page.split('id="categories"', 1)[1].split("</table>", 1)[0]
    assert "Invoices &lt;&amp;&gt; Payments" in table and "<&>" not in table
    assert "Leases" in table and "lease, tenant" in table
    # Largest category first; the most typical files are its own, never the halfway one.
    assert table.index("Invoices") < table.index("Leases")
    row_a = table.split("Invoices", 1)[1].split("</tr>", 1)[0]
    assert "<td class=num>11</td>" in row_a
    assert re.findall(r"cat_a-\d\.txt", row_a) and "halfway" not in row_a
    assert "Workspace team: 2 categories, 21 documents" in page


def test_map_is_an_embedded_png() -> None:
    categories, documents = library()
    page = render_report("team", categories, documents)
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert encoded is not None
    png = base64.b64decode(encoded.group(1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 700)


def test_low_confidence_lists_the_document_between_two_categories() -> None:
    categories, documents = library()
    page = render_report("team", categories, documents)
    doubts = page.split('id="low-confidence"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td class=num>([-0-9.]+)</td></tr>", doubts)
    assert rows[0][0] == "halfway.txt"
    assert rows[0][1:3] == ("Invoices &lt;&amp;&gt; Payments", "Leases")
    assert all(float(margin) < LOW_CONFIDENCE_MARGIN for *_, margin in rows)
    assert not any(key.startswith("cat_b") for key, *_ in rows)


def test_tiny_and_empty_workspaces_render() -> None:
    categories, documents = library()
    one = render_report("team", categories[:1], [d for d in documents if d.key == "cat_a-0.txt"])
    assert "Too few documents for a map" in one and "1 categories, 1 documents" in one
    empty = render_report("empty", [], [])
    assert "0 categories, 0 documents" in empty


def test_projection_is_deterministic_and_two_dimensional() -> None:
    _, documents = library()
    vectors = np.vstack([d.vector for d in documents])
    first, second = project_2d(vectors), project_2d(vectors.copy())
    assert first.shape == (len(documents), 2)
    np.testing.assert_array_equal(first, second)
    # The two categories separate along the first component.
    a, b = first[:10, 0], first[10:20, 0]
    assert a.max() < b.min() or b.max() < a.min()
