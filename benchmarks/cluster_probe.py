"""One clustering measurement in a fresh process, so its peak memory is its own:
load a workspace's vectors from Postgres, group them, print the figures as JSON lines
(one after loading, one at the end, so a run cut short still reports its load).

    python -m benchmarks.cluster_probe DATABASE_URL WORKSPACE MODEL [--load-only]
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def _peak_bytes() -> int:
    """This process's peak resident memory.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent through
    fork and exec, so a probe started by a large benchmark process would report its parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _emit(figures: dict[str, Any]) -> None:
    print(json.dumps(figures), flush=True)


def main() -> int:
    url, workspace, model = sys.argv[1:4]
    from autotag.clustering import group_documents
    from autotag.database import connect
    from autotag.store import Store

    figures: dict[str, Any] = {"baseline_bytes": _peak_bytes()}
    started = time.perf_counter()
    with connect(url) as conn:
        ids, _, vectors = Store(conn).load_embedded_vectors(workspace, model)
    figures.update(
        n=len(ids),
        load_seconds=time.perf_counter() - started,
        after_load_bytes=_peak_bytes(),
        vector_bytes=int(vectors.nbytes),
    )
    _emit(figures)
    if "--load-only" in sys.argv:
        return 0
    grouping = group_documents(vectors)
    figures.update(
        cluster_seconds=time.perf_counter() - started - figures["load_seconds"],
        total_seconds=time.perf_counter() - started,
        peak_bytes=_peak_bytes(),
        k=grouping.k,
    )
    _emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
