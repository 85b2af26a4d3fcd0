"""Synthetic documents and the upload plan of `make chaos`, all from one seed.

The documents are built from small word lists of a few kinds (no corpus text is copied into
the repository), so a workspace has topics for the clustering to find. The plan says what
happens to every key (uploaded once, twice, overwritten, deleted, bad) and in which order,
and from it what the bucket must hold at the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


TOPICS: dict[str, tuple[str, ...]] = {
    "finance": _words(
        "invoice payment account balance ledger budget expense revenue audit receipt tax credit debit"
        " quarter forecast supplier refund cash statement reconciliation payroll margin cost vendor"
    ),
    "legal": _words(
        "contract clause party agreement liability indemnity termination notice court law jurisdiction"
        " warranty breach licence signature tenant lease arbitration confidentiality obligation counsel"
        " dispute statute remedy"
    ),
    "engineering": _words(
        "server database latency deployment cache queue kernel compiler thread memory network protocol"
        " index replica cluster container pipeline throughput outage schema migration endpoint timeout"
        " logging"
    ),
    "people": _words(
        "employee manager holiday leave benefit salary recruitment interview onboarding training appraisal"
        " wellbeing pension promotion team policy grievance mentor induction absence overtime feedback"
        " career handbook"
    ),
    "travel": _words(
        "flight hotel passport airport itinerary luggage visa booking train journey destination reservation"
        " ticket departure arrival museum beach mountain guide tour ferry embassy currency customs"
    ),
}

FILLER = _words(
    "the and with for this that from will should about after before each every other which their under"
    " between during please review note update period following current first second final report"
    " request"
)

# Keys a drive gets from its users: spaces, '+', non-ASCII letters.
ODD_NAMES = ("plan + budget", "Résumé final", "notes 2026 (copy)", "café menu", "a+b=c", "über alles")


class Fate(StrEnum):
    """What the burst does to one key."""

    PLAIN = "plain"
    DUPLICATED = "duplicated"  # the same bytes uploaded twice
    OVERWRITTEN_SOON = "overwritten soon"  # new content right after the first upload (in flight)
    OVERWRITTEN_LATER = "overwritten later"
    DELETED_SOON = "deleted soon"  # deleted right after the upload, usually before it is processed
    DELETED_LATER = "deleted later"
    BAD = "bad"


class Bad(StrEnum):
    """Bad objects; all but invalid UTF-8 must end skipped with a reason."""

    EMPTY = "empty"
    GARBAGE = "binary garbage named .txt"
    INVALID_UTF8 = "invalid UTF-8"  # the extractor decides (a legacy-encoded text is embedded)
    OVERSIZE = "over the size limit"
    IMAGE = "unsupported type (PNG)"


# Bodies of SQS messages no handler can parse; they must end parked in the ingest DLQ.
BAD_EVENTS: tuple[str, ...] = (
    "this is not JSON",
    '{"version": "0", "source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket"',
    '{"version": "0", "source": "aws.s3", "detail-type": "Object Restored",'
    ' "detail": {"bucket": {"name": "b"}, "object": {"key": "w/k.txt"}}}',
    "[1, 2, 3]",
)


@dataclass(frozen=True)
class Op:
    """One operation of the burst: put bytes at a key, delete a key, or send a raw SQS body."""

    action: str  # "put", "delete" or "event"
    key: str
    data: bytes = b""


@dataclass
class Plan:
    ops: list[Op]
    final: dict[str, bytes]  # what the bucket holds at the end, key -> bytes
    fates: dict[str, Fate]
    bad: dict[str, Bad]  # bad objects still in the bucket at the end
    deleted: set[str]
    bad_events: list[str]
    puts: int = field(init=False)

    def __post_init__(self) -> None:
        self.puts = sum(1 for op in self.ops if op.action == "put")


def document(rng: random.Random, topic: str, words: int) -> str:
    """A text of about `words` words: a title line and paragraphs mixing the topic's words with filler."""
    vocabulary = TOPICS[topic]
    title = " ".join(rng.choice(vocabulary).capitalize() for _ in range(3))
    sentences = []
    count = 0
    while count < words:
        length = rng.randint(8, 18)
        sentence = [rng.choice(vocabulary) if rng.random() < 0.55 else rng.choice(FILLER) for _ in range(length)]
        sentences.append(" ".join(sentence).capitalize() + ".")
        count += length
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    return title + "\n\n" + "\n\n".join(paragraphs) + "\n"


