"""`autotag up` as a user runs it: a separate process serving moto over HTTP, uploads and
deletes through boto3 against its endpoint (as the AWS CLI does), `autotag status` watching
the database and the queues, SIGTERM stopping it. Embeddings come from the local
OpenAI-compatible server, the database is a fresh embedded PostgreSQL one."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from autotag.cli import main
from autotag.local.up import StackState
from tests.conftest import TEMPLATE
from tests.support.openai_server import FakeOpenAIServer

BUCKET = "autotag-local-documents"
START_SECONDS = 60  # a cold interpreter imports boto3, moto, the handlers and migrates


@dataclass
class LiveStack:
    process: subprocess.Popen[str]
    data_dir: Path
    state: StackState
    s3: Any
    openai: FakeOpenAIServer

    def status(self, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
        capsys.readouterr()
        assert main(["--data-dir", str(self.data_dir), "status", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, err


def start_up(data_dir: Path, *, port: int = 0) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "autotag.cli", "--data-dir", str(data_dir), "--template", str(TEMPLATE), "up"]
    return subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live_stack(openai_env: FakeOpenAIServer, tmp_path: Path) -> Iterator[LiveStack]:
    data_dir = tmp_path / "state"
    process = start_up(data_dir)
    try:
        state = wait_for(
            lambda: StackState.read(data_dir) or process.poll() is not None, "autotag up to start", START_SECONDS
        )
        assert isinstance(state, StackState), process.communicate()[1]
        s3 = boto3.client(
            "s3",
            endpoint_url=state.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        yield LiveStack(process, data_dir, state, s3, openai_env)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def documents(report: dict[str, Any], workspace: str) -> dict[str, dict[str, Any]]:
    entry = next((w for w in report["workspaces"] if w["workspace"] == workspace), None)
    return {} if entry is None else {d["key"]: d for d in entry["documents"]}


def test_uploads_are_embedded_categorised_and_deleted_until_the_stack_is_stopped(
    live_stack: LiveStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert live_stack.state.endpoint.startswith("http://127.0.0.1:")
    live_stack.s3.put_object(
        Bucket=BUCKET, Key="acme/invoices/march invoice.txt", Body=b"Invoice 42: amount due for March, paid by account."
    )
    live_stack.s3.put_object(Bucket=BUCKET, Key="acme/notes.txt", Body=b"Meeting notes about the product roadmap.")
    live_stack.s3.put_object(Bucket=BUCKET, Key="acme/picture.png", Body=b"\x89PNG\r\n\x1a\n")

    def categorised() -> dict[str, Any] | None:
        report = live_stack.status(capsys, "--workspace", "acme")
        docs = documents(report, "acme")
        done = len(docs) == 3 and all(d["label"] for d in docs.values() if d["status"] == "embedded")
        return report if done else None

    report = wait_for(categorised, "the uploads to be embedded and categorised")
    docs = documents(report, "acme")
    assert docs["invoices/march invoice.txt"]["status"] == "embedded"
    assert docs["notes.txt"]["status"] == "embedded"
    assert docs["picture.png"]["status"] == "skipped"
    (workspace,) = report["workspaces"]
    assert workspace["counts"] == {"embedded": 2, "skipped": 1}
    assert sum(c["size"] for c in workspace["categories"]) == 2
    queues = report["stack"]["queues"]
    assert set(queues) == {"IngestQueue", "IngestQueueDLQ", "ClusterQueue", "ClusterQueueDLQ"}
    assert queues["IngestQueueDLQ"] == queues["ClusterQueueDLQ"] == {"waiting": 0, "in_flight": 0}

    # The embeddings API fails every attempt (one try + two retries): the event goes to the DLQ.
    live_stack.openai.inject(500, count=3, path="/v1/embeddings")
    live_stack.s3.put_object(Bucket=BUCKET, Key="acme/unlucky.txt", Body=b"Board minutes of the annual meeting.")
    report = wait_for(
        lambda: (r := live_stack.status(capsys))["stack"]["queues"]["IngestQueueDLQ"]["waiting"] == 1 and r,
        "the failed event to reach the DLQ",
    )
    unlucky = documents(report, "acme")["unlucky.txt"]
    assert unlucky["status"] == "failed" and "500" in unlucky["reason"]

    capsys.readouterr()
    assert main(["--data-dir", str(live_stack.data_dir), "status"]) == 0
    text = capsys.readouterr().out
    assert f"stack    {live_stack.state.endpoint}" in text
    assert "IngestQueueDLQ" in text and "ClusterQueueDLQ" in text
    assert re.search(r"IngestQueueDLQ +1 +0\n", text)
    assert "workspace acme: 2 embedded, 1 failed, 1 skipped" in text
    assert "skipped: picture.png (unsupported file type: PNG image (.png))" in text
    assert "failed: unlucky.txt (" in text
    assert "invoices/march invoice.txt" in text  # as an example of its category

    live_stack.s3.delete_object(Bucket=BUCKET, Key="acme/notes.txt")

    def deleted() -> dict[str, Any] | None:
        report = live_stack.status(capsys)
        categories = report["workspaces"][0]["categories"]
        gone = "notes.txt" not in documents(report, "acme") and sum(c["size"] for c in categories) == 1
        return report if gone else None

    report = wait_for(deleted, "the delete to reach the database and the categories")
    assert report["workspaces"][0]["counts"] == {"deleted": 1, "embedded": 1, "failed": 1, "skipped": 1}

    returncode, err = live_stack.stop()

    assert returncode == 0, err
    assert "stopped" in err
    assert StackState.read(live_stack.data_dir) is None
    # The bucket outlives the process: its objects are mirrored for the next start.
    mirror = live_stack.data_dir / "s3" / BUCKET / "acme"
    assert sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()) == [
        "invoices/march invoice.txt",
        "picture.png",
        "unlucky.txt",
    ]
    stopped = live_stack.status(capsys)
    assert stopped["stack"]["running"] is False and "not running" in stopped["stack"]["message"]
    assert documents(stopped, "acme").keys() == {"picture.png", "invoices/march invoice.txt", "unlucky.txt"}


def test_a_second_up_on_the_same_data_dir_is_refused(openai_env: FakeOpenAIServer, tmp_path: Path) -> None:
    running = StackState("http://127.0.0.1:4566", BUCKET, "us-east-1", os.getpid(), {})
    running.write(tmp_path)  # this test's process plays the running stack

    second = start_up(tmp_path)
    _, err = second.communicate(timeout=START_SECONDS)

    assert second.returncode != 0
    assert f"already running for {tmp_path} (pid {os.getpid()}, http://127.0.0.1:4566)" in err
    assert StackState.read(tmp_path) == running


def test_a_taken_port_is_a_clear_error(openai_env: FakeOpenAIServer, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = start_up(tmp_path, port=port)
        _, err = other.communicate(timeout=START_SECONDS)

    assert other.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert StackState.read(tmp_path) is None


def test_status_names_a_stale_state_file(
    openai_env: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    StackState("http://127.0.0.1:1", BUCKET, "us-east-1", int(gone.stdout), {"IngestQueue": "x"}).write(tmp_path)

    assert main(["--data-dir", str(tmp_path), "status"]) == 0
    out = capsys.readouterr().out

    assert f"pid {gone.stdout.strip()} is gone without stopping cleanly" in out
    assert "no documents yet" in out
