"""A local OpenAI-compatible HTTP server for tests and benchmarks.

Why this exists: mocking the ``openai`` client object (or patching its HTTP
transport) only proves that our code calls a Python method. It says nothing
about how the real client serialises requests, decodes base64 embeddings, maps
HTTP statuses to exception classes, honours ``Retry-After`` or gives up on a
slow socket. This module runs a real HTTP server on 127.0.0.1 so the unmodified
client talks to it over TCP, with no network access and no API key, while the
test decides on demand when the "API" rate-limits, fails, stalls or drops the
connection - things the production service does only occasionally.

Embeddings are a hashed bag of words rather than random vectors so that
clustering and similarity code gets meaningful input: texts sharing words are
close, unrelated texts are nearly orthogonal, and every vector is reproducible
across runs, processes and machines (``hashlib``, never the salted ``hash()``).

Usage::

    with FakeOpenAIServer(dimensions=64) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        server.inject(429, retry_after=2)
        ...

or, for a long run, a seeded mix of faults drawn request by request
(``make chaos``)::

    server.fail_randomly(FaultMix(rate_limited=0.1, server_error=0.02, reset=0.01), seed=7)
    server.fault_counts()  # how many of each were served

Only the standard library and numpy are used so the helper works in any test
environment the project already has.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import random
import re
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import unquote, urlsplit

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLIENT_CLOSED",
    "NO_RESPONSE",
    "FakeOpenAIServer",
    "FaultMix",
    "RecordedRequest",
    "fake_embedding",
]

#: ``RecordedRequest.status`` while a request is still being answered, and
#: forever for requests dropped by :meth:`FakeOpenAIServer.inject_reset` or by
#: server shutdown: no status line was ever sent.
NO_RESPONSE = 0
#: ``RecordedRequest.status`` when the client hung up during an injected delay
#: (typically its timeout fired). Borrowed from nginx's "client closed request"
#: so a timed-out call is not mistaken for a delivered 200.
CLIENT_CLOSED = 499

EMBEDDINGS_PATH = "/v1/embeddings"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

# The real API's per-request cap; code that batches must be caught exceeding it.
MAX_EMBEDDING_INPUTS = 2048
MODEL_IDS = ("text-embedding-3-small", "text-embedding-3-large", "gpt-4o-mini")

# Small enough that texts with the same words stay near-duplicates (cosine
# ~0.998), large enough that they are never bit-identical vectors.
_PER_TEXT_WEIGHT = 0.05
# Short enough that a delayed handler notices a departed client or a server
# shutdown promptly, long enough not to burn CPU while sleeping.
_POLL_SECONDS = 0.05
_WORD_RE = re.compile(r"[^\W_]+")

# Status -> (type, code, message) modelled on what api.openai.com returns, so
# code that inspects ``err.code`` / ``err.type`` sees realistic values.
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Forbidden.",
    ),
    404: ("invalid_request_error", None, "Not found."),
    408: ("invalid_request_error", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    504: ("server_error", None, "Gateway timeout."),
}

FloatVector = npt.NDArray[np.float32]


@dataclass
class RecordedRequest:
    """One request as the server saw it.

    ``headers`` keys are lower-cased because HTTP header names are
    case-insensitive and tests should not depend on the client's spelling.
    ``body`` is the decoded JSON object (``{}`` for GET or an unparsable body).
    ``status`` is the status sent back, :data:`NO_RESPONSE` or
    :data:`CLIENT_CLOSED`; it is set before the response bytes are written, so
    it is final by the time the client sees the answer. ``received_at`` is the
    server's ``time.monotonic()`` when the request was read, so tests measure the
    client's pauses between tries where they happen, not around the call.
    """

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    #: The :class:`FaultMix` fault drawn for this request (its field name), if any.
    fault: str | None = field(default=None, kw_only=True)
    status: int = NO_RESPONSE
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _Rule:
    """A pending injected behaviour, consumed one matching request at a time."""

    kind: Literal["status", "reset", "delay"]
    remaining: int
    path: str | None
    status: int = 0
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class FaultMix:
    """Probabilities that one request meets each fault, for :meth:`FakeOpenAIServer.fail_randomly`.

    Each request draws at most one fault; the probabilities must add up to at most 1. ``slow``
    answers after ``slow_seconds`` (within a sane client timeout), ``stalled`` after
    ``stall_seconds`` (meant to exceed it, so the client gives up and retries).
    """

    rate_limited: float = 0.0  # 429 with Retry-After: retry_after_seconds
    rate_limited_bare: float = 0.0  # 429 without Retry-After: the client's own backoff
    server_error: float = 0.0  # 500
    unavailable: float = 0.0  # 503
    reset: float = 0.0  # connection reset, no answer
    slow: float = 0.0
    stalled: float = 0.0
    retry_after_seconds: float = 1.0
    slow_seconds: float = 0.5
    stall_seconds: float = 5.0
    #: Only requests to this path draw faults (None: every path).
    path: str | None = EMBEDDINGS_PATH

    def __post_init__(self) -> None:
        chances = [getattr(self, name) for name in _MIX_KINDS]
        if any(not 0.0 <= chance <= 1.0 for chance in chances) or sum(chances) > 1.0:
            raise ValueError("fault probabilities must be in [0, 1] and add up to at most 1")

    def rule(self, kind: str, path: str) -> _Rule:
        """The one-off rule that serves fault `kind` to one request."""
        if kind == "rate_limited":
            return _Rule("status", 1, path, status=429, retry_after=self.retry_after_seconds)
        if kind in _MIX_STATUSES:
            return _Rule("status", 1, path, status=_MIX_STATUSES[kind])
        if kind == "reset":
            return _Rule("reset", 1, path)
        seconds = self.slow_seconds if kind == "slow" else self.stall_seconds
        return _Rule("delay", 1, path, seconds=seconds)


_MIX_KINDS = ("rate_limited", "rate_limited_bare", "server_error", "unavailable", "reset", "slow", "stalled")
_MIX_STATUSES = {"rate_limited_bare": 429, "server_error": 500, "unavailable": 503}


@dataclass
class _Response:
    status: int
    payload: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class _APIError(Exception):
    """Raised by endpoint code to produce an OpenAI-style error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


