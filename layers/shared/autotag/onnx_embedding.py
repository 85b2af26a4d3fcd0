"""The `onnx` embedding provider: all-MiniLM-L6-v2 through onnxruntime and tokenizers.

No torch at run time: `make model` (autotag.onnx_export) exports the model once; this module
only needs the exported directory, so it fits a Lambda layer and starts in a fraction of a
second. Its vectors match sentence-transformers': the same tokenizer and 256-token limit,
mean pooling over the attention mask, then L2 normalisation.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autotag.chunking import Tokenizer
from autotag.embeddings import Vectors, normalise
from autotag.onnx_export import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE

# Texts per session run: large enough to amortise the call, small enough that padding every
# text to the longest of the batch wastes little (texts are sorted by length first).
BATCH_SIZE = 32


class MissingModelError(FileNotFoundError):
    """The exported model is not where AUTOTAG_ONNX_MODEL_DIR points."""


def missing_files(model_dir: Path) -> list[str]:
    return [name for name in (MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE) if not (model_dir / name).is_file()]


class _SpanTokenizer:
    """Token spans for the chunker: the same vocabulary, without truncation or special tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]


class OnnxEmbedder:
    """all-MiniLM-L6-v2 as exported by `make model`, run by onnxruntime on the CPU."""

    def __init__(self, model_dir: Path, *, threads: int | None = None) -> None:
        missing = missing_files(model_dir)
        if missing:
            raise MissingModelError(
                f"AUTOTAG_ONNX_MODEL_DIR={model_dir}: {', '.join(missing)} not found; build the model with `make model`"
            )
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import onnxruntime
        from tokenizers import Tokenizer as HFTokenizer

        manifest = json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        self.model = str(manifest["model"])
        self.dimensions = int(manifest["dimensions"])
        self._batch_tokenizer = HFTokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        truncation = self._batch_tokenizer.truncation
        if not truncation or truncation["max_length"] != manifest["max_seq_length"]:
            raise MissingModelError(
                f"{model_dir / TOKENIZER_FILE} does not truncate at {manifest['max_seq_length']} tokens; "
                "rebuild the model with `make model`"
            )
        # The chunker cuts windows that fit the model with its [CLS] and [SEP].
        special = self._batch_tokenizer.num_special_tokens_to_add(is_pair=False)
        self.max_input_tokens = int(truncation["max_length"]) - special
        spans = HFTokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        spans.no_truncation()
        spans.no_padding()
        self.tokenizer: Tokenizer = _SpanTokenizer(spans)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Idle intra-op threads would otherwise spin for work between runs, taking the CPU
        # from the invocation's own I/O and database work (and, on Lambda, from a fraction
        # of a vCPU); measured here, the same texts took about 15% less CPU at equal speed.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_dir / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {node.name for node in self._session.get_inputs()}
        # One run at a time: the session already uses every core, so runs from the local
        # driver's concurrent invocations would only compete for them.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Vectors:
        # Runs on this CPU and cannot be interrupted: `timeout` only matters to callers that
        # check their own time before calling.
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        # Similar lengths together, as sentence-transformers does: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            result[batch] = self._embed_batch([texts[i] for i in batch])
        return result

    def _embed_batch(self, texts: list[str]) -> Vectors:
        encodings = self._batch_tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            (hidden,) = self._session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in self._inputs})
        return mean_pool(np.asarray(hidden, dtype=np.float32), mask)


def mean_pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    """sentence-transformers' mean pooling: the average of the real (unpadded) tokens, normalised."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return normalise(summed / counts)
