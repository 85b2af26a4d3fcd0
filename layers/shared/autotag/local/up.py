"""`autotag up`: the local stack kept running until stopped.

moto serves S3, EventBridge and SQS over HTTP on 127.0.0.1, so the AWS CLI (or any SDK)
can upload into the documents bucket; a poller feeds IngestQueue and ClusterQueue to the
real handlers as Lambda's SQS event source mapping would, with the template's rules, until
Ctrl-C or SIGTERM. A state file under the data directory tells `autotag status` where the
running stack is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from autotag.local.run import LocalPipeline, _drain_queue, _Progress, local_pipeline
from autotag.local.stack import REGION, SERVER_CREDENTIALS, served_aws

DEFAULT_HOST = "127.0.0.1"
# LocalStack's port: AWS tooling examples for local endpoints mostly use it.
DEFAULT_PORT = 4566
STATE_FILE = "up.json"
# How long the poller sleeps when both queues are empty: an upload is picked up within it.
IDLE_SECONDS = 0.5
# After an error of the poller itself (not of a handler), e.g. the database gone.
RETRY_SECONDS = 5.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackState:
    """Where a running `autotag up` is: written when it is ready, removed when it stops."""

    endpoint: str
    bucket: str
    region: str
    pid: int
    queues: dict[str, str]  # queue name -> URL

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / STATE_FILE

    @classmethod
    def read(cls, data_dir: Path) -> StackState | None:
        try:
            return cls(**json.loads(cls.path(data_dir).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def write(self, data_dir: Path) -> None:
        path = self.path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)  # a reader never sees half a file

    def process_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process with this pid
        return True


def up(
    *,
    template: Path,
    data_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    out: TextIO,
    err: TextIO,
    stop: threading.Event | None = None,
) -> None:
    """Serve the stack and run the handlers until `stop` is set (or SIGINT/SIGTERM arrive)."""
    running = StackState.read(data_dir)
    if running is not None and running.pid != os.getpid() and running.process_alive():
        raise SystemExit(f"error: autotag up is already running for {data_dir} (pid {running.pid}, {running.endpoint})")
    stop = stop or threading.Event()
    with (
        _stop_on_signals(stop),
        served_aws(host, port) as endpoint,
        contextlib.redirect_stdout(err),  # the handlers' JSON logs go with the progress
        local_pipeline(template, data_dir, aws=contextlib.nullcontext) as pipeline,
    ):
        stack = pipeline.stack
        state = StackState(
            endpoint=endpoint,
            bucket=stack.bucket,
            region=REGION,
            pid=os.getpid(),
            queues={
                "IngestQueue": stack.ingest.url,
                "IngestQueueDLQ": stack.ingest.dlq_url,
                "ClusterQueue": stack.cluster.url,
                "ClusterQueueDLQ": stack.cluster.dlq_url,
            },
        )
        state.write(data_dir)
        try:
            _print_banner(state, out)
            _poll(pipeline, stop, err)
            print("stopping: saving the bucket under the data directory", file=err, flush=True)
            stack.save_mirror()
        finally:
            StackState.path(data_dir).unlink(missing_ok=True)
    print("stopped", file=err, flush=True)


def _poll(pipeline: LocalPipeline, stop: threading.Event, err: TextIO) -> None:
    """What Lambda's event source mappings do: take batches off both queues while there are any."""
    progress = _Progress(err)
    while not stop.is_set():
        try:
            invoked = _drain_queue(pipeline, "ingest", progress, stop) + _drain_queue(
                pipeline, "cluster", progress, stop
            )
        except Exception:
            # Lambda's poller outlives any error (a handler's crash is already a failed batch):
            # log it where the operator watches, wait, and poll again.
            logger.exception("polling the queues failed; retrying in %s s", RETRY_SECONDS)
            stop.wait(RETRY_SECONDS)
            continue
        if invoked:
            progress.done()
        else:
            stop.wait(IDLE_SECONDS)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`: in-flight batches finish and the stack shuts down cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; its caller stops us through `stop`
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_banner(state: StackState, out: TextIO) -> None:
    credentials = " ".join(f"{key}={value}" for key, value in SERVER_CREDENTIALS.items())
    print(
        f"autotag up: local stack at {state.endpoint} (pid {state.pid})\n"
        f"  bucket  s3://{state.bucket}  (keys: WORKSPACE/path)\n"
        f"  queues  {', '.join(state.queues)}\n"
        f"\n"
        f"Upload and watch, from another shell:\n"
        f"  export {credentials}\n"
        f"  aws --endpoint-url {state.endpoint} s3 cp FILE s3://{state.bucket}/WORKSPACE/name.txt\n"
        f"  aws --endpoint-url {state.endpoint} s3 rm s3://{state.bucket}/WORKSPACE/name.txt\n"
        f"  autotag status\n"
        f"\n"
        f"Ctrl-C stops it.",
        file=out,
        flush=True,
    )
