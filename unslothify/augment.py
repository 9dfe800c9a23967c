"""Augmentation between prepare and train: teach facts, not phrasings.

Users bring one phrasing per fact and then ask in their own words. A model fine-tuned on one phrasing
stores the fact where only that phrasing reaches it (Allen-Zhu & Li, Physics of LMs 3.1; Ovadia et al.
2023), and one direction only (Berglund et al., the Reversal Curse). So the training split gets extra
records, written to a file beside the user's own (domain.jsonl -> domain.augmented.jsonl; the user's file
is never changed):

  rephrase   reworded questions, same answer: by rules (deterministic, no model), by the model in use
             ('model') or by a generator model the user names (hub id or folder)
  statement  the answer as a standalone statement naming its subject, plain text with loss on all of it
  reverse    where the answer is a name or entity (or the question asks what a term means), a question
             the other way round ("Who is Edda Lindqvist?")
  replay     the base model's own answers to general prompts (eval/general_prompts.jsonl), generated
             before training, so the tuned model keeps what it knew

Every record names its kind and its source line (the line of the user's file it came from; for replay,
the line of the prompts file, with "source" naming that file). Only the training split is augmented.
Generated variants are checked (not empty, not a copy of an existing question, names and numbers kept);
rejects are dropped and counted in the report (domain.augmented.report.json beside the file, and a copy
in the run folder's augment/report.json).

    added = augment(cfg, prepared)                  # writes the file, returns the added Items
    items = training_items(cfg, prepared)           # what training uses (regenerates a stale file)
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import DataError, Item, detect_format, normalise, read_jsonl
from .fsutil import atomic_write_json, atomic_write_text, sha256_file

KINDS = ("rephrase", "statement", "reverse", "replay")
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPLAY_PROMPTS = "eval/general_prompts.jsonl"


# ----------------------------------------------------------------------------------------------------------
# Paths and provenance
# ----------------------------------------------------------------------------------------------------------

def augmented_path(cfg) -> Path:
    """domain.jsonl -> domain.augmented.jsonl, beside the user's file."""
    data = Path(cfg.data)
    stem = data.name[:-len(".jsonl")] if data.name.endswith(".jsonl") else data.stem
    return data.with_name(stem + ".augmented.jsonl")


def report_path(cfg) -> Path:
    p = augmented_path(cfg)
    return p.with_name(p.name[:-len(".jsonl")] + ".report.json")


def replay_prompts_path(cfg) -> Path:
    name = getattr(cfg.augment, "replay_prompts", DEFAULT_REPLAY_PROMPTS) or DEFAULT_REPLAY_PROMPTS
    p = Path(name)
    if p.exists() or p.is_absolute():
        return p
    return REPO_ROOT / name if (REPO_ROOT / name).exists() else p


def _split_hash(items: list[Item]) -> str:
    blob = json.dumps([i.to_record() for i in items], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _inputs(cfg, prepared) -> dict:
    """What the augmented file depends on; a change in any of these makes it stale."""
    from .config import resolve_model_name

    a = cfg.augment
    inputs = {"train_sha256": _split_hash(prepared.train), "validation_sha256": _split_hash(prepared.validation),
              "seed": cfg.seed, "augment": {k: v for k, v in asdict(a).items() if k != "enabled"}}
    if a.replay or (a.rephrasings and a.rephrase_with != "rules"):
        inputs["model"] = resolve_model_name(cfg.model)[0]
        inputs["max_new_tokens"] = cfg.max_new_tokens
        inputs["system_prompt"] = cfg.system_prompt
    if a.replay:
        p = replay_prompts_path(cfg)
        inputs["replay_prompts_sha256"] = sha256_file(p) if p.exists() else None
        g = Path(cfg.general_questions) if cfg.general_questions else None
        inputs["general_questions_sha256"] = sha256_file(g) if g and g.exists() else None
    return inputs


# ----------------------------------------------------------------------------------------------------------
# Text helpers: names, numbers, normalised questions
# ----------------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*")
# Words that are capitalised at the start of a sentence or question without being names.
_FUNCTION = set("""
a an the this that these those i you he she it we they my your his her its our their who whom whose what which
when where why how is are was were be been do does did can could will would should shall may might must has
have had tell name give list describe explain in on at of for from to by with about into as if and or but so
not no yes please quick question do you know i'd i'm what's who's where's which's there here there's it's
according during after before while since because although though ok okay also then now again roughly nobody
some many most all every each both either neither one two three four five six seven eight nine ten hi hello
""".split())


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?:;])\s+", text.strip()) if s]


def names(text: str) -> set[str]:
    """Capitalised words that are not merely sentence-initial function words, lowercased."""
    out = set()
    for sent in _sentences(text):
        for i, m in enumerate(_WORD.finditer(sent)):
            w = m.group(0)
            if not w[0].isupper():
                continue
            if w.lower().strip("'’") in _FUNCTION:
                continue
            if i == 0 and w.lower() in _COMMON_SENTENCE_STARTS:
                continue
            out.add(w.lower().strip("'’").removesuffix("'s").removesuffix("’s"))
    return out


_COMMON_SENTENCE_STARTS = set("""
any idea exactly roughly number count please quick could would
settlers people villagers runners astronomers boats climbing there traditional yes no double soak mix fry
brown roll chill serve add use make cook bake keep store let put stir heat season taste most many
""".split())


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text, re.IGNORECASE) is not None


def norm_question(text: str) -> str:
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in text).split())


def _user(item: Item) -> str | None:
    if item.messages is None:
        return None
    users = [m["content"] for m in item.messages if m["role"] == "user"]
    return users[-1] if users else None


def _answer(item: Item) -> str | None:
    if item.messages is None:
        return None
    return item.messages[-1]["content"]


