"""`make bench`: what the pipeline costs, as ratios taken in one run on this machine.

    python -m benchmarks.bench --corpus ../shared/corpora/bbc-news [--quick]

Sections (the issue's numbering): 0 the ONNX embedder against sentence-transformers,
1 local pipeline against the model alone, 2 embedding API efficiency, 3 database writes and
HNSW search, 4 clustering time and memory, 5 cold start and deployment sizes. Prints a table
and writes benchmarks/results/bench.json and bench.md. Corpus texts are copied to a temporary
directory only, never into the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from botocore.client import BaseClient
from pgvector.psycopg import register_vector

from autotag import handlers, ingest
from autotag.chunking import Chunk, chunk_text
from autotag.database import connect, embedded_database_url, migrate
from autotag.embeddings import Embedder, Vectors, _offline_cl100k
from autotag.extraction import Extracted, extract
from autotag.ingest import chunk_windows
from autotag.local import run as local_run
from autotag.local.run import run
from autotag.local.stack import environment
from autotag.local.template_rules import find_template
from autotag.settings import DEFAULT_ONNX_MODEL_DIR, LOCAL_MODEL, Settings
from autotag.store import EmbeddedContent, ObjectRef, ObjectVersion, Store
from benchmarks.lambda_sizes import function_sizes
from benchmarks.measure import (
    LAMBDA_UNZIPPED_LIMIT,
    Row,
    Stopwatch,
    clustered_unit_vectors,
    covered_seconds,
    exact_neighbours,
    growth_exponent,
    markdown_table,
    mb,
    parse_importtime,
    percentile_ms,
    recall_at_k,
    server_cpu_seconds,
    stop_servers_under,
    text_table,
)
from tests.support.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "out" / "bench-cache"
PYTHON = sys.executable
# Sections 1 and 2 run the whole pipeline, clustering included, but do not measure it (section
# 4 does): fewer candidate k keep it from eating the 15-minute budget.
PIPELINE_MAX_CATEGORIES = "5"


class Bench:
    def __init__(self, corpus: Path, scratch: Path, *, quick: bool) -> None:
        self.corpus = corpus
        self.scratch = scratch
        self.quick = quick
        self.rows: list[Row] = []
        self.figures: dict[str, Any] = {}
        files = sorted(p for p in corpus.glob("*/*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise SystemExit(f"no <label>/<file> documents under {corpus}")
        random.Random(0).shuffle(files)
        self.files = files
        self.chunk_texts: list[str] = []

    def row(self, section: str, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(section, figure, value, target, met))
        print(
            f"  [{section}] {figure}: {value}"
            + (f" (target {target}: {'met' if met else 'NOT met'})" if target else "")
        )

    def section(self, name: str, step: Callable[[], None]) -> None:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:  # one broken section must not hide the others' figures
            traceback.print_exc()
            self.row(name.split()[0], "error", f"{type(exc).__name__}: {exc}"[:200])
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)

    def documents(self, name: str, count: int, *, offset: int = 0) -> Path:
        folder = self.scratch / name
        folder.mkdir()
        for i, path in enumerate(self.files[offset : offset + count]):
            shutil.copyfile(path, folder / f"doc-{i:05d}.txt")
        return folder

    # --- 1. local pipeline against the model alone -----------------------------------------

    def pipeline(self) -> None:
        n = 60 if self.quick else 300
        docs = self.documents("pipeline", n)
        warm = self.documents("warmup", 10, offset=n)
        data_dir = self.scratch / "state-pipeline"
        with environment(AUTOTAG_EMBEDDING_PROVIDER="onnx", AUTOTAG_MAX_CATEGORIES=PIPELINE_MAX_CATEGORIES):
            quiet_run(warm, "warmup", data_dir)  # starts the database and loads the model
            from autotag.embeddings import build_embedder
            from autotag.settings import load_settings

            embedder = build_embedder(load_settings())
            # The model alone before and after the pipeline, so drifting load from other
            # processes weighs on both sides alike.
            before = same_chunks(embedder, docs, load_settings())
            cpu_started = time.process_time()
            model_before = timed(lambda: embedder.embed(before))
            model_cpu = time.process_time() - cpu_started
            watch = Stopwatch()
            with watch.timing(
                {
                    "cluster": (handlers, "handle_cluster"),
                    "embed": (handlers, "handle_embed"),
                    "uploads": (local_run, "_sync"),
                    "model": (type(embedder), "embed_documents"),
                    # The onnx provider's session runs, on its own threads: the model's CPU.
                    "model_runs": (type(embedder), "_embed_batch"),
                    "aws_emulator": (BaseClient, "_make_api_call"),
                    "extraction": (ingest, "extract"),
                    "chunking": (ingest, "chunk_text"),
                    "database_writes": (Store, "write_embedded"),
                }
            ):
                started, cpu_started = time.perf_counter(), time.process_time()
                database_cpu_started = server_cpu_seconds(data_dir / "postgres")
                quiet_run(docs, "bench", data_dir)
                total, run_cpu = time.perf_counter() - started, time.process_time() - cpu_started
                database_cpu = _since(database_cpu_started, server_cpu_seconds(data_dir / "postgres"))
            texts = chunk_texts(embedded_database_url(data_dir), "bench")
            model_after = timed(lambda: embedder.embed(texts))
        self.chunk_texts = texts
        # Cluster invocations run concurrently (most wait on the workspace's lock, then skip):
        # count the wall time they cover, once.
        cluster_seconds = covered_seconds(watch.intervals["cluster"])
        busy = {name: sum(end - start for start, end in spans) for name, spans in watch.intervals.items()}
        # The embedding path: from the first upload to the end of the last embed invocation.
        # Starting the stack, clustering and writing the report are not per-document work.
        embedding = max(end for _, end in watch.intervals["embed"]) - min(
            start for start, _ in watch.intervals["uploads"]
        )
        model = (model_before + model_after) / 2
        overhead = embedding / model - 1
        # The same question inside the run, under the same load: how long the pipeline went on
        # while no embed call was in progress (concurrent calls queue on the model, so count the
        # wall time they cover once).
        model_in_run = covered_seconds(watch.intervals["model"])
        overhead_in_run = embedding / model_in_run - 1
        self.figures["pipeline"] = {
            "documents": n,
            "chunks": len(texts),
            "run_seconds": total,
            "cluster_seconds": cluster_seconds,
            "setup_cluster_and_report_seconds": total - embedding,
            "embed_path_seconds": embedding,
            "model_seconds_before_and_after": [model_before, model_after],
            "overhead_share_against_model_alone": overhead,
            "model_seconds_in_run": model_in_run,
            "overhead_share_in_run": overhead_in_run,
            "provider": "onnx",
            "model_alone_cpu_seconds": model_cpu,
            "run_cpu_seconds": run_cpu,
            "busy_seconds_summed_over_threads": busy,
            "cpu_seconds_inside_calls": watch.cpu_seconds,
            "database_server_cpu_seconds": database_cpu,
        }
        self.row(
            "1",
            f"pipeline, {n} BBC docs ({len(texts)} chunks), onnx: first upload to last embed",
            f"{n / embedding:.1f} docs/s",
        )
        self.row(
            "1",
            "embedding model alone, same chunks (before / after the run)",
            f"{n / model:.1f} docs/s ({model_before:.0f} s / {model_after:.0f} s)",
        )
        self.row("1", "pipeline time over model-alone time", f"{overhead:+.1%}", "< 15%", overhead < 0.15)
        self.row(
            "1",
            "pipeline time while no embed call ran, over the model's time in the run",
            f"{overhead_in_run:+.1%} ({embedding - model_in_run:.1f} s of {embedding:.1f} s)",
            "< 15%",
            overhead_in_run < 0.15,
        )
        self.row("1", "chunks the model alone embedded / the pipeline stored", f"{len(before)} / {len(texts)}")
        # On a machine the model already fills, the pipeline's own CPU is what it adds to the time.
        self.row(
            "1",
            "CPU seconds of this process: the run / the model alone (before)",
            f"{run_cpu:.1f} / {model_cpu:.1f} ({run_cpu / total:.1f} of {os.cpu_count()} cores busy in the run)",
        )
        # Where the cores went: on 2 cores the model fills, any other CPU second costs the
        # model about half a second of wall time, whoever spends it.
        model_cpu_in_run = watch.cpu_seconds["model_runs"]
        aws_cpu = watch.cpu_seconds["aws_emulator"]
        rest = run_cpu - model_cpu_in_run - aws_cpu
        self.row(
            "1",
            "CPU seconds in the run: model / AWS calls (boto3 + moto's emulation) / database server / rest",
            f"{model_cpu_in_run:.1f} / {aws_cpu:.1f} / "
            + (f"{database_cpu:.1f}" if database_cpu is not None else "n/a")
            + f" / {rest:.1f} (rest: handlers, extraction, chunking, database client, driver, stack start, "
            "clustering, report)",
        )
        parts = ", ".join(f"{name} {busy[name]:.1f} s" for name in PIPELINE_PARTS)
        self.row("1", "time inside calls, summed over the 5 invocation threads", parts)
        self.row(
            "1",
            "not counted above: stack start, clustering, report",
            f"{total - embedding:.1f} s (clustering {cluster_seconds:.1f} s) of the run's {total:.1f} s",
        )

    # --- 0. the ONNX embedder against sentence-transformers ---------------------------------

    def onnx_embedder(self) -> None:
        from autotag.embeddings import LocalEmbedder
        from autotag.onnx_embedding import OnnxEmbedder

        texts = self.chunk_texts or [p.read_text(errors="replace") for p in self.files[:200]]
        texts = texts[: 64 if self.quick else 200]
        onnx = OnnxEmbedder(DEFAULT_ONNX_MODEL_DIR)
        torch = LocalEmbedder()
        onnx.embed(texts[:8])
        torch.embed(texts[:8])
        seconds = {"onnx": 0.0, "sentence-transformers": 0.0}
        vectors: dict[str, Vectors] = {}
        # Alternating rounds, so load from other processes falls on both alike.
        for _ in range(2):
            for name, embedder in (("onnx", onnx), ("sentence-transformers", torch)):
                started = time.perf_counter()
                vectors[name] = embedder.embed(texts)
                seconds[name] += time.perf_counter() - started
        cosines = (vectors["onnx"] * vectors["sentence-transformers"]).sum(axis=1)
        ratio = seconds["sentence-transformers"] / seconds["onnx"]
        onnx_cold = [cold_start("onnx") for _ in range(3)]
        torch_cold = cold_start("local")
        self.figures["onnx"] = {
            "texts": len(texts),
            "texts_per_second": {name: 2 * len(texts) / s for name, s in seconds.items()},
            "speedup": ratio,
            "mean_cosine": float(cosines.mean()),
            "min_cosine": float(cosines.min()),
            "cold_start_seconds": {"onnx": onnx_cold, "sentence-transformers": torch_cold},
        }
        tps = self.figures["onnx"]["texts_per_second"]
        self.row(
            "0",
            f"onnx int8 vs sentence-transformers, {len(texts)} BBC chunks",
            f"{tps['onnx']:.1f} vs {tps['sentence-transformers']:.1f} texts/s = {ratio:.2f}x",
            ">= 1.5x",
            ratio >= 1.5,
        )
        self.row(
            "0",
            "cosine to sentence-transformers (mean / min)",
            f"{cosines.mean():.4f} / {cosines.min():.4f}",
            ">= 0.99",
            bool(cosines.mean() >= 0.99),
        )
        median = statistics.median(onnx_cold)
        self.row(
            "0", "onnx cold start (import + session load, median of 3)", f"{median:.2f} s", "< 0.5 s", median < 0.5
        )
        self.row("0", "sentence-transformers cold start (import + load)", f"{torch_cold:.2f} s")

    # --- 2. embedding API efficiency ---------------------------------------------------------

    def api_efficiency(self) -> None:
        n = 100 if self.quick else 1000
        docs = self.documents("burst", n, offset=400)
        encoding = _offline_cl100k()
        passes = []
        with (
            FakeOpenAIServer(dimensions=1536) as server,
            environment(
                AUTOTAG_EMBEDDING_PROVIDER="openai",
                OPENAI_API_KEY="bench",
                OPENAI_BASE_URL=server.base_url,
                AUTOTAG_MAX_CATEGORIES=PIPELINE_MAX_CATEGORIES,
            ),
        ):
            for _ in range(2):
                before = len(server.embedding_requests())
                started = time.perf_counter()
                quiet_run(docs, "burst", self.scratch / "state-openai")
                requests = server.embedding_requests()[before:]
                inputs = [text for request in requests for text in _inputs(request.body)]
                tokens = sum(len(encoding.encode(text, disallowed_special=())) for text in inputs)
                passes.append(
                    {
                        "seconds": time.perf_counter() - started,
                        "requests": len(requests),
                        "inputs": len(inputs),
                        "tokens": tokens,
                    }
                )
        first, second = passes
        self.figures["api"] = {"documents": n, "passes": passes}
        per_doc = first["requests"] / n
        self.row(
            "2",
            f"{n}-document burst, openai provider: requests per document",
            f"{per_doc:.3f} ({first['requests']} requests, {first['inputs']} inputs)",
            "<= 0.1",
            per_doc <= 0.1,
        )
        self.row("2", "tokens sent per document", f"{first['tokens'] / n:.0f}")
        self.row(
            "2",
            "second pass, unchanged documents: requests / tokens",
            f"{second['requests']} / {second['tokens']}",
            "0 / 0",
            second["requests"] == 0 and second["tokens"] == 0,
        )

    # --- 3. database writes and HNSW search -------------------------------------------------

    def database(self) -> None:
        url = self.database_url("bench_writes")
        n = 1000 if self.quick else 5000
        vectors = clustered_unit_vectors(n, 1536, clusters=20, seed=1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE upserted (id bigint PRIMARY KEY, embedding vector(1536))")
            conn.execute("CREATE INDEX ON upserted USING hnsw (embedding vector_cosine_ops)")
            conn.execute("CREATE TABLE copied (id bigint PRIMARY KEY, embedding vector(1536))")
            upsert = timed(lambda: _upsert(conn, vectors))
            copy = timed(lambda: _copy(conn, "copied", vectors))
        pipeline_n = n // 5
        write_path = timed(lambda: _store_writes(self.database_url("bench_store"), vectors[:pipeline_n]))
        self.figures["writes"] = {
            "vectors": n,
            "dimensions": 1536,
            "upsert_hnsw_per_second": n / upsert,
            "copy_per_second": n / copy,
            "store_documents": pipeline_n,
            "store_documents_per_second": pipeline_n / write_path,
        }
        self.row(
            "3", f"upsert into HNSW-indexed table, {n} x 1536-d, 500 per transaction", f"{n / upsert:.0f} vectors/s"
        )
        self.row(
            "3", "plain COPY of the same vectors (no index)", f"{n / copy:.0f} vectors/s ({upsert / copy:.1f}x faster)"
        )
        self.row(
            "3",
            "pipeline write path (Store.write_embedded, 1 doc + 1 chunk per transaction)",
            f"{pipeline_n / write_path:.0f} documents/s",
        )
        self.search()

    def search(self) -> None:
        n = 20_000 if self.quick else 100_000
        dims = 384
        data = clustered_unit_vectors(n, dims, clusters=100, seed=2, spread=0.9)
        queries = clustered_unit_vectors(100, dims, clusters=100, seed=3, spread=0.9)
        url = self.database_url("bench_search")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({dims}))")
            load = timed(lambda: _copy(conn, "items", data))
            conn.execute("SET maintenance_work_mem = '1GB'")
            build = timed(lambda: conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)"))
            exact = exact_neighbours(data, queries, 10)
            results: dict[str, Any] = {}
            for ef in (40, 100):
                conn.execute(f"SET hnsw.ef_search = {ef}")
                found, latencies, scan = _knn(conn, queries)
                results[f"ef_search={ef}"] = {
                    "scan": scan,
                    "recall_at_10": recall_at_k(found, exact, 10),
                    "p50_ms": percentile_ms(latencies, 50),
                    "p95_ms": percentile_ms(latencies, 95),
                }
            conn.execute("SET enable_indexscan = off")
            found, latencies, scan = _knn(conn, queries[:20])
            results["exact"] = {
                "scan": scan,
                "recall_at_10": recall_at_k(found, exact[:20], 10),
                "p50_ms": percentile_ms(latencies, 50),
                "p95_ms": percentile_ms(latencies, 95),
            }
        self.figures["search"] = {
            "vectors": n,
            "dimensions": dims,
            "copy_seconds": load,
            "build_seconds": build,
            **results,
        }
        self.row("3", f"HNSW build, {n:,} x {dims}-d (m=16, ef_construction=64)", f"{build:.0f} s (COPY {load:.0f} s)")
        for name, figures in results.items():
            latency = f"p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms"
            self.row(
                "3", f"k=10 query, {name} ({figures['scan']})", f"{latency}, recall@10 {figures['recall_at_10']:.3f}"
            )

    # --- 4. clustering ---------------------------------------------------------------------

    def clustering(self) -> None:
        sizes = [1000, 5000] if self.quick else [1000, 10_000, 100_000]
        url = self.database_url("bench_cluster")
        with connect(url) as conn:
            migrate(conn, dimensions=1536, model="bench-1536")
            # Writes only: the HNSW index is not read by clustering, and building it for 100k
            # vectors of 1536 dimensions would take longer than the rest of the benchmark.
            conn.execute("DROP INDEX documents_embedding_hnsw")
            conn.commit()
        measured = []
        timed_out = False
        for n in sizes:
            workspace = f"synthetic-{n}"
            _copy_documents(url, workspace, n)
            figures, complete = _probe(url, workspace, timeout=CLUSTER_TIMEOUTS.get(n, 240), load_only=timed_out)
            self.figures.setdefault("clustering", {})[str(n)] = figures
            load = (
                f"load {figures['load_seconds']:.1f} s, {mb(figures['after_load_bytes'] - figures['baseline_bytes'])}"
                f" over start for {mb(figures['vector_bytes'])} of vectors"
            )
            target = "< 60 s, < 3 GB" if n >= 100_000 else ""
            if timed_out:
                self.row("4", f"cluster {n:,} x 1536-d: load only (a smaller n timed out)", load)
                continue
            if not complete:
                timed_out = True
                self.row(
                    "4",
                    f"cluster {n:,} x 1536-d",
                    f"group_documents timed out after {figures['timeout']} s ({load})",
                    target,
                    False if target else None,
                )
                continue
            measured.append(figures)
            self.row(
                "4",
                f"cluster {n:,} x 1536-d (load + group_documents), k={figures['k']}",
                f"{figures['total_seconds']:.1f} s, peak {mb(figures['peak_bytes'])} ({load})",
                target,
                (figures["total_seconds"] < 60 and figures["peak_bytes"] < 3e9) if target else None,
            )
        exponent = growth_exponent([f["n"] for f in measured], [f["total_seconds"] for f in measured])
        self.figures.setdefault("clustering", {})["growth_exponent"] = exponent
        self.row("4", "fitted growth exponent of time against n", "n/a" if exponent is None else f"{exponent:.2f}")
        self.row("4", "1M documents", "not measured: 6 GB of vectors do not fit the 15-minute budget here")

    # --- 5. cold start and sizes -----------------------------------------------------------

    def cold_start(self) -> None:
        for function in ("embed", "cluster"):
            times = handler_import(function)
            self.figures.setdefault("import", {})[function] = asdict(times)
            heaviest = ", ".join(f"{name} {us / 1e3:.0f} ms" for name, us in times.heaviest[:3])
            self.row(
                "5", f"import functions/{function}/app.py (-X importtime)", f"{times.total_us / 1e6:.2f} s ({heaviest})"
            )
        self.sizes()

    def sizes(self) -> None:
        """Each function with its layers from a real `sam build` (`make build`: the pinned SAM CLI
        from `make tools`, the ModelLayer from `make model-layer`), against Lambda's limit."""
        subprocess.run(["make", "build"], cwd=ROOT, check=True, capture_output=True)
        sizes = function_sizes(ROOT / ".aws-sam" / "build")
        self.figures["sam_build"] = sizes
        limit = f"<= {mb(LAMBDA_UNZIPPED_LIMIT)}"
        for function, parts in sorted(sizes.items()):
            total = sum(parts.values())
            detail = ", ".join(f"{part} {mb(size)}" for part, size in parts.items() if part != "code")
            self.row(
                "5",
                f"sam build: {function} with its layers",
                f"{mb(total)} ({detail})",
                limit,
                total <= LAMBDA_UNZIPPED_LIMIT,
            )
        model_file = (DEFAULT_ONNX_MODEL_DIR / "model.onnx").stat().st_size
        self.row("5", "int8 model file in the ModelLayer", mb(model_file))

    # --- helpers ---------------------------------------------------------------------------

    def database_url(self, name: str) -> str:
        server = embedded_database_url(self.scratch / "state-bench")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return psycopg.conninfo.make_conninfo(server, dbname=name)