# ---------------------------------------------------------------------------
# Deterministic embeddings
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def _word_slot(word: str, dimensions: int) -> tuple[int, float]:
    # Cached because real corpora repeat words constantly and blake2b per word
    # dominates the cost of large batches otherwise.
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=16).digest()
    index = int.from_bytes(digest[:8], "little") % dimensions
    # A separate byte for the sign keeps it independent of the index, so
    # colliding words cancel as often as they reinforce (feature hashing).
    sign = 1.0 if digest[8] & 1 else -1.0
    return index, sign


def _vector(words: Sequence[str], identity: bytes, dimensions: int) -> FloatVector:
    bag = np.zeros(dimensions, dtype=np.float64)
    for word in words:
        index, sign = _word_slot(word, dimensions)
        bag[index] += sign
    bag_norm = float(np.linalg.norm(bag))
    if bag_norm > 0.0:
        bag /= bag_norm
    # The per-text component is what makes "Lease." and "lease" distinct vectors
    # and gives word-less texts ("a b", "!!") a stable direction instead of NaN.
    seed = int.from_bytes(hashlib.blake2b(identity, digest_size=8).digest(), "little")
    noise = np.random.default_rng(seed).standard_normal(dimensions)
    noise *= _PER_TEXT_WEIGHT / max(float(np.linalg.norm(noise)), 1e-12)
    vector = bag + noise
    vector /= float(np.linalg.norm(vector))
    # float32 little-endian is exactly what the API's base64 format carries.
    return vector.astype("<f4")


def _text_words(text: str) -> list[str]:
    return [word for word in _WORD_RE.findall(text.lower()) if len(word) >= 3]


def _text_identity(text: str) -> bytes:
    return b"text\x00" + text.encode("utf-8")


def _tokens_identity(tokens: Sequence[int]) -> bytes:
    # Prefixed so a token list can never share an identity with some text.
    return b"tokens\x00" + b"".join(struct.pack("<q", token) for token in tokens)


