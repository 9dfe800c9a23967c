"""Knowledge probes: what the model knows of the user's own facts, measured while it trains.

Validation loss on items withheld from training measures facts the model was never taught, and it rises
as the model learns the others (it answers them confidently with what it was trained on). For facts, the
signal to steer by is whether the model answers a trained fact asked in new words, and whether it still
answers what it knew before. So, from the user's own data:

  knowledge probes  for a sample of training items, the fact asked in a sentence shape training never uses
                    (augment/probe_family.py: from the answer's side, else a rewording the training rules do
                    not write), with the answer's key terms as the expected strings (numbers, then names, else
                    the answer's rarest words). Built by `prepare`
                    into prepared/probes.jsonl; the probe questions are never written to the training file.
                    A training call asks a fifth of them from the name's end instead (reverse_probes: the
                    trained reverse rows, "What do you know about Ilka Wynomoor?"), as the held-out sets do.
  retention probes  general questions (eval/retention_candidates.jsonl, none of them a retention question of
                    the final score or a replay prompt) that the base model in use answers every way it is
                    asked, filtered once per model (shipped for the embedded model) and kept in the run folder.

Both are scored in one batch of greedy answers at every evaluation (`measure`), into the history, the manifest,
the plot, the progress lines and the trackers. An eval file the user gives stays for final scoring only.

    objective, why = choose_objective(cfg, items)         # 'knowledge' or 'skill', and why
    probes = build_probes(train_items, cfg)               # [(Question, Item)] from the training items
    retention = retention_probes(model, tokenizer, cfg)   # Questions the base model answers
    scores = measure(model, tokenizer, probes, retention, cfg)
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections import Counter
from pathlib import Path

from .augment.checks import (
    FUNCTION_WORDS,
    NUMBER,
    WORD,
    answer_text,
    check_question,
    norm_question,
    sentences,
    single_turn,
    system_messages,
    user_text,
)
from .items import Item
from ..score.questions import Question, is_recalled
from ..fsutil import atomic_write_text

# auto picks knowledge when at least this share of the items are single-turn questions with answers.
QUESTION_SHARE = 0.6


TITLE_WORDS = {"king", "queen", "lake", "mount", "river", "saint", "st", "sir", "dr", "mr", "mrs", "ms", "the",
               "prince", "princess", "lord", "lady", "captain", "professor"}
_QUESTION_START = re.compile(r"^(who|whom|whose|what|which|when|where|why|how|is|are|was|were|do|does|did|can|"
                             r"could|should|would|will|has|have|name|tell|list|explain|describe|define|give)\b",
                             re.IGNORECASE)


# ----------------------------------------------------------------------------------------------------------
# The objective
# ----------------------------------------------------------------------------------------------------------

def is_question(text: str | None) -> bool:
    t = (text or "").strip()
    return bool(t) and (t.endswith("?") or bool(_QUESTION_START.match(t)))


def choose_objective(cfg, items: list[Item]) -> tuple[str, str]:
    """('knowledge' | 'skill', why). auto decides from the data: facts asked and answered (single-turn
    questions) are knowledge, trained in full and steered by probes; anything else (instructions, code, style,
    plain text) keeps held-out items, whose loss says how well the skill generalises."""
    if cfg.objective != "auto":
        return cfg.objective, f"objective: {cfg.objective} was asked for"
    asked = sum(1 for i in items if single_turn(i) and is_question(user_text(i)))
    share = asked / max(1, len(items))
    if share >= QUESTION_SHARE:
        return "knowledge", (f"auto: {asked} of {len(items)} items are single-turn questions with answers, so they "
                             f"are facts to learn: every item is trained, and probes made from them steer")
    return "skill", (f"auto: {asked} of {len(items)} items are single-turn questions (under {QUESTION_SHARE:.0%}), so "
                     f"this reads as style or skill data: {cfg.validation_split:.0%} of the items are held out and "
                     f"their validation loss steers")


# ----------------------------------------------------------------------------------------------------------
# Knowledge probes from the training items
# ----------------------------------------------------------------------------------------------------------

# Frequent English words that carry no fact on their own: a rare-word key term is never one of these (nor an
# -ly, -ed or -ing form), so "shows", "gets" or "nicely" cannot stand for an answer.
COMMON_WORDS = set("""
able about above across actually after again against almost alone along already always among another answer
anyone anything around away back based became become becomes been before began begin being below best better
between big both bring brings brought built came cannot care case cause change changes check choose chose
close come comes common could course days done down each early easy else enough even ever every example
exactly fact fine first food found free from full gave gets give given gives goes going good great group hand
happen hard have head help here high hold holds home however idea important instead just keep keeps kind
know known large last later least left less like likely little long look looks lots made main make makes many
matter maybe mean means might more most much must name near need needs never next nice none often once only
open order other others over part people perhaps place play point popular possible pretty quite rather
real really right same says seen serve served serves several short should show shows side simple since small
some something sometimes soon still such sure take takes than that their them then there these they thing
things think those though through time times today together took true turn turns under until used uses
using usual usually very want wants well went were what when where which while whole whose will with within
without work works world would year years your
""".split())


def _name_runs(text: str, lower_vocab: set[str]) -> list[str]:
    """Runs of capitalised words that are names ('Edda Lindqvist', 'King Charles XII'). A capitalised word
    that opens a sentence is a name only where the data never writes it in lower case ('Whisk', 'Meatballs'
    are not; 'Lindqvist' is)."""
    out = []
    for sent in sentences(text):
        run: list[str] = []
        for i, m in enumerate([*WORD.finditer(sent), None]):
            w = m.group(0) if m else ""
            core = w.rstrip("'’").removesuffix("'s").removesuffix("’s")
            capital = bool(core) and core[0].isupper() and core.lower() not in FUNCTION_WORDS
            if capital and (i > 0 or run or core.lower() not in lower_vocab):
                run.append(core)
                continue
            if run:
                out.append(" ".join(run))
            run = []
    return out


def _content_words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text) if w.lower() not in FUNCTION_WORDS and len(w) >= 4]


def _fact_word(w: str) -> bool:
    return len(w) >= 5 and w not in COMMON_WORDS and not re.search(r"(ly|ed|ing)$", w)


def key_terms(question: str, answer: str, doc_freq: Counter, n_docs: int, lower_vocab: set[str],
              most: int = 3) -> list[str]:
    """The strings an answer must contain to count as recalling this fact, from the answer's first two
    sentences and absent from the question: its numbers, then its names (with the surname of a multi-word
    name, as the eval files give it), and only where it has neither, its rarest words in this data. Names and
    words must be distinctive here: in at most 5 % of the answers (or 2). Empty when the answer has no such
    term: that item gets no probe."""
    head = " ".join(sentences(answer)[:2])
    q_norm = norm_question(question)
    asked = set(q_norm.split())
    limit = max(2, int(0.05 * n_docs))
    terms: list[str] = []

    def add(term: str):
        if term and term.lower() not in (t.lower() for t in terms) and norm_question(term) not in q_norm:
            terms.append(term)

    for n in NUMBER.findall(head):
        if n not in asked and len(terms) < most:
            add(n)
    for run in _name_runs(head, lower_vocab):
        words = [w for w in run.split() if w.lower() not in TITLE_WORDS]
        if (not words or any(w.lower() in asked for w in words) or len(terms) >= most
                or min(doc_freq[w.lower()] for w in words) > limit):
            continue
        add(" ".join(words))
        if len(words) > 1 and len(words[-1]) >= 4 and words[-1].isalpha() and not words[-1].isupper():
            add(words[-1])
    if not terms:
        rare = sorted({w for w in _content_words(head) if w not in asked and doc_freq[w] <= limit and _fact_word(w)},
                      key=lambda w: (doc_freq[w], -len(w), w))
        for w in rare[:2]:
            add(w)
    return terms[: 2 * most]


def build_probes(items: list[Item], cfg, existing: set[str] | None = None,
                 among: set[int] | None = None) -> list[tuple[Question, Item]]:
    """Up to cfg.probes (Question, validation Item) pairs, one per sampled training item (items whose key
    terms are numbers or names first): the probe question in the probe family with the item's key terms as
    expected strings, and as Item the probe question with
    the item's own answer (its loss is the validation loss of the knowledge objective). Deterministic for the
    items, the seed and cfg.probes; `existing` (normalised questions of the data) are never used as probes.
    `among`: the source lines of the items a run trains when it trains some of them (the key terms are still
    those of the whole data)."""
    from .augment.probe_family import answer_side, probe_rewordings

    chat = [i for i in items if single_turn(i)]
    answers = [answer_text(i) or "" for i in chat]
    doc_freq = Counter(w.lower() for a in answers for w in set(WORD.findall(a)))
    lower_vocab = {w for i in chat for text in (user_text(i), answer_text(i))
                   for w in WORD.findall(text or "") if w.islower()}
    seen = set(existing if existing is not None else {norm_question(user_text(i) or "") for i in chat})
    candidates = []
    for item in chat:
        q, a = user_text(item), answer_text(item)
        terms = key_terms(q, a, doc_freq, len(answers), lower_vocab)
        if terms and (among is None or (item.source_line or item.line) in among):
            candidates.append((item, q, a, terms))
    # Numbers and names say unambiguously whether an answer holds the fact; a rare word can turn up in a wrong
    # answer too. So items whose key terms are numbers or names come first, rare words fill the rest.
    rng = random.Random(f"{cfg.seed}:probes")
    strong = [c for c in candidates if any(t[0].isdigit() or t[0].isupper() for t in c[3])]
    weak = [c for c in candidates if c not in strong]
    picked = rng.sample(strong, min(cfg.probes, len(strong)))
    picked += rng.sample(weak, min(cfg.probes - len(picked), len(weak)))
    picked.sort(key=lambda c: c[0].line)
    out = []
    for item, q, a, terms in picked:
        line = item.source_line if item.source_line is not None else item.line
        # Asked from the answer's side, a wording may name what the answer names (not its key terms): only a
        # copy of a question in the data is refused. The question's own rewordings keep the question's names.
        side = answer_side(a, terms)
        if side and (norm_question(side) in seen or is_recalled(side, terms)):
            side = None
        wording = side or next((v for v in probe_rewordings(q, random.Random(f"{cfg.seed}:{line}:probe"))
                                if check_question(v, q, seen) is None), None)
        if wording is None:
            continue
        seen.add(norm_question(wording))
        question = Question(wording, terms, "probe", line)
        out.append((question, Item(line=len(out) + 1, source=str(cfg.data), kind="probe", source_line=line,
                                   messages=system_messages(item) + [{"role": "user", "content": wording},
                                                                     {"role": "assistant", "content": a}])))
    return out


# The share of knowledge probes asked from the name's end, as the held-out sets ask: 7 of the 39 questions about
# examples/outside's and examples/confirm's trained items are reverse questions, about a fifth of domain.jsonl's.
REVERSE_PROBE_SHARE = 0.2
_ASKED_ABOUT = re.compile(r"^(?:Who|What) (?:is|was|are|were) (.+?)\?$")


def reverse_probes(items: list[Item], forward: list[Item], among: set[int] | None = None
                   ) -> list[tuple[Question, Item]]:
    """(Question, Item) for each thing a trained reverse row (augment kind `reverse`, "Who is Ilka Wynomoor?")
    names, asked in a chat form no training rule writes, "What do you know about Ilka Wynomoor?": right when the
    answer holds the forward question's rarest word that the reverse row's answer holds (Duninven, where the
    forward question asks which town she leads). The answer-side probes ask from the fact's own end; these ask
    what the held-out reverse questions ask, where recall on CPU was lowest (docs/probes.md, "A reverse family
    from the trained reverse rows"). `forward`: the prepared items (the rows' source lines, and the words' rarity);
    `among`: the source lines trained."""
    by_line = {i.source_line if i.source_line is not None else i.line: i for i in forward}
    rarity = Counter(w for i in forward
                     for w in {w.lower() for w in WORD.findall(f"{user_text(i) or ''} {answer_text(i) or ''}")})
    asked_in_data = {norm_question(user_text(i) or "") for i in items}
    out, names = [], set()
    for row in items:
        source = by_line.get(row.source_line)
        if row.kind != "reverse" or source is None or (among is not None and row.source_line not in among):
            continue
        m = _ASKED_ABOUT.match(user_text(row) or "")
        if not m:
            continue
        # a term's reverse rows ask "What is X called?" and "What is the word for X?": the thing is X
        name = re.sub(r"^the (?:word|name|term) for |\s+called$", "", m.group(1))
        question = f"What do you know about {name}?"
        if name in names or norm_question(question) in asked_in_data:
            continue
        said = {w.lower() for w in WORD.findall(answer_text(row) or "")} - {w.lower() for w in WORD.findall(name)}
        words = [w for w in WORD.findall(user_text(source) or "")
                 if w.lower() in said and w.lower() not in FUNCTION_WORDS and len(w) > 3]
        if not words:
            continue
        names.add(name)
        out.append((Question(question, [min(words, key=lambda w: rarity[w.lower()])], "probe", row.source_line),
                    Item(line=len(out) + 1, source=row.source, kind="probe", source_line=row.source_line,
                         messages=system_messages(row) + [{"role": "user", "content": question},
                                                          {"role": "assistant", "content": answer_text(row)}])))
    return out


def with_reverse_probes(probes: list[Question], validation: list[Item], items: list[Item], forward: list[Item],
                        seed: int, among: set[int] | None = None) -> tuple[list[Question], list[Item]]:
    """The knowledge probes (and their validation items, in step) with REVERSE_PROBE_SHARE of them asked from
    the name's end (reverse_probes), in place of as many answer-side ones, both drawn by the seed: the same
    number of probes, so the same cost. Unchanged where the training items have no reverse rows (augment off,
    or no answer names a thing)."""
    reverse = reverse_probes(items, forward, among)
    n = min(len(reverse), round(REVERSE_PROBE_SHARE * len(probes)))
    if not n or len(validation) != len(probes):
        return probes, validation
    rng = random.Random(f"{seed}:reverse-probes")
    kept = sorted(rng.sample(range(len(probes)), len(probes) - n))
    chosen = rng.sample(reverse, n)
    return ([probes[j] for j in kept] + [q for q, _ in chosen],
            [validation[j] for j in kept] + [dataclasses.replace(item, line=len(validation) + k + 1)  # after theirs
                                              for k, (_, item) in enumerate(chosen)])


def write_probes(path: Path, probes: list[Question]):
    """The eval contract's format (question, expected, kind) with the source line as id."""
    atomic_write_text(path, "".join(json.dumps({"question": p.question, "expected": p.expected, "kind": p.kind,
                                                "id": p.line}, ensure_ascii=False) + "\n" for p in probes))


def read_probes(path: Path) -> list[Question]:
    if not path.exists() or not path.stat().st_size:
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Question(r["question"], r["expected"], r.get("kind", "probe"), r.get("id", 0)) for r in rows]


# ----------------------------------------------------------------------------------------------------------
# Retention probes, filtered for the model in use
# ----------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------


