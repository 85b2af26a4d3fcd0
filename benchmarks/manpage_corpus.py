"""A second labelled corpus, built offline from the manual pages installed on this machine.

BBC News has five balanced classes of short articles; this corpus checks that the clustering
generalises: more classes (one per software project or manual family), very unequal class
sizes, and long technical documents. Each class is a project whose pages share a vocabulary
a person would sort by (git, OpenSSL, LLVM, Linux system calls, the C library, ...); the
classes and their rules are fixed here, not tuned on results.

    python benchmarks/manpage_corpus.py out/corpora/manpages   # writes <out>/<class>/<page>.txt

Pages are rendered to text with a small roff stripper (no groff run per page); the text is
the page's own words, which is all the embedding sees.
"""

from __future__ import annotations

import gzip
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

from corpus_vectors import build_corpus_main

MAN_ROOT = Path("/usr/share/man")
# The most pages a class keeps (a random sample of its pages): the biggest classes then stay
# about ten times the smallest, and embedding the corpus stays a few minutes on a CPU.
MAX_PER_CLASS = 150
MIN_PER_CLASS = 20
# Long pages are cut here: enough text for several chunks, bounded embedding time.
MAX_CHARS = 6000

Rule = Callable[[str, str], bool]  # (section directory, page file name) -> belongs to the class


def _prefix(*prefixes: str, sections: tuple[str, ...] = ("man1",)) -> Rule:
    return lambda section, name: section in sections and name.startswith(prefixes)


def _suffix(*suffixes: str) -> Rule:
    return lambda _section, name: name.removesuffix(".gz").endswith(suffixes)


CLASSES: dict[str, Rule] = {
    "gcloud": _prefix("gcloud_", "gcloud."),
    "git": _prefix("git-", "git.", "gitk", sections=("man1", "man5", "man7")),
    "llvm": _prefix("llvm-", "clang", "lld", "opt.", "llc."),
    "openssl": _suffix(".1ssl", ".5ssl", ".7ssl"),
    "perf": _prefix("perf-", "perf."),
    "postgresql": _prefix("pg_", "psql", "createdb", "dropdb", "createuser", "dropuser", "vacuumdb", "reindexdb"),
    "dpkg": _prefix("dpkg", "apt", "debconf", sections=("man1", "man5", "man8")),
    "systemd": _prefix("systemd", "journalctl", "loginctl", "hostnamectl", "busctl", sections=("man1", "man5", "man8")),
    "syscalls": lambda section, name: section == "man2",
    "libc": lambda section, name: section == "man3" and name.removesuffix(".gz").endswith(".3"),
    "perl": _suffix(".3perl", ".3pm"),
    "tcl": _suffix(".3tcl", ".3t", ".n"),
}

_ESCAPE = re.compile(r"\\(f[BIRPC]|f\(..|f\[[^\]]*\]|\(..|\[[^\]]*\]|[&|^e\-.' ]|s[-+]?\d|\*.)")
_MACRO = re.compile(r"^\.\s*([A-Za-z]{1,3})\b\s*(.*)$")
# Macros whose arguments are words of the page (headings, fonts); the rest are layout.
_TEXT_MACROS = frozenset({"SH", "SS", "B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "TP", "IP", "Nm", "Nd"})


def page_text(raw: str) -> str:
    lines = []
    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        match = _MACRO.match(line)
        if match:
            if match.group(1) not in _TEXT_MACROS:
                continue
            line = match.group(2).replace('"', "")
        elif line.startswith((".", "'")):
            continue
        lines.append(_ESCAPE.sub(" ", line.replace("\\-", "-")).replace("\\", ""))
    text = re.sub(r"[ \t]+", " ", "\n".join(lines))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def read_page(path: Path) -> str | None:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    raw = data.decode("utf-8", errors="replace")
    if raw.lstrip().startswith(".so "):
        return None  # an alias of another page
    text = page_text(raw)
    return text[:MAX_CHARS] if len(text.split()) >= 30 else None


def build(out: Path, *, man_root: Path = MAN_ROOT) -> dict[str, int]:
    pages = sorted(p for p in man_root.glob("man[0-9]/*") if p.is_file())
    sizes: dict[str, int] = {}
    rng = random.Random(0)
    for label, rule in CLASSES.items():
        members = [p for p in pages if rule(p.parent.name, p.name)]
        rng.shuffle(members)
        kept = 0
        folder = out / label
        for page in members:
            if kept == MAX_PER_CLASS:
                break
            text = read_page(page)
            if text is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{page.name.removesuffix('.gz')}.txt").write_text(text + "\n", encoding="utf-8")
            kept += 1
        if kept < MIN_PER_CLASS:
            # Too few pages on this machine for a class a person would notice; leave it out.
            for written in folder.glob("*.txt"):
                written.unlink()
            continue
        sizes[label] = kept
    return sizes


def main() -> int:
    status: int = build_corpus_main(__doc__ or "", build, "pages")
    return status


if __name__ == "__main__":
    sys.exit(main())
