"""Installed size of the document-format libraries as the Lambda layer gets them.

Installs the extraction packages from layers/shared/requirements.txt into a scratch folder
the way `sam build` does for the python3.12 x86_64 runtime (manylinux wheels only, no .pyc
files) and prints their size next to Lambda's 250 MB limit for a function and its layers,
unzipped. With --whole-layer it measures every requirement of the layer as well.

    python benchmarks/extraction_layer_size.py [--whole-layer]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "layers" / "shared" / "requirements.txt"
# The runtime requirements that exist for document extraction (autotag/formats/).
EXTRACTION_PACKAGES = ("pypdf", "defusedxml", "striprtf", "charset-normalizer")
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whole-layer", action="store_true", help="also measure every requirement of the layer")
    args = parser.parse_args()
    lines = [line.strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    pins = [line for line in requirements if _name(line) in EXTRACTION_PACKAGES]
    size = installed_size(pins)
    print(f"extraction libraries ({', '.join(pins)}): {size / 1e6:.1f} MB installed for python3.12 x86_64")
    print(f"= {size / LAMBDA_UNZIPPED_LIMIT:.1%} of Lambda's 250 MB unzipped limit for function + layers")
    if args.whole_layer:
        whole = installed_size(requirements)
        share = whole / LAMBDA_UNZIPPED_LIMIT
        print(f"whole SharedLayer requirements: {whole / 1e6:.1f} MB installed ({share:.1%} of the limit)")
    return 0


def _name(requirement: str) -> str:
    for separator in "<>=![; ":
        requirement = requirement.split(separator)[0]
    return requirement.lower()


def installed_size(requirements: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="autotag-layer-") as target:
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                "--target", target, *platforms, "--python-version", "3.12", "--only-binary=:all:", *requirements,
            ],
            check=True,
        )  # fmt: skip
        return sum(path.stat().st_size for path in Path(target).rglob("*") if path.is_file())


if __name__ == "__main__":
    sys.exit(main())
