"""Clustering quality of the whole local pipeline on a labelled corpus.

The corpus is laid out as <label>/<file>; files are fed to `autotag run` under anonymous
names (so no label leaks through a key), then the categories the pipeline assigned are
compared with the labels: NMI, ARI and the number of categories found.

    python benchmarks/nmi.py ../shared/corpora/bbc-news [--out out/bbc]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from autotag.local.run import run
from autotag.local.template_rules import find_template


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/nmi"))
    args = parser.parse_args()

    files = sorted(p for p in args.corpus.glob("*/*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SystemExit(f"no <label>/<file> documents under {args.corpus}")
    random.Random(0).shuffle(files)
    truth: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="autotag-nmi-") as scratch:
        docs = Path(scratch) / "docs"
        docs.mkdir()
        for i, path in enumerate(files):
            name = f"doc-{i:05d}{path.suffix}"
            shutil.copyfile(path, docs / name)
            truth[name] = path.parent.name
        started = time.perf_counter()
        result = run(docs, "eval", args.out, template=find_template(), data_dir=Path(scratch) / "state", err=sys.stderr)
        elapsed = time.perf_counter() - started
    assigned = {d["key"]: d["category_id"] for d in result["documents"] if d["category_id"]}
    keys = sorted(assigned)
    labels_true = [truth[k] for k in keys]
    labels_pred = [assigned[k] for k in keys]
    report = {
        "corpus": str(args.corpus),
        "documents": len(files),
        "assigned": len(keys),
        "classes": len(set(truth.values())),
        "categories": len(result["categories"]),
        "nmi": round(normalized_mutual_info_score(labels_true, labels_pred), 4),
        "ari": round(adjusted_rand_score(labels_true, labels_pred), 4),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(report, indent=2))
    (args.out / "nmi.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
