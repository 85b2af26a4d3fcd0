"""A third labelled corpus, built offline from the reference documentation installed with SciPy.

Each document is the docstring of one public function or class (its summary, parameters,
notes and examples: long, technical text in another domain than news or manual pages), and
its class is the SciPy subpackage that documents it: statistics, special functions, signal
processing, linear algebra, optimisation, interpolation, image processing, sparse matrices,
spatial structures, integration, file formats, Fourier transforms, orthogonal distance
regression. The class sizes are whatever SciPy ships (from about ten to a few hundred), so
the corpus has many classes of very unequal sizes; nothing here is tuned on results.

    python benchmarks/docstring_corpus.py out/corpora/scipy-docs   # writes <out>/<class>/<name>.txt
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from pathlib import Path

from corpus_vectors import build_corpus_main

SUBPACKAGES = (
    "stats",
    "special",
    "signal",
    "linalg",
    "optimize",
    "interpolate",
    "ndimage",
    "sparse",
    "spatial",
    "integrate",
    "io",
    "fft",
    "odr",
)
# A docstring of fewer words is a one-line alias note, not a document.
MIN_WORDS = 30
# A subpackage with fewer documents than this is left out (too small a class to be a category).
MIN_PER_CLASS = 10
# Long docstrings are cut here: several chunks of text, bounded embedding time.
MAX_CHARS = 6000


def _documented(subpackage: str) -> dict[str, str]:
    """Public name -> docstring, for the names the subpackage itself documents."""
    module = importlib.import_module(f"scipy.{subpackage}")
    names = getattr(module, "__all__", None) or [name for name in dir(module) if not name.startswith("_")]
    docs: dict[str, str] = {}
    for name in sorted(names):
        obj = getattr(module, name, None)
        if obj is None or inspect.ismodule(obj):
            continue
        owner = getattr(obj, "__module__", None) or ""
        # Names re-exported from NumPy or another subpackage belong to where they are defined
        # (SciPy's ufuncs report no module or "numpy": they are this subpackage's own).
        if owner.startswith("scipy.") and not owner.startswith(f"scipy.{subpackage}"):
            continue
        if owner and not owner.startswith(("scipy.", "numpy")):
            continue
        doc = inspect.getdoc(obj)
        if doc and len(doc.split()) >= MIN_WORDS:
            docs[name] = doc[:MAX_CHARS]
    return docs


def build(out: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    seen: set[str] = set()  # one document per text: aliases share a docstring
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated names warn on access
        for subpackage in SUBPACKAGES:
            docs = {name: doc for name, doc in _documented(subpackage).items() if doc not in seen}
            seen.update(docs.values())
            if len(docs) < MIN_PER_CLASS:
                continue
            folder = out / subpackage
            folder.mkdir(parents=True, exist_ok=True)
            for name, doc in docs.items():
                (folder / f"{name}.txt").write_text(doc + "\n", encoding="utf-8")
            sizes[subpackage] = len(docs)
    return sizes


def main() -> int:
    status: int = build_corpus_main(__doc__ or "", build, "docstrings")
    return status


if __name__ == "__main__":
    sys.exit(main())
