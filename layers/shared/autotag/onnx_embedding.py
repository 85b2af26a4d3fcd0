"""The `onnx` embedding provider: all-MiniLM-L6-v2 through onnxruntime and tokenizers.

No torch at run time: `make model` (autotag.onnx_export) exports the model once; this module
only needs the exported directory, so it fits a Lambda layer and starts in a fraction of a
second. Its vectors match sentence-transformers': the same tokenizer and 256-token limit,
mean pooling over the attention mask, then L2 normalisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autotag.chunking import Chunk, Tokenizer, Tokens
from autotag.embeddings import Vectors, normalise
from autotag.onnx_export import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE

# Texts per session run. Small batches keep a layer's activations in the CPU's cache and make
# the padding of mixed-length calls cheap: measured once on 696 BBC chunks on 2 cores, 4 per run
# took 7.8 s, 8 took 8.4 s, 16 took 9.4 s and sentence-transformers' 32 took 9.6 s; cut into
# the pipeline's per-invocation calls of about 50 chunks, 32 took 11.6 s and 4 took 8.0 s.
BATCH_SIZE = 4


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


class _WordPieceTokenizer(_SpanTokenizer):
    """Also the ids, and which tokens start a word (WordPiece marks the others with "##")."""

    def __init__(self, tokenizer: Any, continuation: str) -> None:
        super().__init__(tokenizer)
        self._continuation = continuation

    def tokens(self, text: str) -> Tokens:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return Tokens(
            ids=list(encoding.ids),
            spans=[(int(start), int(end)) for start, end in encoding.offsets],
            starts_word=[not token.startswith(self._continuation) for token in encoding.tokens],
        )


class OnnxEmbedder:
    """all-MiniLM-L6-v2 as exported by `make model`, run by onnxruntime on the CPU."""

    def __init__(self, model_dir: Path, *, threads: int | None = None) -> None:
        """`threads`: session runs at a time, one core each (default: the cores this process may use)."""
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
        self.tokenizer: Tokenizer = _span_tokenizer(spans)
        # What the model's template puts around a text ([CLS] ... [SEP]) and pads with, for
        # chunks that arrive as token ids.
        empty = self._batch_tokenizer.encode("")
        specials = [token for token, real in zip(empty.ids, empty.attention_mask, strict=True) if real]
        self._wrap = (specials[:1], specials[1:]) if len(specials) == special == 2 else None
        self._pad_id = int((self._batch_tokenizer.padding or {}).get("pad_id", 0))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread per run, and as many runs at once as there are cores, instead of one run
        # spread over every core: a multi-threaded run waits for its slowest thread at every
        # operator, so any other work on the machine (the invocation's I/O and database writes,
        # the local stack) stalls all of it. Measured once on 2 cores, the same per-invocation
        # calls took 8.3 s against 8.8 s alone, and 9.9 s against 11.1 s beside a thread busy
        # 30% of the time.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(model_dir / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {node.name for node in self._session.get_inputs()}
        # Shared by every caller, so concurrent invocations of the local driver queue for the
        # same cores instead of multiplying the runs.
        self._runs = ThreadPoolExecutor(max_workers=threads or usable_cores(), thread_name_prefix="onnx")

    def embed_chunks(self, chunks: Sequence[Chunk], *, timeout: float | None = None) -> Vectors:
        """As `embed` of the chunks' texts; a chunk with token ids is not tokenised again."""
        # Batched by text length, as `embed` batches: the int8 model's activations are quantised
        # per batch, so the same batches give exactly `embed`'s vectors.
        return self._embed_items([self._item(chunk) for chunk in chunks], [len(chunk.text) for chunk in chunks])

    def embed_documents(self, documents: Sequence[Sequence[Chunk]], *, timeout: float | None = None) -> list[Vectors]:
        """Each document's chunk vectors, in batches that never mix documents or token lengths.

        The int8 model quantises its activations by the range of the whole batch (padding
        included), so a chunk batched with another document's chunks gets a slightly different
        vector depending on which files happened to share an SQS batch; with a document's own
        chunks of the same length it always gets the same one, and nothing is padded.
        """
        batches: list[tuple[int, list[int]]] = []
        for number, chunks in enumerate(documents):
            order = sorted(range(len(chunks)), key=lambda i: (-chunks[i].token_count, i))
            batch: list[int] = []
            for i in order:
                if batch and (len(batch) == BATCH_SIZE or chunks[batch[0]].token_count != chunks[i].token_count):
                    batches.append((number, batch))
                    batch = []
                batch.append(i)
            if batch:
                batches.append((number, batch))
        results = [np.zeros((len(chunks), self.dimensions), dtype=np.float32) for chunks in documents]
        inputs = [[self._item(documents[number][i]) for i in batch] for number, batch in batches]
        for (number, batch), vectors in zip(batches, self._runs.map(self._embed_batch, inputs), strict=True):
            results[number][batch] = vectors
        return results

    def _item(self, chunk: Chunk) -> str | tuple[int, ...]:
        return chunk.text if chunk.token_ids is None or self._wrap is None else chunk.token_ids

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Vectors:
        # Runs on this CPU and cannot be interrupted: `timeout` only matters to callers that
        # check their own time before calling.
        return self._embed_items(list(texts), [len(text) for text in texts])

    def _embed_items(self, items: list[str | tuple[int, ...]], lengths: list[int]) -> Vectors:
        result = np.zeros((len(items), self.dimensions), dtype=np.float32)
        # Similar lengths together, as sentence-transformers does: less padding per batch.
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        batches = [order[start : start + BATCH_SIZE] for start in range(0, len(order), BATCH_SIZE)]
        vectors = self._runs.map(self._embed_batch, [[items[i] for i in batch] for batch in batches])
        for batch, batch_vectors in zip(batches, vectors, strict=True):
            result[batch] = batch_vectors
        return result

    def _embed_batch(self, items: list[str | tuple[int, ...]]) -> Vectors:
        if all(isinstance(item, str) for item in items):
            encodings = self._batch_tokenizer.encode_batch(items)
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        else:
            ids, mask = self._padded([self._row(item) for item in items])
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in self._inputs})
        return mean_pool(np.asarray(hidden, dtype=np.float32), mask)

    def _row(self, item: str | tuple[int, ...]) -> list[int]:
        """The model's input ids for one text or one chunk's ids, special tokens included."""
        if isinstance(item, str):
            encoding = self._batch_tokenizer.encode(item)
            return [token for token, real in zip(encoding.ids, encoding.attention_mask, strict=True) if real]
        assert self._wrap is not None
        return [*self._wrap[0], *item, *self._wrap[1]]

    def _padded(self, rows: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        ids = np.full((len(rows), max(len(row) for row in rows)), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


def _span_tokenizer(tokenizer: Any) -> Tokenizer:
    model = tokenizer.model
    continuation = getattr(model, "continuing_subword_prefix", None) if type(model).__name__ == "WordPiece" else None
    return _WordPieceTokenizer(tokenizer, continuation) if continuation else _SpanTokenizer(tokenizer)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def mean_pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    """sentence-transformers' mean pooling: the average of the real (unpadded) tokens, normalised."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return normalise(summed / counts)