def quiet_run(docs: Path, workspace: str, data_dir: Path) -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        return run(docs, workspace, data_dir / "out", template=find_template(), data_dir=data_dir, err=io.StringIO())


PIPELINE_PARTS = ("aws_emulator", "database_writes", "extraction", "chunking")


def same_chunks(embedder: Embedder, docs: Path, settings: Settings) -> list[str]:
    """The chunks the pipeline will embed for `docs`, cut as ingest cuts them."""
    windows = chunk_windows(settings, embedder.max_input_tokens)
    texts = []
    for path in sorted(docs.iterdir()):
        extracted = extract(path.name, path.read_bytes())
        if isinstance(extracted, Extracted):
            chunked = chunk_text(
                extracted.text,
                embedder.tokenizer,
                max_tokens=windows.tokens,
                overlap=windows.overlap,
                max_chunks=windows.max_chunks,
            )
            texts += [chunk.text for chunk in chunked.chunks]
    return texts


def _since(started: float | None, now: float | None) -> float | None:
    return None if started is None or now is None else now - started


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def chunk_texts(url: str, workspace: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT text FROM chunks WHERE workspace = %s ORDER BY document_id, ordinal", (workspace,)
        ).fetchall()
    return [str(row[0]) for row in rows]


def _inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input", [])
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]


