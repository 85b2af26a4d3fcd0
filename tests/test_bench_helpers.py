"""The helpers `make bench` computes its figures with (not the figures themselves)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.lambda_sizes import function_sizes
from benchmarks.measure import (
    Row,
    Stopwatch,
    clustered_unit_vectors,
    covered_seconds,
    directory_bytes,
    exact_neighbours,
    growth_exponent,
    markdown_table,
    parse_importtime,
    recall_at_k,
    server_cpu_seconds,
    text_table,
)

ROOT = Path(__file__).resolve().parent.parent


def test_growth_exponent_recovers_the_power() -> None:
    sizes = [1_000, 10_000, 100_000]
    assert growth_exponent(sizes, [2e-6 * n**1.5 for n in sizes]) == pytest.approx(1.5)
    assert growth_exponent(sizes, [0.5 * n for n in sizes]) == pytest.approx(1.0)
    assert growth_exponent([1_000], [1.0]) is None
    assert growth_exponent([1_000, 10_000], [1.0, 0.0]) is None  # a zero time cannot be fitted


def test_exact_neighbours_and_recall() -> None:
    data = clustered_unit_vectors(500, 16, clusters=5, seed=1)
    queries = data[:3]
    exact = exact_neighbours(data, queries, 10)
    assert [row[0] for row in exact] == [0, 1, 2]  # each query is its own nearest neighbour
    brute = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    assert exact == brute.tolist()
    assert recall_at_k(exact, exact, 10) == 1.0
    half = [row[:5] + [-1] * 5 for row in exact]
    assert recall_at_k(half, exact, 10) == 0.5
    with pytest.raises(ValueError, match="no queries"):
        recall_at_k([], [], 10)


def test_clustered_unit_vectors_are_unit_length_topics() -> None:
    vectors = clustered_unit_vectors(400, 64, clusters=4, seed=7)
    assert vectors.shape == (400, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    # Documents share a topic with about a quarter of the others: far closer than to the rest.
    nearest_quarter = np.sort(similarity, axis=1)[:, -100:].mean()
    assert nearest_quarter > 0.5 > similarity.mean()
    assert np.array_equal(vectors, clustered_unit_vectors(400, 64, clusters=4, seed=7))


def test_parse_importtime_finds_the_module_and_its_heaviest_children() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |   numpy.core",
            "import time:       200 |       5000 | numpy",
            "import time:        50 |         50 |     pydantic.x",
            "import time:        10 |       3000 |   pydantic",
            "import time:        20 |         20 |   autotag.handlers",
            "import time:         5 |       8000 | app",
            "some other line",
        ]
    )
    times = parse_importtime(stderr, "app")
    assert times.total_us == 8000
    assert times.heaviest == [("pydantic", 3000), ("autotag.handlers", 20)]
    with pytest.raises(ValueError, match="missing"):
        parse_importtime(stderr, "missing")


def test_directory_bytes_counts_a_linked_file_once(tmp_path: Path) -> None:
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "big.so").write_bytes(b"x" * 1000)
    (tmp_path / "python" / "link").symlink_to(tmp_path / "python" / "big.so")
    assert directory_bytes(tmp_path) == 1000


BUILT_TEMPLATE = """
Globals:
  Function:
    Layers: [{Ref: SharedLayer}]
Conditions:
  UsesOnnx: {"Fn::Equals": [a, a]}
Resources:
  SharedLayer: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: SharedLayer}}
  ModelLayer: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: ../model-layer}}
  EmbedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: EmbedFunction
      Layers: [{"Fn::If": [UsesOnnx, {Ref: ModelLayer}, {Ref: "AWS::NoValue"}]}]
  ClusterFunction: {Type: AWS::Serverless::Function, Properties: {CodeUri: ClusterFunction}}
