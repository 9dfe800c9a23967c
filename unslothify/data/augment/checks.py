"""Text checks shared by the augmentation kinds: names, numbers, normalised questions, and the checks every
generated variant must pass before it is kept (rejects are counted by kind and reason for the report)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..items import Item

WORD = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*")
# Words that are capitalised at the start of a sentence or question without being names.
FUNCTION_WORDS = set("""
a an the this that these those i you he she it we they my your his her its our their who whom whose what which
when where why how is are was were be been do does did can could will would should shall may might must has
have had tell name give list describe explain in on at of for from to by with about into as if and or but so
not no yes please quick question do you know i'd i'm what's who's where's which's there here there's it's
according during after before while since because although though ok okay also then now again roughly nobody
some many most all every each both either neither one two three four five six seven eight nine ten hi hello
""".split())


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?:;])\s+", text.strip()) if s]


def names(text: str) -> set[str]:
    """Capitalised words that are not merely sentence-initial function words, lowercased."""
    out = set()
    for sent in sentences(text):
        for i, m in enumerate(WORD.finditer(sent)):
            w = m.group(0)
            if not w[0].isupper():
                continue
            if w.lower().strip("'’") in FUNCTION_WORDS:
                continue
            if i == 0 and w.lower() in COMMON_SENTENCE_STARTS:
                continue
            out.add(w.lower().strip("'’").removesuffix("'s").removesuffix("’s"))
    return out


COMMON_SENTENCE_STARTS = set("""
any idea exactly roughly number count please quick could would
settlers people villagers runners astronomers boats climbing there traditional yes no double soak mix fry
brown roll chill serve add use make cook bake keep store let put stir heat season taste most many
""".split())


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text, re.IGNORECASE) is not None


def norm_question(text: str) -> str:
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in text).split())


def user_text(item: Item) -> str | None:
    if item.messages is None:
        return None
    users = [m["content"] for m in item.messages if m["role"] == "user"]
    return users[-1] if users else None


def answer_text(item: Item) -> str | None:
    if item.messages is None:
        return None
    return item.messages[-1]["content"]


def single_turn(item: Item) -> bool:
    if item.messages is None:
        return False
    body = [m for m in item.messages if m["role"] != "system"]
    return len(body) == 2


def system_messages(item: Item) -> list[dict]:
    return [m for m in item.messages if m["role"] == "system"] if item.messages else []


@dataclass
class Rejects:
    counts: dict = field(default_factory=dict)  # kind -> reason -> n
    examples: dict = field(default_factory=dict)  # kind -> [(reason, text)] (a few, for the report)

    def add(self, kind: str, reason: str, text: str = ""):
        self.counts.setdefault(kind, {})
        self.counts[kind][reason] = self.counts[kind].get(reason, 0) + 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < 10:
            ex.append({"reason": reason, "text": text[:200]})

    def total(self, kind: str | None = None) -> int:
        kinds = [kind] if kind else list(self.counts)
        return sum(sum(self.counts.get(k, {}).values()) for k in kinds)


def check_question(variant: str, original: str, existing: set[str]) -> str | None:
    """Why a reworded question is rejected, or None when it passes.

    Rejected: empty or not a question-like line; a copy (after normalising case and punctuation) of the
    original, of any question in the data or of a variant already kept; a name or number of the original
    question missing; a name or number added that the original does not have; far longer than the original."""
    v = (variant or "").strip()
    if not v or not WORD.search(v):
        return "empty"
    if "\n" in v:
        return "multiline"
    n = norm_question(v)
    if n == norm_question(original) or n in existing:
        return "copy"
    if not (v.endswith("?") or re.match(r"^(tell|name|give|list|describe|explain|identify|say|remind|help|please|"
                                         r"i'd like|i want|i was wondering|i'm curious|i forget|could you|can you)\b",
                                         v, re.IGNORECASE)):
        return "not_a_question"  # e.g. a small generator answering instead of rewording
    if len(v) > 3 * len(original) + 40:
        return "too_long"
    lost_names = [w for w in names(original) if not has_word(v, w)]
    if lost_names:
        return "names"
    if numbers(original) - numbers(v):
        return "numbers"
    if numbers(v) - numbers(original):
        return "numbers_added"
    if names(v) - names(original):
        return "names_added"
    return None


def check_answer_text(text: str, source: str, must_contain: tuple[str, ...] = (),
                      keep_numbers: str = "") -> str | None:
    """Why a generated statement / reverse answer is rejected: empty; a required name or entity missing; a
    number of `keep_numbers` missing; a number that `source` (the question and answer it came from) lacks."""
    t = (text or "").strip()
    if not t or not WORD.search(t):
        return "empty"
    for w in must_contain:
        if not has_word(t, w):
            return "names"
    if numbers(keep_numbers) - numbers(t):
        return "numbers"
    if numbers(t) - numbers(source) - numbers(" ".join(must_contain)):
        return "numbers_added"
    return None