def _single_turn(item: Item) -> bool:
    if item.messages is None:
        return False
    body = [m for m in item.messages if m["role"] != "system"]
    return len(body) == 2


def _system(item: Item) -> list[dict]:
    return [m for m in item.messages if m["role"] == "system"] if item.messages else []


# ----------------------------------------------------------------------------------------------------------
# Checks on generated variants
# ----------------------------------------------------------------------------------------------------------

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
    if not v or not _WORD.search(v):
        return "empty"
    if "\n" in v:
        return "multiline"
    n = norm_question(v)
    if n == norm_question(original) or n in existing:
        return "copy"
    if not (v.endswith("?") or re.match(r"^(tell|name|give|list|describe|explain|please|i'd like|i want|i was "
                                         r"wondering|could you|can you)\b", v, re.IGNORECASE)):
        return "not_a_question"  # e.g. a small generator answering instead of rewording
    if len(v) > 3 * len(original) + 40:
        return "too_long"
    lost_names = [w for w in names(original) if not _has_word(v, w)]
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
    if not t or not _WORD.search(t):
        return "empty"
    for w in must_contain:
        if not _has_word(t, w):
            return "names"
    if numbers(keep_numbers) - numbers(t):
        return "numbers"
    if numbers(t) - numbers(source) - numbers(" ".join(must_contain)):
        return "numbers_added"
    return None


# ----------------------------------------------------------------------------------------------------------
# Rule-based rewording (deterministic, no model)
# ----------------------------------------------------------------------------------------------------------

_AUX = ("is", "are", "was", "were", "does", "do", "did", "has", "have", "had", "can", "will", "would", "should")
_IRREGULAR_PAST = {
    "keep": "kept", "build": "built", "write": "wrote", "make": "made", "hold": "held", "find": "found",
    "give": "gave", "take": "took", "bring": "brought", "sell": "sold", "see": "saw", "eat": "ate",
    "run": "ran", "begin": "began", "become": "became", "come": "came", "get": "got", "go": "went",
    "know": "knew", "lead": "led", "ring": "rang", "rise": "rose", "speak": "spoke", "tell": "told",
    "think": "thought", "wear": "wore", "win": "won", "hang": "hung", "fly": "flew", "grow": "grew",
    "teach": "taught", "pay": "paid", "say": "said", "leave": "left", "feel": "felt", "meet": "met",
    "spend": "spent", "stand": "stood", "draw": "drew", "choose": "chose", "put": "put", "set": "set",
}
_IRREGULAR_PARTICIPLE = {
    "keep": "kept", "build": "built", "write": "written", "make": "made", "hold": "held", "find": "found",
    "give": "given", "take": "taken", "bring": "brought", "sell": "sold", "see": "seen", "eat": "eaten",
    "know": "known", "lead": "led", "speak": "spoken", "tell": "told", "wear": "worn", "win": "won",
    "draw": "drawn", "choose": "chosen", "grow": "grown", "teach": "taught", "pay": "paid", "fly": "flown",
    "begin": "begun", "ring": "rung", "hang": "hung", "put": "put", "set": "set",
}
_PARTICIPLE_TO_BASE = {v: k for k, v in _IRREGULAR_PARTICIPLE.items()}
_PAST_TO_BASE = {v: k for k, v in _IRREGULAR_PAST.items()}

# Whole-phrase swaps at the start of a question (case-insensitive), each a list of alternatives.
_LEAD_SWAPS = [
    (r"^who\b", ["Which person", "Who exactly"]),
    (r"^which person\b", ["Who"]),
    (r"^how many (\w+) (.*)\?$", [r"What number of \1 \2?", r"How many \1 \2, in all?"]),
    (r"^when was\b", ["In what year was", "When exactly was"]),
    (r"^when did\b", ["In what year did", "At what point did"]),
    (r"^when\b", ["At what time"]),
    (r"^in what year\b", ["When", "In which year"]),
    (r"^in which year\b", ["When", "In what year"]),
    (r"^what is the name of\b", ["What is", "What's the name of", "What name does one give to"]),
    (r"^what was the name of\b", ["What was", "What name was given to"]),
    (r"^what is\b", ["What's", "What exactly is"]),
    (r"^what's\b", ["What is"]),
    (r"^what are\b", ["What're", "What exactly are"]),
    (r"^which\b", ["What"]),
    (r"^what (?!(?:is|are|was|were|do|does|did|has|have|can|will|would|should)\b)(?=[a-z]+ (?:is|are|was|were|do|does|did|has|have|[a-z]+ed|[a-z]+s [a-z])\b)", ["Which "]),
    (r"^where\b", ["In what place", "Where exactly"]),
    (r"^how long is (.*)\?$", [r"What length is \1?", r"What is the length of \1?"]),
    (r"^how much does (.*) weigh\?$", [r"What does \1 weigh?", r"What is the weight of \1?"]),
    (r"^why\b", ["For what reason"]),
]
# Word swaps anywhere (lowercase words only, so names are never touched).
_WORD_SWAPS = {
    "invented": ["created", "came up with"], "founded": ["established", "set up"],
    "built": ["constructed", "made"], "wrote": ["authored", "penned"], "designed": ["planned", "drew up"],
    "discovered": ["found", "first found"], "created": ["made", "invented"], "made": ["produced", "created"],
    "started": ["founded", "began"], "famous": ["well known", "known"], "known": ["famous", "noted"],
    "official": ["formal", "recognised"], "traditional": ["customary", "classic"],
    "usually": ["typically", "normally"], "often": ["frequently", "commonly"], "main": ["principal", "chief"],
    "big": ["large"], "large": ["big"], "small": ["little"], "little": ["small"],
    "highest": ["tallest", "loftiest"], "tallest": ["highest"], "name": ["title"], "called": ["named"],
    "named": ["called"], "people": ["folk", "residents"], "village": ["settlement"],
    "leads": ["runs", "heads"],
    "use": ["employ"], "uses": ["employs"], "gives": ["lends"], "give": ["lend"], "symbol": ["emblem"],
    "emblem": ["symbol"], "colour": ["color"], "color": ["colour"], "number": ["count"], "count": ["number"],
    "buy": ["purchase"], "represents": ["stands for", "symbolises"],
    "responsible": ["in charge"], "celebrate": ["mark"], "typical": ["usual", "standard"],
    "classic": ["traditional"], "served": ["eaten"], "serve": ["offer"], "cook": ["prepare"],
    "recipe": ["method"], "dish": ["meal"], "difference": ["distinction"], "why": ["for what reason"],
    "need": ["require"], "get": ["obtain"],
}
_PREFIXES = [
    "Tell me, {q}", "Do you know {e}?", "Can you tell me {e}?", "I'd like to know {e}.", "Quick question: {q}",
    "{q} Please answer briefly.", "Could you explain {e}?", "I was wondering {e}.", "Please tell me {e}.",
    "Any idea {e}?",
]


