"""Installed size of the document-format libraries as the Lambda layer gets them.

Installs the extraction packages from layers/shared/requirements.txt into a scratch folder
the way `sam build` does for the python3.12 x86_64 runtime (manylinux wheels only) and
prints their size next to Lambda's 250 MB limit for a function and its layers, unzipped.

    python benchmarks/extraction_layer_size.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "layers" / "shared" / "requirements.txt"
# The runtime requirements that exist for document extraction (autotag/formats/).
EXTRACTION_PACKAGES = ("pypdf", "defusedxml", "striprtf", "charset-normalizer")
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def main() -> int:
    lines = [line.strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    pins = [line for line in lines if line.split(">")[0].split("<")[0].split("=")[0] in EXTRACTION_PACKAGES]
    with tempfile.TemporaryDirectory(prefix="autotag-layer-") as target:
        subprocess.run(  # noqa: S603 - our own interpreter and pinned requirement lines
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--target", target, "--platform", "manylinux2014_x86_64", "--python-version", "3.12",
                "--only-binary=:all:", *pins,
            ],
            check=True,
        )  # fmt: skip
        size = sum(path.stat().st_size for path in Path(target).rglob("*") if path.is_file())
    print(f"extraction libraries ({', '.join(pins)}): {size / 1e6:.1f} MB installed for python3.12 x86_64")
    print(f"that is {size / LAMBDA_UNZIPPED_LIMIT:.1%} of Lambda's 250 MB unzipped limit for function + layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