def fake_embedding(value: str | Sequence[int], dimensions: int = 1536) -> FloatVector:
    """Return the exact vector the server answers for one input.

    Lets tests compute expected embeddings without an HTTP round trip, e.g. to
    check what the code under test stored.
    """
    if dimensions < 1:
        raise ValueError("dimensions must be >= 1")
    if isinstance(value, str):
        return _vector(_text_words(value), _text_identity(value), dimensions)
    tokens = list(value)
    return _vector([str(token) for token in tokens], _tokens_identity(tokens), dimensions)


def _rough_tokens(text: str) -> int:
    # Roughly the ratio tiktoken gives for English prose; exact counts would
    # need a tokenizer this helper must not depend on.
    return max(1, round(len(text.split()) * 4 / 3))


# ---------------------------------------------------------------------------
# Request validation helpers
# ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    # bool is an int subclass, but JSON true is not a token id.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tokens(tokens: list[Any]) -> list[int]:
    if not tokens:
        raise _APIError(400, "'$.input' is invalid: token arrays must not be empty.", param="input")
    if not all(_is_int(token) and token >= 0 for token in tokens):
        raise _APIError(
            400,
            "'$.input' is invalid: token ids must be non-negative integers.",
            param="input",
        )
    return cast(list[int], tokens)


def _embedding_inputs(value: object) -> list[str | list[int]]:
    """Normalise every accepted ``input`` shape to one entry per embedding."""
    if value is None:
        raise _APIError(400, "'input' is a required property.", param="input")
    if isinstance(value, str):
        items: list[str | list[int]] = [value]
    elif isinstance(value, list) and value and all(_is_int(item) for item in value):
        # A flat list of ints is ONE pre-tokenised input, not many.
        items = [_check_tokens(value)]
    elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        items = cast(list[str | list[int]], list(value))
    elif isinstance(value, list) and value and all(isinstance(item, list) for item in value):
        items = [_check_tokens(item) for item in value]
    else:
        raise _APIError(
            400,
            "'$.input' is invalid: expected a string, a non-empty array of strings, "
            "an array of token ids or an array of token arrays.",
            param="input",
        )
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise _APIError(
            400,
            f"'$.input' is too long: {len(items)} inputs given, the maximum is {MAX_EMBEDDING_INPUTS}.",
            param="input",
        )
    if any(item == "" for item in items):
        raise _APIError(400, "'$.input' is invalid: input cannot be an empty string.", param="input")
    return items


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _APIError(400, "you must provide a model parameter", param="model")
    return model