def bad_object(kind: Bad, rng: random.Random, max_object_bytes: int) -> tuple[str, bytes]:
    """(file name suffix, bytes) of one bad object."""
    if kind is Bad.EMPTY:
        return ".txt", b""
    if kind is Bad.GARBAGE:
        return ".txt", rng.randbytes(rng.randint(512, 4096))
    if kind is Bad.INVALID_UTF8:
        text = document(rng, rng.choice(sorted(TOPICS)), 120).encode("utf-8")
        return ".txt", text.replace(b"e", b"\xe9\xff", 5)
    if kind is Bad.OVERSIZE:
        return ".txt", document(rng, "finance", max_object_bytes // 5).encode("utf-8")[: max_object_bytes + 4096]
    return ".png", b"\x89PNG\r\n\x1a\n" + rng.randbytes(2048)


def make_plan(uploads: int, workspaces: int, seed: int, max_object_bytes: int) -> Plan:
    """The burst: `uploads` keys across `workspaces` workspaces, each with its fate, in upload order."""
    rng = random.Random(seed)
    timeline: list[tuple[float, Op]] = []
    final: dict[str, bytes] = {}
    fates: dict[str, Fate] = {}
    bad: dict[str, Bad] = {}
    deleted: set[str] = set()
    bad_kinds = list(Bad)
    topics = sorted(TOPICS)
    for index in range(uploads):
        workspace = f"ws{index % workspaces}"
        topic = topics[rng.randrange(len(topics))]
        name = rng.choice(ODD_NAMES) if rng.random() < 0.05 else f"{topic}-note"
        fate = _fate(rng)
        at = float(index)
        if fate is Fate.BAD:
            kind = bad_kinds[len(bad) % len(bad_kinds)]
            suffix, data = bad_object(kind, rng, max_object_bytes)
            key = f"{workspace}/inbox/{name} {index:05d}{suffix}"
            bad[key] = kind
        else:
            key = f"{workspace}/{topic}/{name} {index:05d}.txt"
            data = document(rng, topic, rng.choice((60, 150, 300, 300, 600, 1500))).encode("utf-8")
        fates[key] = fate
        timeline.append((at, Op("put", key, data)))
        final[key] = data
        later = at + rng.uniform(40, 400)
        if fate is Fate.DUPLICATED:
            timeline.append((at + rng.choice((0.1, rng.uniform(5, 200))), Op("put", key, data)))
        elif fate in (Fate.OVERWRITTEN_SOON, Fate.OVERWRITTEN_LATER):
            other = topics[rng.randrange(len(topics))]
            new = document(rng, other, rng.choice((100, 300))).encode("utf-8")
            timeline.append((at + 0.1 if fate is Fate.OVERWRITTEN_SOON else later, Op("put", key, new)))
            final[key] = new
        elif fate in (Fate.DELETED_SOON, Fate.DELETED_LATER):
            timeline.append((at + 0.1 if fate is Fate.DELETED_SOON else later, Op("delete", key)))
            del final[key]
            deleted.add(key)
    bad_events = [BAD_EVENTS[i % len(BAD_EVENTS)] for i in range(max(len(BAD_EVENTS), uploads // 250))]
    for body in bad_events:
        timeline.append((rng.uniform(0, uploads), Op("event", "", body.encode("utf-8"))))
    timeline.sort(key=lambda item: item[0])
    bad = {key: kind for key, kind in bad.items() if key in final}
    return Plan([op for _, op in timeline], final, fates, bad, deleted, bad_events)


def _fate(rng: random.Random) -> Fate:
    point = rng.random()
    for fate, chance in (
        (Fate.BAD, 0.06),
        (Fate.DUPLICATED, 0.05),
        (Fate.OVERWRITTEN_SOON, 0.02),
        (Fate.OVERWRITTEN_LATER, 0.04),
        (Fate.DELETED_SOON, 0.03),
        (Fate.DELETED_LATER, 0.03),
    ):
        point -= chance
        if point < 0:
            return fate
    return Fate.PLAIN