def _upsert(conn: psycopg.Connection[Any], vectors: Vectors) -> None:
    for start in range(0, len(vectors), 500):
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO upserted (id, embedding) VALUES (%s, %s)"
                " ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding",
                [(start + i, vector) for i, vector in enumerate(vectors[start : start + 500])],
            )


def _copy(conn: psycopg.Connection[Any], table: str, vectors: Vectors) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for i, vector in enumerate(vectors):
            copy.write_row((i, vector))


def _store_writes(url: str, vectors: Vectors) -> None:
    with connect(url) as conn:
        migrate(conn, dimensions=1536, model="bench-1536")
        store = Store(conn)
        for i, vector in enumerate(vectors):
            ref = ObjectRef("writes", "bucket", f"doc-{i:05d}.txt")
            content = EmbeddedContent(
                content_sha256=f"{i:064x}",
                content_type="text/plain",
                title=ref.key,
                model="bench-1536",
                token_count=100,
                chunks=[Chunk(0, "text", 100)],
                chunk_vectors=vector[None, :],
                vector=vector,
            )
            with store.locked_document(ref):
                store.write_embedded(ref, ObjectVersion(f'"{i}"', None, f"{i:016X}", 100), content)


KNN_QUERY = "SELECT id FROM items ORDER BY embedding <=> %s LIMIT 10"