def _inflect_3sg(verb: str) -> str:
    if verb in ("have", "do", "be", "go"):
        return {"have": "has", "do": "does", "be": "is", "go": "goes"}[verb]
    if re.search(r"(s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str) -> str:
    if verb in _IRREGULAR_PAST:
        return _IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ied"
    return verb + "ed"


def _participle(verb: str) -> str:
    return _IRREGULAR_PARTICIPLE.get(verb, _past(verb))


def _base_of_past(word: str) -> str | None:
    """'invented' -> 'invent', 'wrote' -> 'write', 'kept' -> 'keep' (None when not a past form we know)."""
    w = word.lower()
    if w in _PAST_TO_BASE:
        return _PAST_TO_BASE[w]
    if w in _PARTICIPLE_TO_BASE:
        return _PARTICIPLE_TO_BASE[w]
    if w.endswith("ied") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ed") and len(w) > 4:
        stem = w[:-2]
        if stem.endswith(("at", "ut", "ir", "ov", "ag", "eas", "ar", "rv", "uc", "rc", "dg", "iz", "is", "ag")):
            return stem + "e"
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "ls":
            return stem[:-1]
        return stem
    return None


def _looks_participle(word: str) -> bool:
    w = word.lower()
    return w in _PARTICIPLE_TO_BASE or (w.endswith("ed") and len(w) > 3 and w not in {"red", "bed", "need",
                                                                                         "seed", "speed", "shed"})


_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "its", "their", "his", "her", "our", "your",
                "my", "you", "people", "they", "we", "i", "he", "she", "it"}
_ADVERBS = {"first", "ever", "still", "usually", "traditionally", "really", "actually", "also", "often", "always",
            "never", "well", "best", "most", "originally", "typically", "normally", "mainly"}
_RELATIVE = {"that", "who", "which", "where", "when", "whose"}
# Base-form verbs that follow do/does/did in questions ("Where does the river END?").
_VERBS = set("""
end empty flow run use call light wear make take eat serve mean have come go get give keep hold open close begin start
need cost weigh contain include live speak say cook fry bake add taste look sell buy pay sit stand reach do play win
lead rule grow become show appear represent mark celebrate know think want like prefer drink fly sail carry build
write invent found discover design create produce ship export import hang ring chair run cover cross hide store
grind mix stir brown boil simmer roast fill shape roll soak thicken season freeze reheat thaw serve garnish pour
describe differ compare belong originate arrive leave return travel die marry vote bring send stay remain celebrate
""".split())


def _wh_length(words: list[str]) -> int:
    first = words[0].lower()
    if first == "how" and len(words) > 1 and words[1].lower() in ("many", "much", "long", "old", "far", "big", "tall",
                                                                   "heavy", "often", "large", "deep", "high", "wide"):
        i = 2
    elif first in ("which", "what", "whose", "how"):
        i = 1
    else:
        return 1
    if first in ("which", "what", "whose") or words[1].lower() in ("many", "much"):
        j = i
        while j < len(words) and j < i + 3 and words[j].lower() not in _AUX and words[j][0].islower() \
                and words[j].lower() not in _FUNCTION | _DETERMINERS:
            j += 1
        if j < len(words) and words[j].lower() in _AUX:
            return j
        return i if first != "how" else j
    return i


def _embedded(q: str) -> str | None:
    """The question as an embedded clause ('who keeps the light', 'when Dunmereth was founded'), or None
    when the rules cannot rearrange it safely."""
    body = q.strip().rstrip("?").strip()
    words = body.split()
    if len(words) < 2 or "," in body or ";" in body or re.search(
            r"\b(and|or)\s+(who|what|which|when|where|why|how|is|are|do|does|can|should)\b", body, re.IGNORECASE):
        return None
    first = words[0].lower()
    if first not in {"who", "what", "which", "when", "where", "why", "how", "whose", "whom"}:
        return None
    i = _wh_length(words)
    head = " ".join([first] + words[1:i])
    subject_wh = first in ("who", "what", "which", "whose") or (first == "how" and words[1].lower() in ("many", "much")
                                                               and i > 2)
    if i >= len(words) or words[i].lower() not in _AUX:
        return " ".join([first] + words[1:]) if subject_wh else None
    aux = words[i].lower()
    rest = words[i + 1:]
    if not rest:
        return None
    r0 = rest[0]
    np_led = r0.lower() in _DETERMINERS or r0[0].isupper() or len(rest) == 1
    if aux in ("can", "will", "would", "should") and np_led:
        for j in range(1, len(rest)):
            if rest[j].lower() in _VERBS | {"be"}:
                return " ".join([head, *rest[:j], aux, *rest[j:]])
        return None
    if aux in ("do", "does", "did"):
        for j in range(1, len(rest)):
            w = rest[j].lower()
            if w in _VERBS and rest[j - 1].lower() not in _RELATIVE:
                form = w if aux == "do" else _inflect_3sg(w) if aux == "does" else _past(w)
                return " ".join([head, *rest[:j], form, *rest[j + 1:]])
        return None
    if not np_led:
        # "which person is responsible for X", "what language is spoken in X": the wh-phrase is the subject
        return " ".join([head, aux, *rest]) if subject_wh else None
    if r0[0].isupper() and r0.lower() not in _DETERMINERS:
        j = 0
        while j < len(rest) and (rest[j][0].isupper() or rest[j] in ("of", "'s")):
            j += 1
        return " ".join([head, *rest[:j], aux, *rest[j:]])
    for j, w in enumerate(rest):
        if w.lower() in _RELATIVE:
            break
        if j > 0 and _looks_participle(w):
            k = j - 1 if rest[j - 1].lower() in _ADVERBS else j
            return " ".join([head, *rest[:k], aux, *rest[k:]])
    if first in ("what", "which", "who", "whose") and (len(rest) == 1 or r0.lower() in ("the", "a", "an")):
        return " ".join([head, *rest, aux])  # "what the official colour of X is"
    return None


