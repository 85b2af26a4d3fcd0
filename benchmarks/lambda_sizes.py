"""Unzipped size of every function with its layers in a `sam build` output, against Lambda's limit.

Run after `sam build` (`make build` does both). Exits non-zero when a function is over the limit,
so CI fails before a deploy would.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from autotag.local.template_rules import load_template

# Lambda's quota for a function's deployment package plus all its layers, unzipped.
LIMIT_BYTES = 250 * 1024 * 1024
_FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}


def tree_size(path: Path) -> int:
    """Bytes of every file under `path` (apparent size, as Lambda counts it)."""
    total = 0
    for folder, _, files in os.walk(path):
        total += sum((Path(folder) / name).lstat().st_size for name in files)
    return total


def layer_ids(template: dict[str, Any], properties: dict[str, Any]) -> list[str]:
    """Every layer the function may carry: both branches of a conditional layer count."""
    layers = template.get("Globals", {}).get("Function", {}).get("Layers", []) + properties.get("Layers", [])
    ids: list[str] = []
    for layer in layers:
        condition = layer.get("Fn::If", layer.get("If")) if isinstance(layer, dict) else None
        if condition is not None:
            _, *branches = condition
            layers.extend(branches)
        elif isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in template["Resources"]:
            ids.append(layer["Ref"])
    return ids


def function_sizes(build_dir: Path) -> dict[str, dict[str, int]]:
    """{function: {part: bytes}} where the parts are its code folder and each of its layers."""
    template = load_template(build_dir / "template.yaml")
    resources = template["Resources"]
    sizes: dict[str, dict[str, int]] = {}
    for name, resource in resources.items():
        if resource.get("Type") not in _FUNCTION_TYPES:
            continue
        properties = resource["Properties"]
        parts = {"code": tree_size(build_dir / properties["CodeUri"])}
        for layer in layer_ids(template, properties):
            parts[layer] = tree_size(build_dir / resources[layer]["Properties"]["ContentUri"])
        sizes[name] = parts
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("build_dir", nargs="?", type=Path, default=Path(".aws-sam/build"))
    args = parser.parse_args(argv)
    if not (args.build_dir / "template.yaml").is_file():
        print(f"{args.build_dir}/template.yaml not found: run `sam build` first", file=sys.stderr)
        return 2
    over = []
    print(f"{'function':<18} {'unzipped MB':>11} {'of 250 MB':>9}  parts")
    for name, parts in sorted(function_sizes(args.build_dir).items()):
        total = sum(parts.values())
        detail = ", ".join(f"{part} {size / 2**20:.1f}" for part, size in parts.items())
        print(f"{name:<18} {total / 2**20:>11.1f} {total / LIMIT_BYTES:>9.0%}  {detail}")
        if total > LIMIT_BYTES:
            over.append(name)
    if over:
        print(f"over Lambda's 250 MB unzipped limit: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