def _knn(conn: psycopg.Connection[Any], queries: Vectors) -> tuple[list[list[int]], list[float], str]:
    """Neighbours and latency per query, and the plan's scan. Never prepared: a prepared
    statement keeps the plan it was made with when enable_indexscan changes afterwards."""
    found, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        rows = conn.execute(KNN_QUERY, (query,), prepare=False).fetchall()
        latencies.append(time.perf_counter() - started)
        found.append([int(row[0]) for row in rows])
    plan = [str(row[0]) for row in conn.execute(f"EXPLAIN {KNN_QUERY}", (queries[0],), prepare=False)]
    scan = next((line.split("(")[0].strip(" ->") for line in plan if "Scan" in line), "?")
    return found, latencies, scan


def _copy_documents(url: str, workspace: str, n: int) -> None:
    """`n` embedded documents with synthetic 1536-d vectors, generated and copied in slices."""
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("INSERT INTO workspaces (workspace) VALUES (%s) ON CONFLICT DO NOTHING", (workspace,))
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY documents (workspace, bucket, key, status, model, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "text", "text", "text", "text", "vector"])
            for start in range(0, n, 10_000):
                block = clustered_unit_vectors(min(10_000, n - start), 1536, clusters=12, seed=start)
                for i, vector in enumerate(block):
                    copy.write_row((workspace, "bench", f"doc-{start + i:07d}", "embedded", "bench-1536", vector))