"""


def test_function_sizes_add_the_global_and_the_conditional_layers(tmp_path: Path) -> None:
    build = tmp_path / "build"
    for folder, size in [("EmbedFunction", 100), ("ClusterFunction", 10), ("SharedLayer", 1000)]:
        (build / folder).mkdir(parents=True)
        (build / folder / "file").write_bytes(b"x" * size)
    (tmp_path / "model-layer").mkdir()  # a prebuilt layer stays outside the build directory
    (tmp_path / "model-layer" / "model.onnx").write_bytes(b"x" * 5000)
    (build / "template.yaml").write_text(BUILT_TEMPLATE, encoding="utf-8")

    assert function_sizes(build) == {
        "EmbedFunction": {"code": 100, "SharedLayer": 1000, "ModelLayer": 5000},
        "ClusterFunction": {"code": 10, "SharedLayer": 1000},
    }


def test_function_sizes_of_the_project_template_name_every_function() -> None:
    layers = {name: set(parts) for name, parts in _template_layers().items()}

    assert layers["ClusterFunction"] == {"SharedLayer", "ClusteringLayer"}
    assert layers["EmbedFunction"] == {"SharedLayer", "ModelLayer"}


def _template_layers() -> dict[str, list[str]]:
    from autotag.local.template_rules import load_template
    from benchmarks.lambda_sizes import layer_ids

    template = load_template(ROOT / "template.yaml")
    functions = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    return {name: layer_ids(template, r["Properties"]) for name, r in functions.items()}


def test_tables_show_every_row_and_verdict() -> None:
    rows = [
        Row("1", "overhead", "12%", "< 15%", True),
        Row("4", "exponent", "1.1"),
        Row("5", "size", "300 MB", "", False),
    ]
    markdown = markdown_table(rows)
    assert markdown.count("\n") == 5
    assert "| 1 | overhead | 12% | < 15% | met |" in markdown
    assert "NOT met" in markdown
    text = text_table(rows)
    assert text.splitlines()[0].split() == ["1", "overhead", "12%", "<", "15%", "met"]
    assert text.splitlines()[1].split() == ["4", "exponent", "1.1"]


def test_covered_seconds_counts_overlaps_once() -> None:
    assert covered_seconds([]) == 0.0
    assert covered_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == pytest.approx(4.0)
    assert covered_seconds([(0.0, 10.0), (2.0, 3.0)]) == pytest.approx(10.0)


class Counter:
    def work(self, value: int) -> int:
        if value < 0:
            raise ValueError("negative")
        return value * 2


def test_stopwatch_records_calls_and_restores_the_function() -> None:
    original = Counter.work
    watch = Stopwatch()
    with watch.timing({"work": (Counter, "work")}):
        assert Counter().work(2) == 4
        with pytest.raises(ValueError, match="negative"):
            Counter().work(-1)
    assert Counter.work is original
    assert len(watch.intervals["work"]) == 2
    assert all(end >= start for start, end in watch.intervals["work"])
    Counter().work(1)
    assert len(watch.intervals["work"]) == 2  # not recorded once restored


def test_stopwatch_counts_the_calling_threads_cpu_not_its_waits() -> None:
    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    class Work:
        def busy(self) -> None:
            spin(0.05)

        def idle(self) -> None:
            time.sleep(0.1)

    watch = Stopwatch()
    with watch.timing({"busy": (Work, "busy"), "idle": (Work, "idle")}):
        Work().busy()
        Work().idle()
    assert watch.cpu_seconds["busy"] >= 0.05
    assert watch.cpu_seconds["idle"] < 0.02
    assert watch.intervals["idle"][0][1] - watch.intervals["idle"][0][0] >= 0.1


def test_server_cpu_seconds_sums_one_servers_processes_and_their_exited_children(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    proc, pgdata = tmp_path / "proc", tmp_path / "pgdata"
    proc.mkdir()
    pgdata.mkdir()

    def process(pid: int, parent: int, name: str, utime: int, stime: int, cutime: int, cstime: int) -> None:
        (proc / str(pid)).mkdir()
        fields = ["S", str(parent), "1", "0", "0", "-1", "0", "0", "0", "0", "0", str(utime), str(stime), str(cutime)]
        (proc / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join([*fields, str(cstime), "20", "0"]))

    process(10, 1, "postgres", 3 * ticks, ticks, 2 * ticks, 0)  # the server, with its reaped backends
    process(11, 10, "postgres", ticks, 0, 0, 0)  # a backend
    process(12, 10, "my (postgres) ) tool", 2 * ticks, 0, 5 * ticks, 0)  # a child's own time only
    process(20, 1, "postgres", 40 * ticks, 0, 0, 0)  # another server
    process(21, 20, "postgres", 9 * ticks, 0, 0, 0)
    process(30, 1, "python3", 50 * ticks, 0, 0, 0)
    (proc / "14").mkdir()  # exited between the listing and the read
    (proc / "self").mkdir()

    assert server_cpu_seconds(pgdata, proc) is None  # no server running there
    (pgdata / "postmaster.pid").write_text("10\n/data\n")
    assert server_cpu_seconds(pgdata, proc) == pytest.approx(9.0)
    assert server_cpu_seconds(pgdata, tmp_path / "missing") is None