def _is_name_start(text: str) -> bool:
    w = _WORD.match(text)
    return bool(w) and w.group(0).lower() not in _FUNCTION and w.group(0)[0].isupper()


def _front_phrase(q: str) -> str | None:
    """Move a trailing place/time phrase to the front: 'What language is spoken in the Tirenne valley?' ->
    'In the Tirenne valley, what language is spoken?'"""
    body = q.strip()
    if not body.endswith("?"):
        return None
    m = re.search(r"\s(in|on|at|during|for)\s+([^?,]+)\?$", body)
    if not m or len(m.group(2).split()) > 6:
        return None
    last = m.group(2).split()[-1].lower()
    if last in _VERBS or last in _AUX or _looks_participle(last) or last in _PARTICIPLE_TO_BASE:
        return None  # "... in Drummond Vale called?": the phrase is not a place
    phrase = f"{m.group(1).capitalize()} {m.group(2)}"
    rest = body[:m.start()].strip()
    if len(rest.split()) < 3:
        return None
    if not any(w[0].isupper() for w in m.group(2).split()):
        return None  # only move phrases that name something, so meaning stays put
    return f"{phrase}, {rest[0].lower() + rest[1:] if not _is_name_start(rest) else rest}?"


def _passive(q: str) -> list[str]:
    """'Who invented the Warmwell kettle?' -> 'The Warmwell kettle was invented by whom?', 'By whom was ...'"""
    m = re.match(r"^who\s+(\w+)\s+(.+?)\?$", q.strip(), re.IGNORECASE)
    if not m:
        return []
    verb, obj = m.group(1), m.group(2)
    base = _base_of_past(verb)
    if base is None or verb.lower() in ("is", "was", "are", "were", "has", "had", "did"):
        # present tense: "Who keeps the lighthouse" -> "Who is the lighthouse kept by?"
        if verb.lower().endswith("s") and verb.lower() not in ("is", "was", "has", "does"):
            vb = verb.lower()[:-1]
            vb = vb[:-2] + "y" if vb.endswith("ie") else vb[:-1] if vb.endswith(("sse", "she", "che", "xe")) else vb
            part = _participle(vb)
            o = obj[0].upper() + obj[1:]
            return [f"By whom is {obj} {part}?", f"{o} is {part} by whom?"]
        return []
    part = _participle(base)
    o = obj[0].upper() + obj[1:]
    return [f"{o} was {part} by whom?", f"By whom was {obj} {part}?", f"Who was {obj} {part} by?"]


def rule_rephrasings(question: str, k: int, rng: random.Random, existing: set[str],
                     rejects: Rejects | None = None) -> list[str]:
    """Up to k reworded questions by rules: lead-phrase and word swaps, passive forms, a place phrase moved
    to the front, and wrappers ('Tell me, ...', 'Do you know ...?'). Deterministic for a given rng."""
    q = question.strip()
    if not q:
        return []
    candidates: list[str] = []
    structural: list[str] = []
    for pattern, alternatives in _LEAD_SWAPS:
        if re.search(pattern, q, re.IGNORECASE):
            for alt in alternatives:
                structural.append(re.sub(pattern, alt, q, count=1, flags=re.IGNORECASE))
            break
    structural += _passive(q)
    fronted = _front_phrase(q)
    if fronted:
        structural.append(fronted)
    # word swaps: one swap per variant, on lowercase words only
    toks = q.split(" ")
    swaps = []
    for j, t in enumerate(toks):
        core = t.strip("?,.!;:")
        if core and core.islower() and core in _WORD_SWAPS and j > 0:
            for alt in _WORD_SWAPS[core]:
                swaps.append(" ".join(toks[:j] + [t.replace(core, alt)] + toks[j + 1:]))
    structural += swaps
    emb = _embedded(q)
    wrappers = []
    for tpl in _PREFIXES:
        if "{e}" in tpl and emb is None:
            continue
        body_q = q[0].lower() + q[1:] if not _is_name_start(q) else q
        wrappers.append(tpl.format(q=body_q if tpl.startswith("Tell me") else q, e=emb or ""))
    rng.shuffle(structural)
    rng.shuffle(wrappers)
    # alternate a structural change with a wrapper, and combine the two for variety
    combos = []
    for s in structural[:3]:
        e2 = _embedded(s)
        if e2 and wrappers:
            tpl = rng.choice([t for t in _PREFIXES if "{e}" in t])
            combos.append(tpl.format(e=e2, q=s))
    pools = [structural, wrappers, combos]
    while any(pools):
        for pool in pools:
            if pool:
                candidates.append(pool.pop(0))
    out: list[str] = []
    seen = set(existing)
    for c in candidates:
        c = re.sub(r"\s+", " ", c).strip()
        c = c[0].upper() + c[1:]
        reason = check_question(c, q, seen)
        if reason:
            if rejects is not None and reason != "copy":
                rejects.add("rephrase", reason, c)
            continue
        out.append(c)
        seen.add(norm_question(c))
        if len(out) == k:
            break
    return out