# Seconds each clustering size may take before the benchmark moves on (15-minute budget).
CLUSTER_TIMEOUTS = {1000: 150, 10_000: 200, 100_000: 240}


def _probe(url: str, workspace: str, *, timeout: int, load_only: bool) -> tuple[dict[str, Any], bool]:
    """The probe's last JSON line, and whether it finished within `timeout`."""
    command = [PYTHON, "-m", "benchmarks.cluster_probe", url, workspace, "bench-1536"]
    if load_only:
        command.append("--load-only")
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=True)
        output, complete = completed.stdout, True
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        output, complete = raw.decode() if isinstance(raw, bytes) else raw, False
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"cluster probe for {workspace} reported nothing within {timeout} s")
    figures: dict[str, Any] = json.loads(lines[-1])
    if not complete:
        figures["timeout"] = timeout
    return figures, complete or load_only


def cold_start(provider: str) -> float:
    """Seconds to import the provider and load its model in a fresh process, after the
    imports every handler does anyway (settings, numpy)."""
    load = (
        "from autotag.onnx_embedding import OnnxEmbedder; OnnxEmbedder(DEFAULT_ONNX_MODEL_DIR)"
        if provider == "onnx"
        else "from autotag.embeddings import LocalEmbedder; LocalEmbedder()"
    )
    script = (
        "import time\nfrom autotag.settings import DEFAULT_ONNX_MODEL_DIR\nimport autotag.embeddings\n"
        f"started = time.perf_counter()\n{load}\nprint(time.perf_counter() - started)\n"
    )
    completed = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(completed.stdout.strip().splitlines()[-1])