def _message_text(message: object) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multi-part content: only the text parts count towards the estimate.
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _error_body(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase + "."
    except ValueError:
        phrase = "Error."
    fallback = (
        "server_error" if status >= 500 else "invalid_request_error",
        None,
        phrase,
    )
    error_type, default_code, default_message = _ERROR_DEFAULTS.get(status, fallback)
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": error_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }


def _json_bytes(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _format_seconds(seconds: float) -> str:
    # Integers as "2" like real servers; fractions are accepted by the openai
    # client and keep retry tests fast.
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def _peer_closed(sock: socket.socket) -> bool:
    # A readable socket whose peek returns b"" means the client sent FIN,
    # which is what an HTTP client does when its read timeout fires.
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads must never keep the test process alive.
    daemon_threads = True

    def __init__(self, owner: FakeOpenAIServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping sockets is routine here (timeouts, resets); the
        # default prints a traceback to stderr for each one.
        pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive so benchmarks measure the client's connection reuse,
    # not a TCP handshake per request.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by design: test output should show test failures, not traffic.
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- request lifecycle ---------------------------------------------------

    def _read_body(self) -> tuple[dict[str, Any], _APIError | None]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            # Without a usable length the stream position is unknown, so the
            # connection cannot be reused.
            self.close_connection = True
            return {}, _APIError(400, "Invalid Content-Length header.")
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}, None
        try:
            decoded = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            decoded = None
        if not isinstance(decoded, dict):
            return {}, _APIError(400, "We could not parse the JSON body of your request.")
        return cast(dict[str, Any], decoded), None

    def _dispatch(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        body, body_error = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        record, delay, fault = owner._admit(path, body, headers)
        try:
            if delay is not None and not self._wait(delay.seconds, record):
                return
            if fault is not None and fault.kind == "reset":
                self._reset()
                return
            if fault is not None:
                extra = {} if fault.retry_after is None else {"Retry-After": _format_seconds(fault.retry_after)}
                error = fault.body if fault.body is not None else _error_body(fault.status)
                self._send(record, _Response(fault.status, _json_bytes(error), headers=extra))
                return
            self._send(record, self._answer(path, body, body_error))
        except OSError:
            # The client vanished mid-response; nothing useful left to do.
            self.close_connection = True

    def _answer(self, path: str, body: dict[str, Any], body_error: _APIError | None) -> _Response:
        try:
            if body_error is not None:
                raise body_error
            return self._route(path, body)
        except _APIError as exc:
            payload = _error_body(exc.status, exc.message, param=exc.param, code=exc.code)
            return _Response(exc.status, _json_bytes(payload))
        except Exception as exc:
            return _Response(500, _json_bytes(_error_body(500, f"FakeOpenAIServer bug: {exc!r}")))

    def _route(self, path: str, body: dict[str, Any]) -> _Response:
        owner = self.server.owner
        method = self.command
        if method == "POST" and path == EMBEDDINGS_PATH:
            return _Response(200, _json_bytes(owner._embeddings(body)))
        if method == "POST" and path == CHAT_COMPLETIONS_PATH:
            return owner._chat_completion(body)
        if method == "GET" and path == MODELS_PATH:
            return _Response(
                200,
                _json_bytes({"object": "list", "data": [_model(m) for m in MODEL_IDS]}),
            )
        if method == "GET" and path.startswith(MODELS_PATH + "/"):
            model_id = unquote(path[len(MODELS_PATH) + 1 :])
            if model_id in MODEL_IDS:
                return _Response(200, _json_bytes(_model(model_id)))
            raise _APIError(
                404,
                f"The model '{model_id}' does not exist",
                param="model",
                code="model_not_found",
            )
        # Same wording as the real API so error-handling code sees a familiar shape.
        raise _APIError(404, f"Invalid URL ({method} {path})")

    def _send(self, record: RecordedRequest, response: _Response) -> None:
        # Recorded first: once the client has the bytes, the test may assert.
        record.status = response.status
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.payload)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.payload)

    def _wait(self, seconds: float, record: RecordedRequest) -> bool:
        """Sleep for an injected delay; False if the response must be dropped."""
        owner = self.server.owner
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            # Wake on shutdown so a long delay never blocks __exit__.
            if owner._closing.wait(min(remaining, _POLL_SECONDS)):
                self.close_connection = True
                return False
            # Stop early once the client has given up, so the record says so
            # and the thread is not parked for the rest of the delay.
            if _peer_closed(self.connection):
                record.status = CLIENT_CLOSED
                self.close_connection = True
                return False
        return True

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN,
        # i.e. a genuine "connection reset by peer" on the client side. The
        # real close happens when finish() releases rfile/wfile, before
        # socketserver's shutdown(SHUT_WR) could send a FIN first.
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def _model(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "system",
    }


# ---------------------------------------------------------------------------
# Public server
# ---------------------------------------------------------------------------


class FakeOpenAIServer:
    """OpenAI-compatible server on an ephemeral 127.0.0.1 port.

    Use as a context manager (or call :meth:`start` / :meth:`close`). It is
    single-use: once closed it cannot be restarted, so state never leaks from
    one test into the next.

    Injected behaviours are consumed in the order they were injected, one
    matching request at a time, decided when the request arrives. A delay
    (:meth:`inject_delay`) is applied first and can be combined with a status
    or reset injection for the same request.
    """

    def __init__(self, dimensions: int = 1536, chat_reply: str = "Contracts and Leases") -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        #: Embedding size used when a request carries no ``dimensions`` field.
        self.dimensions = dimensions
        #: Content of every chat completion; may be changed between requests.
        self.chat_reply = chat_reply
        #: When set, the content of a chat completion is computed from the request's
        #: messages (e.g. to reply like a model that follows text planted in a document).
        self.chat_replier: Callable[[list[Any]], str] | None = None
        #: Every request received, in arrival order.
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._faults: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._completion_ids = 0
        self._mix: FaultMix | None = None
        self._mix_random = random.Random(0)
        self._mix_first: list[str] = []
        self._mix_draws = 0

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Bind an ephemeral port and serve from a background thread."""
        if self._httpd is not None or self._closing.is_set():
            raise RuntimeError("FakeOpenAIServer is single-use and was already started")
        self._httpd = _HTTPServer(self)
        # A short poll interval keeps shutdown() (and so each test) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name=f"FakeOpenAIServer:{self._httpd.server_port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, drop open connections and join the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None or self._closing.is_set():
            return
        self._closing.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
            handler_threads = list(self._handler_threads)
        # Keep-alive connections park their handler threads in a blocking read;
        # shutting the sockets down is what lets those threads finish.
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        thread.join()
        for handler_thread in handler_threads:
            handler_thread.join(timeout=1.0)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, ready for ``openai.OpenAI(base_url=...)``."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_port}/v1"

    # -- failure injection -----------------------------------------------------

    def inject(
        self,
        status: int,
        *,
        count: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (to ``path`` if given) with ``status``.

        The body is an OpenAI-style ``{"error": {...}}`` unless ``body`` is
        given, which is then sent verbatim. ``retry_after`` (seconds) adds a
        ``Retry-After`` header, which the openai client honours when retrying.
        ``path`` is the full request path, e.g. ``"/v1/embeddings"``.
        """
        if not 400 <= status <= 599:
            raise ValueError("inject() is for error statuses (400-599)")
        if retry_after is not None and not (math.isfinite(retry_after) and retry_after >= 0):
            raise ValueError("retry_after must be a finite number >= 0")
        self._add(
            self._faults,
            _Rule("status", count, path, status=status, retry_after=retry_after, body=body),
        )

    def inject_delay(self, seconds: float, *, count: int = 1, path: str | None = None) -> None:
        """Make the next ``count`` requests (to ``path`` if given) wait ``seconds`` first.

        If the client disconnects while waiting (its timeout fired) no answer
        is sent and the request is recorded as :data:`CLIENT_CLOSED`.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("seconds must be a finite number >= 0")
        self._add(self._delays, _Rule("delay", count, path, seconds=seconds))

    def inject_reset(self, *, count: int = 1, path: str | None = None) -> None:
        """Reset (RST) the connection of the next ``count`` requests without answering."""
        self._add(self._faults, _Rule("reset", count, path))

    def fail_randomly(self, mix: FaultMix | None, *, seed: int = 0, every_kind_first: bool = False) -> None:
        """From now on, draw a fault from ``mix`` for each request (None: stop).

        The draws come from a generator seeded with ``seed``, one per matching request in
        arrival order, so a run's sequence of faults is reproducible. Faults queued with
        :meth:`inject`, :meth:`inject_delay` or :meth:`inject_reset` take precedence.
        With ``every_kind_first``, every fault kind the mix can draw is first served once, in
        a seeded order, on every other request: a short run then meets each of them too.
        """
        with self._lock:
            self._mix = mix
            self._mix_random = random.Random(seed)
            kinds = [kind for kind in _MIX_KINDS if mix is not None and getattr(mix, kind) > 0]
            self._mix_random.shuffle(kinds)
            self._mix_first = kinds if every_kind_first else []
            self._mix_draws = 0

    def fault_counts(self) -> dict[str, int]:
        """How many requests drew each :class:`FaultMix` fault; ``timed_out`` counts the
        requests whose client hung up before the answer (a stalled one, typically)."""
        with self._lock:
            requests = list(self.requests)
        counts = dict.fromkeys((*_MIX_KINDS, "timed_out"), 0)
        for request in requests:
            if request.fault is not None:
                counts[request.fault] += 1
            if request.status == CLIENT_CLOSED:
                counts["timed_out"] += 1
        return counts

    def _add(self, rules: list[_Rule], rule: _Rule) -> None:
        if rule.remaining < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            rules.append(rule)

    # -- inspection ------------------------------------------------------------

    def embedding_requests(self) -> list[RecordedRequest]:
        """The ``/v1/embeddings`` requests that were answered with 200."""
        with self._lock:
            return [r for r in self.requests if r.path == EMBEDDINGS_PATH and r.status == 200]

    # -- internals used by the handler -----------------------------------------

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
                self._handler_threads.add(threading.current_thread())
            else:
                self._connections.discard(connection)
                self._handler_threads.discard(threading.current_thread())

    def _admit(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[RecordedRequest, _Rule | None, _Rule | None]:
        # Recording and rule consumption share one critical section so "the
        # next N requests" means the next N to arrive, even when concurrent.
        record = RecordedRequest(path=path, body=body, headers=headers)
        with self._lock:
            self.requests.append(record)
            delay, fault = _take(self._delays, path), _take(self._faults, path)
            mix = self._mix
            if delay is None and fault is None and mix is not None and mix.path in (None, path):
                self._mix_draws += 1
                if self._mix_first and self._mix_draws % 2:
                    record.fault = self._mix_first.pop(0)
                else:
                    record.fault = _draw(mix, self._mix_random)
                if record.fault is not None:
                    rule = mix.rule(record.fault, path)
                    delay, fault = (rule, None) if rule.kind == "delay" else (None, rule)
            return record, delay, fault

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        model = _require_model(body)
        items = _embedding_inputs(body.get("input"))
        dimensions = body.get("dimensions")
        if dimensions is None:
            dimensions = self.dimensions
        elif not _is_int(dimensions) or dimensions < 1:
            raise _APIError(400, "'$.dimensions' must be a positive integer.", param="dimensions")
        encoding_format = body.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            raise _APIError(
                400,
                "'$.encoding_format' must be one of 'float' or 'base64'.",
                param="encoding_format",
            )
        data: list[dict[str, Any]] = []
        prompt_tokens = 0
        for index, item in enumerate(items):
            vector = fake_embedding(item, dimensions)
            prompt_tokens += _rough_tokens(item) if isinstance(item, str) else len(item)
            embedding: str | list[float] = (
                base64.b64encode(vector.tobytes()).decode("ascii")
                if encoding_format == "base64"
                else cast(list[float], vector.tolist())
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }

    def _chat_completion(self, body: dict[str, Any]) -> _Response:
        model = _require_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _APIError(400, "'messages' must be a non-empty array.", param="messages")
        replier = self.chat_replier  # read once: tests may change them concurrently
        reply = replier(messages) if replier is not None else self.chat_reply
        prompt_tokens = sum(_rough_tokens(_message_text(message)) for message in messages)
        completion_tokens = _rough_tokens(reply)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        with self._lock:
            self._completion_ids += 1
            completion_id = f"chatcmpl-fake{self._completion_ids:08d}"
        created = int(time.time())
        if body.get("stream"):
            return _Response(
                200,
                _sse_stream(completion_id, created, model, reply, usage, body),
                "text/event-stream",
            )
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": reply,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        return _Response(200, _json_bytes(completion))


def _take(rules: list[_Rule], path: str) -> _Rule | None:
    """Consume one use of the first rule matching ``path`` (caller holds the lock)."""
    for position, rule in enumerate(rules):
        if rule.path is None or rule.path == path:
            rule.remaining -= 1
            if rule.remaining == 0:
                del rules[position]
            return rule
    return None


def _draw(mix: FaultMix, generator: random.Random) -> str | None:
    """One fault kind drawn from ``mix``, or None for a normal answer."""
    point = generator.random()
    for kind in _MIX_KINDS:
        point -= getattr(mix, kind)
        if point < 0:
            return kind
    return None


def _sse_stream(
    completion_id: str,
    created: int,
    model: str,
    reply: str,
    usage: dict[str, int],
    body: dict[str, Any],
) -> bytes:
    # The whole stream is known up front, so it is sent with a Content-Length
    # instead of chunked encoding; the client's SSE parser does not care.
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    chunks: list[dict[str, Any]] = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": reply},
                    "finish_reason": None,
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    events.append("data: [DONE]\n\n")
    return "".join(events).encode("utf-8")