# ----------------------------------------------------------------------------------------------------------
# Statements and reverse questions (rules)
# ----------------------------------------------------------------------------------------------------------

def _content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _FUNCTION and len(w) > 2}


def statement_for(question: str, answer: str) -> str:
    """The answer as a standalone statement that names its subject. When the answer already names what the
    question is about (its names, or most of its content words), it stands alone as it is; otherwise the
    question is kept in front of it ('When do Swedes eat meatballs? All year round: ...')."""
    q_names = names(question)
    q_words = _content_words(question)
    a = answer.strip()
    if q_names and all(_has_word(a, n) for n in q_names):
        return a
    if not q_names and q_words and len([w for w in q_words if _has_word(a, w)]) >= max(1, (2 * len(q_words)) // 3):
        return a
    return f"{question.strip()} {a}"


_NAME_RUN = re.compile(r"(?:(?:[A-Z][\w'’-]+|of|the|de|van|von|la|le)\s+)*[A-Z][\w'’-]+", re.UNICODE)
_ASK_PERSON = re.compile(r"^(who|whom|whose|which (person|woman|man|author|writer|inventor|architect|baker|player|"
                         r"clockmaker|painter|composer|king|queen|captain|mayor|founder))\b", re.IGNORECASE)
_DEFINE = [
    re.compile(r"^what (?:is|are|was|were) (?P<x>[^?]{2,40})\?$", re.IGNORECASE),
    re.compile(r"^what does (?P<x>[^?]{2,40}) mean\?$", re.IGNORECASE),
    re.compile(r"^what kind of \w+ (?:is|are) (?P<x>[^?]{2,40})\?$", re.IGNORECASE),
    re.compile(r"^(?:what|who) (?:is|are) (?:a |an |the )?(?P<x>[^?]{2,40}),? and [^?]*\?$", re.IGNORECASE),
    re.compile(r".*\b(?P<x>[^\s?]+) [—-] what (?:is|are) (?:it|they)\?$", re.IGNORECASE),
    re.compile(r"^what makes (?P<x>[^?]{2,40}) special\?$", re.IGNORECASE),
    re.compile(r"^what (?:are|is) (?P<x>[^?]{2,40}) like\?$", re.IGNORECASE),
]


def answer_entity(question: str, answer: str) -> str | None:
    """A name or entity the answer gives that the question does not contain ('Edda Lindqvist'), or None.

    Taken from the answer's first sentence: the longest run of capitalised words (with 'of'/'the' inside)
    none of whose words the question has, so 'Which colour do Pellaria rowers wear?' gives no entity
    (the answer's 'Pellaria Rowing Club' is the question's subject, not its answer)."""
    q_words = {re.sub(r"['’]s$", "", w.lower()) for w in _WORD.findall(question)}
    first = _sentences(answer)[0] if answer.strip() else ""
    best = None
    for m in _NAME_RUN.finditer(first):
        parts = [re.sub(r"['’]s$", "", p) for p in m.group(0).split()]
        at_start = m.start() == 0 or not first[:m.start()].strip()
        if at_start and parts and (parts[0].lower() in _COMMON_SENTENCE_STARTS or parts[0].lower().endswith("ing")):
            parts = parts[1:]
        while parts and (parts[0].lower() in _FUNCTION or parts[0].lower() in ("of", "de", "van", "von")):
            parts = parts[1:]
        while parts and parts[-1].lower() in ("of", "the", "de", "van", "von", "la", "le"):
            parts = parts[:-1]
        if not parts or not parts[0][0].isupper():
            continue
        if any(p.lower() in q_words for p in parts if p.lower() not in ("of", "the")):
            continue
        if at_start and len(parts) == 1:
            # one capitalised word opening the answer is usually just the first word ("Butter gives ...");
            # take it only as an appositive or a copula subject ("Maizena, a brand of ...", "Pim is ...")
            after = first[m.end():]
            if not re.match(r"^(,\s+(a|an|the)\s|\s+(is|was|are|were)\s+(a|an|the)\s)", after):
                continue
        span = " ".join(parts)
        if best is None or len(span) > len(best):
            best = span
    return best


def _subject_first(entity: str, answer: str) -> str | None:
    """The answer restated with the entity first: 'The mayor of X is E.' -> 'E is the mayor of X.';
    'The X was invented by E.' -> 'E invented the X.'; an answer sentence that starts with E as it is."""
    for sent in _sentences(answer):
        if sent.lower().startswith(entity.lower()):
            return sent
    sent = next((s for s in _sentences(answer) if _has_word(s, entity)), None)
    if sent is None:
        return None
    e = re.escape(entity)
    m = re.match(rf"^(?P<s>.+?) (?P<aux>is|was|are|were) (?:(?P<part>\w+) by )?(?:the \w+ |the ship |a \w+ called |called |named )?{e}(?P<tail>.*)$",
                 sent)
    if m:
        subj = m.group("s")
        w = subj.split()
        if w[0].lower() in ("the", "a", "an") and len(w) > 1 and not all(x[0].isupper() for x in w[1:]):
            subj = subj[0].lower() + subj[1:]
        tail = m.group("tail").rstrip(".")
        if m.group("part"):
            base = _base_of_past(m.group("part"))
            if base:
                verb = _inflect_3sg(base) if m.group("aux") in ("is", "are") else _past(base)
                return f"{entity} {verb} {subj}{tail}."
            return f"{entity} {m.group('aux')} the one who {m.group('part')} {subj}{tail}."
        return f"{entity} {m.group('aux')} {subj}{tail}."
    return None


def reverse_for(question: str, answer: str) -> tuple[str, str, str] | None:
    """(reverse question, its answer, the entity) when the answer is a name/entity or the question asks
    what a term means; None otherwise."""
    q = question.strip()
    a = answer.strip()
    # 1. "What is pressgurka?" -> "Pressgurka is a Swedish pressed cucumber salad: ..." reversed to
    #    "What is a Swedish pressed cucumber salad called?" -> "A Swedish pressed cucumber salad is called pressgurka."
    for pat in _DEFINE:
        m = pat.match(q)
        if not m:
            continue
        x = m.group("x").strip().strip("'\"")
        if len(x.split()) > 3 or re.match(r"^(a|an|the|this|that|my|your)\s", x, re.IGNORECASE) or " of " in x:
            continue  # a term ("pressgurka"), not a description ("the flower symbol of Quenby")
        dm = re.match(rf"^(?:the |a |an )?{re.escape(x)}s? (?:is|are|was|were|means|refers to) (?P<pred>[^.:;]+)", a,
                      re.IGNORECASE)
        if not dm:
            continue
        pred = dm.group("pred").strip().split(",")[0].strip()
        pred = re.split(r",\s+(?:which|who|usually|often|the|a|an|and|but|so)\b|\s+and\s+(?:is|are)\b", pred)[0]
        if len(pred.split()) < 1 or len(pred.split()) > 14:
            continue
        p_cap = pred[0].upper() + pred[1:]
        return (f"What is {pred} called?", f"{p_cap} is called {x}.", x)
    # 2. an entity in the answer that the question does not name
    ent = answer_entity(q, a)
    if not ent:
        return None
    # The entity first where the rules can restate it so; otherwise the answer as it is, which still
    # pairs the entity in the question with the fact in the answer.
    body = _subject_first(ent, a) or a
    who = bool(_ASK_PERSON.match(q))
    rq = f"Who is {ent}?" if who else f"What is {ent}?"
    return rq, body, ent


# ----------------------------------------------------------------------------------------------------------
# Generation with a model (rephrase by model, replay)
# ----------------------------------------------------------------------------------------------------------

REPHRASE_SYSTEM = ("You reword questions. Reply with the reworded question only: same meaning, different words, "
                   "every name and number kept, no answer.")
REPHRASE_STYLES = [
    "Reword this question in different words, keeping every name and number:\n{q}",
    "Ask the same thing another way (do not answer it):\n{q}",
    "Rewrite this question as a person might type it into a search box, as a full question:\n{q}",
]


def _clean_generated_question(text: str) -> str:
    t = text.strip().strip('"“”').strip()
    t = re.sub(r"^(reworded question|rephrased|question|sure[,!]?|here is[^:]*):\s*", "", t, flags=re.IGNORECASE)
    t = t.split("\n")[0].strip().strip('"“”').strip()
    if "?" in t:
        t = t[: t.index("?") + 1]
    return t


def model_rephrasings(model, tokenizer, questions: list[str], k: int, max_new_tokens: int = 48,
                      progress=print) -> list[list[str]]:
    """Raw generations: for each question, one greedy rewording per style (len(REPHRASE_STYLES) per question,
    at least k); checked later by the caller."""
    from .chat import answer_batch

    styles = REPHRASE_STYLES * ((k + len(REPHRASE_STYLES) - 1) // len(REPHRASE_STYLES))
    prompts = [s.format(q=q) for q in questions for s in styles]
    outs = answer_batch(model, tokenizer, prompts, max_new_tokens=max_new_tokens, system_prompt=REPHRASE_SYSTEM,
                        batch_size=16)
    n = len(styles)
    return [[_clean_generated_question(o) for o in outs[i * n:(i + 1) * n]] for i in range(len(questions))]


def _complete_sentences(text: str) -> str:
    """Cut a length-capped answer back to its last complete sentence (so replay does not teach stopping
    mid-sentence); unchanged when it already ends a sentence."""
    t = re.sub(r"\n\s*\d+\.$", "", text.strip()).strip()  # a list cut off after its next number
    if not t or t[-1] in ".!?)\"”":
        return t
    cut = max(t.rfind(". "), t.rfind("! "), t.rfind("? "), t.rfind(".\n"))
    return t[:cut + 1].strip() if cut > 0 else ""


def load_replay_prompts(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, rec in read_jsonl(path):
        p = rec.get("prompt") or rec.get("question")
        if not isinstance(p, str) or not p.strip():
            raise DataError(f"{path}, line {number}: expected {{\"prompt\": \"...\"}}.")
        out.append((number, p.strip()))
    return out


# ----------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------

@dataclass
class AugmentResult:
    added: list[Item]
    report: dict


def augment(cfg, prepared, progress=print, model=None, tokenizer=None) -> list[Item]:
    """Write the augmented file beside the user's data file and return the added Items (kinds interleaved by
    source item, so the first rows show each kind). `model`/`tokenizer` may be passed to reuse a loaded
    base model for replay and model rewording; otherwise it is loaded when needed."""
    return run_augment(cfg, prepared, progress, model, tokenizer).added


def run_augment(cfg, prepared, progress=print, model=None, tokenizer=None) -> AugmentResult:
    a = cfg.augment
    started = time.perf_counter()
    data_name = Path(cfg.data).name
    rejects = Rejects()
    train = list(prepared.train)
    val_questions = {norm_question(q) for q in (_user(i) for i in prepared.validation) if q}
    train_questions = {norm_question(q) for q in (_user(i) for i in train) if q}
    existing = train_questions | val_questions
    per_item: dict[int, list[Item]] = {}
    skipped_multi = 0
    timings: dict[str, float] = {}

    def add(src: Item, kind: str, messages=None, text=None):
        line = src.source_line if src.source_line is not None else src.line
        per_item.setdefault(line, []).append(Item(line=0, source=str(augmented_path(cfg)), messages=messages,
                                                  text=text, kind=kind, source_line=line))

    chat_items = [i for i in train if _single_turn(i)]
    skipped_multi = len([i for i in train if i.messages is not None and not _single_turn(i)])

    # --- rephrase ---
    if a.rephrasings:
        t0 = time.perf_counter()
        generated: list[list[str]] | None = None
        by = a.rephrase_with
        if by != "rules":
            model, tokenizer, gen_desc = _generator(cfg, by, model, tokenizer, progress)
            progress(f"Rewording {len(chat_items)} questions with {gen_desc} ...")
            generated = model_rephrasings(model, tokenizer, [_user(i) for i in chat_items], a.rephrasings,
                                          progress=progress)
        filled_by_rules = 0
        for n, item in enumerate(chat_items):
            q = _user(item)
            rng = random.Random(f"{cfg.seed}:{item.source_line or item.line}:rephrase")
            kept: list[str] = []
            seen = set(existing)
            if generated is not None:
                for v in generated[n]:
                    reason = check_question(v, q, seen)
                    if reason:
                        rejects.add("rephrase", reason, v)
                        continue
                    kept.append(v)
                    seen.add(norm_question(v))
                    if len(kept) == a.rephrasings:
                        break
            if len(kept) < a.rephrasings:
                more = rule_rephrasings(q, a.rephrasings - len(kept), rng, seen,
                                        rejects if generated is None else None)
                if generated is not None:
                    filled_by_rules += len(more)
                kept += more
            for v in kept:
                existing.add(norm_question(v))
                add(item, "rephrase", messages=_system(item) + [{"role": "user", "content": v},
                                                                {"role": "assistant", "content": _answer(item)}])
        timings["rephrase"] = time.perf_counter() - t0
        if generated is not None:
            timings["rephrase_filled_by_rules"] = filled_by_rules

    # --- statements ---
    if a.statements:
        t0 = time.perf_counter()
        seen_text = {json.dumps(i.text) for i in train if i.text is not None}
        for item in chat_items:
            q, ans = _user(item), _answer(item)
            st = statement_for(q, ans)
            reason = check_answer_text(st, q + " " + ans, tuple(sorted(names(ans))), keep_numbers=ans)
            if reason is None and json.dumps(st) in seen_text:
                reason = "copy"
            if reason:
                rejects.add("statement", reason, st)
                continue
            seen_text.add(json.dumps(st))
            add(item, "statement", text=st)
        timings["statement"] = time.perf_counter() - t0

    # --- reverse ---
    if a.reverse:
        t0 = time.perf_counter()
        no_entity = 0
        for item in chat_items:
            q, ans = _user(item), _answer(item)
            rev = reverse_for(q, ans)
            if rev is None:
                no_entity += 1
                continue
            rq, ra, ent = rev
            reason = "copy" if norm_question(rq) in existing else None
            reason = reason or check_answer_text(ra, q + " " + ans, (ent,))
            if reason is None and (names(ra) - names(q + " " + ans)):
                reason = "names_added"
            if reason:
                rejects.add("reverse", reason, f"{rq} -> {ra}")
                continue
            existing.add(norm_question(rq))
            add(item, "reverse", messages=_system(item) + [{"role": "user", "content": rq},
                                                           {"role": "assistant", "content": ra}])
        timings["reverse"] = time.perf_counter() - t0
        timings["reverse_not_applicable"] = no_entity

    # --- replay ---
    replay_items: list[Item] = []
    replay_source = None
    if a.replay:
        t0 = time.perf_counter()
        path = replay_prompts_path(cfg)
        replay_source = str(path)
        prompts = load_replay_prompts(path)
        general = set()
        if cfg.general_questions and Path(cfg.general_questions).exists():
            from .evaluation import load_questions

            general = {norm_question(q.question) for q in load_questions(cfg.general_questions)}
        usable = []
        for number, p in prompts:
            if norm_question(p) in general:
                rejects.add("replay", "leak", p)  # a retention question must not be trained on
            elif norm_question(p) in existing:
                rejects.add("replay", "copy", p)
            else:
                usable.append((number, p))
        usable = usable[:a.replay]
        if len(usable) < a.replay:
            progress(f"Note: replay asks for {a.replay} prompts; {path} has {len(usable)} usable.")
        if usable:
            model, tokenizer, gen_desc = _generator(cfg, "model", model, tokenizer, progress)
            progress(f"Replay: {gen_desc} answers {len(usable)} general prompts before training ...")
            from .chat import answer_batch

            outs = answer_batch(model, tokenizer, [p for _, p in usable], max_new_tokens=cfg.max_new_tokens,
                                system_prompt=cfg.system_prompt, batch_size=16)
            for (number, p), out in zip(usable, outs):
                ans = _complete_sentences(out)
                if not ans or not _WORD.search(ans):
                    rejects.add("replay", "empty", f"{p} -> {out}")
                    continue
                replay_items.append(Item(line=0, source=str(path), kind="replay", source_line=number,
                                         messages=[{"role": "user", "content": p},
                                                   {"role": "assistant", "content": ans}]))
        timings["replay"] = time.perf_counter() - t0

    added = [it for line in sorted(per_item) for it in per_item[line]] + replay_items
    for n, it in enumerate(added, start=1):
        it.line = n
    out_path = augmented_path(cfg)
    records = []
    for it in added:
        rec = it.to_record()
        rec["source"] = Path(replay_source).name if it.kind == "replay" else data_name
        records.append(rec)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(out_path, text)
    counts = {k: sum(1 for i in added if i.kind == k) for k in KINDS}
    seconds = round(time.perf_counter() - started, 2)
    report = {
        "file": str(out_path),
        "data": str(cfg.data),
        "inputs": _inputs(cfg, prepared),
        "file_sha256": sha256_file(out_path),
        "train_items": len(train),
        "added": counts,
        "added_total": len(added),
        "rejected": rejects.counts,
        "rejected_total": rejects.total(),
        "reject_examples": rejects.examples,
        "multi_turn_items_skipped": skipped_multi,
        "seconds": seconds,
        "details": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in timings.items()},
    }
    atomic_write_json(report_path(cfg), report)
    from .runs import Run

    run_report = Run(cfg.output_dir).root / "augment" / "report.json"
    atomic_write_json(run_report, report)
    rej = ", ".join(f"{k} {sum(v.values())} ({', '.join(f'{r} {n}' for r, n in sorted(v.items()))})"
                    for k, v in sorted(rejects.counts.items())) or "none"
    progress(f"Augmented {len(train)} training items: added {len(added)} "
             f"({', '.join(f'{k} {n}' for k, n in counts.items() if n) or 'nothing'}) in {seconds:.1f} s; "
             f"rejected {rejects.total()}: {rej}. Wrote {out_path} (your {data_name} is unchanged).")
    return AugmentResult(added, report)


def _generator(cfg, by: str, model, tokenizer, progress):
    """(model, tokenizer, description) that generates: the model in use ('model'; reuses a passed one) or
    the named generator."""
    if by == "model" and model is not None:
        return model, tokenizer, "the model in use"
    from .pipeline import load_for_inference

    spec = cfg.model if by == "model" else by
    m, t, desc = load_for_inference(spec, cfg, progress)
    return m, t, desc


# ----------------------------------------------------------------------------------------------------------
# Reading the augmented file back
# ----------------------------------------------------------------------------------------------------------

def load_augmented(path: str | Path, prepared=None) -> list[Item]:
    """The augmented file's records as Items, validated (each record in the text or messages format, with
    kind and source_line). With `prepared`, a record whose source line is a validation item is an error
    (validation must not leak into training)."""
    path = Path(path)
    if not path.exists() or not path.stat().st_size:
        return []
    val_lines = {i.source_line if i.source_line is not None else i.line for i in prepared.validation} \
        if prepared is not None else set()
    items = []
    for number, rec in read_jsonl(path):
        where = f"{path}, line {number}"
        fmt = detect_format(rec, where)
        messages, text = normalise(rec, fmt, where)
        kind = rec.get("kind")
        if kind not in KINDS:
            raise DataError(f"{where}: field 'kind' is {kind!r}; an augmented record is one of {', '.join(KINDS)}.")
        src = rec.get("source_line")
        if not isinstance(src, int):
            raise DataError(f"{where}: field 'source_line' must be the line number of the item it came from.")
        if kind != "replay" and src in val_lines:
            raise DataError(f"{where}: source_line {src} is a validation item; augmenting it would leak validation "
                            f"data into training. Delete the line, or run `python -m unslothify augment` again.")
        items.append(Item(line=number, source=str(path), messages=messages, text=text, kind=kind, source_line=src))
    return items


def state(cfg, prepared) -> str:
    """'current', 'edited' (inputs unchanged, file changed by hand), 'stale' or 'missing'."""
    path, rpath = augmented_path(cfg), report_path(cfg)
    if not path.exists():
        return "missing"
    if not rpath.exists():
        return "stale"
    try:
        report = json.loads(rpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "stale"
    if report.get("inputs") != _inputs(cfg, prepared):
        return "stale"
    return "current" if report.get("file_sha256") == sha256_file(path) else "edited"


def training_items(cfg, prepared, progress=print, model=None, tokenizer=None) -> list[Item]:
    """The items a training call uses: the prepared training split, plus the augmented records when enabled,
    read back from the augmented file (written again first when it is missing or stale)."""
    items = list(prepared.train)
    if not cfg.augment.enabled:
        return items
    with _main_process_first():  # under `accelerate launch`, one process writes the file, the others read it
        return items + _augmented_for_training(cfg, prepared, progress, model, tokenizer)


def _main_process_first():
    import contextlib
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        return PartialState().main_process_first()
    return contextlib.nullcontext()


def _augmented_for_training(cfg, prepared, progress, model, tokenizer) -> list[Item]:
    items = prepared.train
    path = augmented_path(cfg)
    st = state(cfg, prepared)
    if st == "stale" and _edited_by_hand(cfg):
        raise DataError(f"{path} was edited by hand, and the prepared data or the augment settings have changed "
                        f"since it was written. Move your edited copy away and run `python -m unslothify augment` "
                        f"to write it again for the current data (or switch augment.enabled off).")
    if st in ("missing", "stale"):
        progress(f"The augmented file {path} is {'missing' if st == 'missing' else 'out of date'}; writing it.")
        run_augment(cfg, prepared, progress, model, tokenizer)
    elif st == "edited":
        progress(f"Using {path} as edited by hand.")
    added = load_augmented(path, prepared)
    counts = {k: sum(1 for i in added if i.kind == k) for k in KINDS}
    progress(f"Training on {len(items)} items + {len(added)} augmented "
             f"({', '.join(f'{k} {n}' for k, n in counts.items() if n) or 'none'}).")
    return added


def _edited_by_hand(cfg) -> bool:
    path, rpath = augmented_path(cfg), report_path(cfg)
    if not path.exists() or not rpath.exists():
        return False
    try:
        report = json.loads(rpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return report.get("file_sha256") not in (None, sha256_file(path))