def handler_import(function: str) -> Any:
    completed = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "import app"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT / "functions" / function,
        env={**os.environ, "PYTHONPATH": str(ROOT / "layers/shared")},
    )
    return parse_importtime(completed.stderr, "app")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/corpora/bbc-news")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated sections to run, e.g. 0,1")
    args = parser.parse_args()
    for key in list(os.environ):
        if key.startswith(("AUTOTAG_", "OPENAI_")) or key == "DATABASE_URL":
            del os.environ[key]
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    # Invocations that skip a stale cluster request publish no metric, by design.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autotag-bench-") as scratch:
        bench = Bench(args.corpus, Path(scratch), quick=args.quick)
        sections = [
            ("1 local pipeline vs model", bench.pipeline),
            ("0 onnx embedder", bench.onnx_embedder),
            ("2 embedding API efficiency", bench.api_efficiency),
            ("3 database", bench.database),
            ("4 clustering", bench.clustering),
            ("5 cold start and sizes", bench.cold_start),
        ]
        only = {s for s in args.only.split(",") if s}
        for name, step in sections:
            if not only or name.split()[0] in only:
                bench.section(name, step)
        stop_servers_under(Path(scratch))
    elapsed = time.perf_counter() - started
    bench.rows.sort(key=lambda r: r.section)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "quick": args.quick,
        "seconds": round(elapsed),
        "model": LOCAL_MODEL,
        "rows": [asdict(r) for r in bench.rows],
        "figures": bench.figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Only a complete, full-size run is the benchmark's result; smoke and partial runs go aside.
    suffix = "-quick" if args.quick else "-partial" if only else ""
    (RESULTS / f"bench{suffix}.json").write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    header = f"# make bench\n\n{report['date']}, {report['machine']}, {elapsed / 60:.1f} min\n\n"
    (RESULTS / f"bench{suffix}.md").write_text(header + markdown_table(bench.rows), encoding="utf-8")
    print()
    print(text_table(bench.rows))
    print(f"{elapsed / 60:.1f} min; wrote {RESULTS / f'bench{suffix}.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
