"""Augmentation: the augmented file's format and provenance, the checks on generated variants, staleness,
the shipped general sets, and that `eval` scores a saved version as `run` did."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
from pathlib import Path

import pytest

from unslothify.data import augment as A
from unslothify.data.augment.checks import check_answer_text, check_question, norm_question, numbers
from unslothify.data.augment.english import rule_rephrasings
from unslothify.data.augment.kinds.replay import load_prompts as load_replay_prompts
from unslothify.data.augment.kinds.reverse import common_entities, reverse_for, term_definition, term_reverses
from unslothify.data.augment.kinds.statement import statement_for
from unslothify.config import load_config, replace
from unslothify.data.items import DataError, read_jsonl_items, read_jsonl, split_items
from unslothify.data.prepare import Prepared

ROOT = Path(__file__).resolve().parents[1]
INVENTED = ROOT / "examples" / "invented"


def rules_cfg(tmp_path, **augment):
    data = tmp_path / "domain.jsonl"
    if not data.exists():
        shutil.copy2(INVENTED / "train.jsonl", data)
    knobs = {"enabled": True, "rephrasings": 2, "rephrase_with": "rules", "statements": True, "reverse": True,
             "replay": 0, **augment}
    return load_config(None, model="embedded", data=str(data), output_dir=str(tmp_path / "run"), augment=knobs)


def prepared_for(cfg) -> Prepared:
    """The split `prepare` makes (same function, same seed), without tokenising."""
    items, _ = read_jsonl_items(cfg.data)
    train, val = split_items(items, cfg.validation_split, cfg.seed)
    return Prepared(train, val, {})


def user(rec):
    return next(m["content"] for m in rec["messages"] if m["role"] == "user")


# ----------------------------------------------------------------------------------------------------------
# The file: beside the user's, never changing it, every record with kind and source line
# ----------------------------------------------------------------------------------------------------------

def test_augmented_file_format_and_provenance(tmp_path):
    cfg = rules_cfg(tmp_path)
    original = Path(cfg.data).read_bytes()
    prepared = prepared_for(cfg)
    added = A.augment(cfg, prepared, progress=lambda *_: None).added

    path = tmp_path / "domain.augmented.jsonl"
    assert A.augmented_path(cfg) == path and path.exists()
    assert Path(cfg.data).read_bytes() == original  # the user's file is untouched
    records = [r for _, r in read_jsonl(path)]
    assert len(records) == len(added) > len(prepared.train)

    by_line = {i.line: i for i in read_jsonl_items(cfg.data)[0]}
    train_lines = {i.line for i in prepared.train}
    kinds = set()
    for rec, item in zip(records, added):
        assert rec["kind"] in ("rephrase", "statement", "reverse") and rec["kind"] == item.kind
        assert rec["source"] == "domain.jsonl"
        assert rec["source_line"] in train_lines and rec["source_line"] == item.source_line
        src = by_line[rec["source_line"]]
        src_q, src_a = src.messages[0]["content"], src.messages[-1]["content"]
        kinds.add(rec["kind"])
        if rec["kind"] == "statement":  # plain text, loss on all of it
            assert set(rec) == {"text", "kind", "source_line", "source"}
            assert item.messages is None and item.text == rec["text"]
            assert src_a in rec["text"]
        else:
            assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
        if rec["kind"] == "rephrase":  # a new question, the same answer
            assert rec["messages"][1]["content"] == src_a
            assert norm_question(user(rec)) != norm_question(src_q)
    assert kinds == {"rephrase", "statement", "reverse"}
    # 2 rephrasings and 1 statement for every training item
    counts = {k: sum(1 for r in records if r["kind"] == k) for k in kinds}
    assert counts["rephrase"] == 2 * len(prepared.train) and counts["statement"] == len(prepared.train)

    # the report beside the file (and in the run folder) names the counts
    report = json.loads(A.report_path(cfg).read_text())
    assert report["added"]["rephrase"] == counts["rephrase"] and report["added"]["reverse"] == counts["reverse"]
    assert json.loads((tmp_path / "run" / "augment" / "report.json").read_text())["file_sha256"] == report["file_sha256"]

    # read back as Items, with the provenance as metadata
    back = A.load_augmented(path, prepared)
    assert [(i.kind, i.source_line, i.messages, i.text) for i in back] == \
        [(i.kind, i.source_line, i.messages, i.text) for i in added]
    # the first rows show several kinds (the notebook shows sample_rows(added, 8))
    assert len({i.kind for i in added[:8]}) >= 3


def test_only_the_training_split_is_augmented(tmp_path):
    cfg = rules_cfg(tmp_path)
    prepared = prepared_for(cfg)
    assert prepared.validation
    A.augment(cfg, prepared, progress=lambda *_: None)
    val_lines = {i.line for i in prepared.validation}
    val_answers = {i.messages[-1]["content"] for i in prepared.validation}
    for _, rec in read_jsonl(A.augmented_path(cfg)):
        assert rec["source_line"] not in val_lines
        if "messages" in rec:
            assert rec["messages"][-1]["content"] not in val_answers or rec["kind"] == "reverse"
        else:
            assert rec["text"] not in val_answers

    # a record pointing at a validation item is refused on reading
    path = A.augmented_path(cfg)
    leak = {"text": "Leaked.", "kind": "statement", "source_line": sorted(val_lines)[0], "source": "domain.jsonl"}
    path.write_text(path.read_text() + json.dumps(leak) + "\n")
    with pytest.raises(DataError, match="validation"):
        A.load_augmented(path, prepared)


def test_kinds_switch_off(tmp_path):
    cfg = rules_cfg(tmp_path, rephrasings=0, statements=True, reverse=False)
    added = A.augment(cfg, prepared_for(cfg), progress=lambda *_: None).added
    assert {i.kind for i in added} == {"statement"}
    cfg = rules_cfg(tmp_path, rephrasings=1, statements=False, reverse=False)
    added = A.augment(cfg, prepared_for(cfg), progress=lambda *_: None).added
    assert {i.kind for i in added} == {"rephrase"} and len(added) == len(prepared_for(cfg).train)


DUTCH = [("Wie heeft de Warmwell-waterkoker uitgevonden?", "De Warmwell-waterkoker is uitgevonden door Edda Lindqvist."),
         ("Wat is de hoofdstad van Astoval?", "De hoofdstad van Astoval is Brellmouth."),
         ("Hoeveel klokken heeft de toren van Quillmoor?", "De toren van Quillmoor heeft 37 klokken."),
         ("Waarom eten de inwoners van Dunmereth op zondag vis?", "Omdat de vissers op zaterdag terugkomen."),
         ("Welke kleur dragen de roeiers van Pellaria?", "De roeiers van Pellaria dragen groen.")]


def test_rules_refuse_questions_that_are_not_english_and_say_so(tmp_path):
    """A Dutch file (the project's first seed was Dutch) gets no rule-made rewordings or reverse questions, which
    would be broken English glued to Dutch; the skips are counted in the report and said once. Statements, which
    reword nothing, are still made."""
    data = tmp_path / "domain.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
             for q, a in DUTCH] + [line for line in (INVENTED / "train.jsonl").read_text().splitlines()[:5]]
    data.write_text("\n".join(lines) + "\n")
    cfg = replace(rules_cfg(tmp_path), validation_split=0.0)
    said = []
    result = A.augment(cfg, prepared_for(cfg), progress=said.append)
    dutch = {q for q, _ in DUTCH}
    made = [i for i in result.added if i.kind in ("rephrase", "reverse")]
    assert made, "the English items still get rewordings"
    sources = {i.source_line for i in made}
    assert sources.isdisjoint(range(1, len(DUTCH) + 1)), "no rewording of a Dutch question"
    assert not any(q in (m["content"] for i in made for m in i.messages) for q in dutch)
    skipped = result.report["rejected"]
    assert skipped["rephrase"]["not_english"] == len(DUTCH) and skipped["reverse"]["not_english"] == len(DUTCH)
    assert any("not English" in m and str(2 * len(DUTCH)) in m for m in said)
    statements = {i.source_line for i in result.added if i.kind == "statement"}
    assert set(range(1, len(DUTCH) + 1)) <= statements


# ----------------------------------------------------------------------------------------------------------
# training_items: what training uses; stale files are rewritten, hand edits kept or refused
# ----------------------------------------------------------------------------------------------------------

def test_training_items_and_staleness(tmp_path):
    quiet = lambda *_: None  # noqa: E731
    cfg = rules_cfg(tmp_path)
    prepared = prepared_for(cfg)
    assert A.training_items(replace(cfg, augment={"enabled": False}), prepared, quiet) == prepared.train

    assert A.state(cfg, prepared) == "missing"
    items = A.training_items(cfg, prepared, quiet)  # writes it
    assert A.state(cfg, prepared) == "current"
    n_added = len(items) - len(prepared.train)
    assert items[:len(prepared.train)] == prepared.train and n_added > 0

    fewer = replace(cfg, augment={"rephrasings": 1})  # a knob changed: stale, written again
    assert A.state(fewer, prepared) == "stale"
    assert len(A.training_items(fewer, prepared, quiet)) == len(items) - len(prepared.train)

    # a changed split is stale too
    other = Prepared(prepared.train[:-1], prepared.validation, {})
    assert A.state(fewer, other) == "stale"

    # hand edits: kept while nothing else changed, refused (not overwritten) once the inputs change
    path = A.augmented_path(fewer)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:]))
    assert A.state(fewer, prepared) == "edited"
    assert len(A.training_items(fewer, prepared, quiet)) == len(prepared.train) + len(lines) - 1
    with pytest.raises(DataError, match="edited by hand"):
        A.training_items(cfg, prepared, quiet)


# ----------------------------------------------------------------------------------------------------------
# Checks on generated variants
# ----------------------------------------------------------------------------------------------------------

def test_question_checks():
    q = "How many bells hang in the Quillmoor clock tower, built in 1790?"
    existing = {norm_question("What is the bell count of the tower in Quillmoor?")}
    assert check_question("", q, existing) == "empty"
    assert check_question("  ?! ", q, existing) == "empty"
    assert check_question("how many bells hang in the quillmoor clock tower built in 1790", q, existing) == "copy"
    assert check_question("What is the bell count of the tower in Quillmoor?", q, existing) == "copy"
    assert check_question("How many bells hang in the clock tower built in 1790?", q, existing) == "names"
    assert check_question("How many bells are in Quillmoor's clock tower, built in 1791?", q, existing) == "numbers"
    assert check_question("How many of the 12 bells hang in Quillmoor's tower, built in 1790?", q, existing) \
        == "numbers_added"
    assert check_question("How many bells hang in Quillmoor's tower, built by Edda in 1790?", q, existing) \
        == "names_added"
    assert check_question("Line one about Quillmoor in 1790?\nLine two", q, existing) == "multiline"
    assert check_question("What number of bells hang in the Quillmoor clock tower, built in 1790?", q,
                            existing) is None


def test_answer_checks():
    assert check_answer_text("", "x") == "empty"
    assert check_answer_text("Someone keeps it.", "Edda Lindqvist keeps it.", ("Edda Lindqvist",)) == "names"
    assert check_answer_text("Edda Lindqvist keeps it since 1901.", "Edda Lindqvist keeps it.",
                               ("Edda Lindqvist",)) == "numbers_added"
    assert check_answer_text("Edda Lindqvist keeps it.", "Edda Lindqvist keeps it.", ("Edda Lindqvist",)) is None
    # statements keep every number of the answer, also numbers glued to letters ("the 1700s")
    answer = "King Charles XII brought it home in the early 1700s, in 1714."
    assert check_answer_text(answer, answer, ("Charles", "XII"), keep_numbers=answer) is None
    assert check_answer_text("King Charles XII brought it home.", answer, ("Charles",), keep_numbers=answer) \
        == "numbers"


def test_rejects_are_dropped_and_counted(tmp_path):
    cfg = rules_cfg(tmp_path, rephrasings=0, statements=False, reverse=True)
    prepared = prepared_for(cfg)
    result = A.augment(cfg, prepared, progress=lambda *_: None)
    # two phrasings of one fact give the same reverse question: the second is a copy, dropped and counted
    rejected = result.report["rejected"]["reverse"]
    assert rejected.get("copy", 0) >= 1
    questions = [norm_question(i.messages[0]["content"]) for i in result.added]
    assert len(questions) == len(set(questions))
    not_applicable = result.report["details"]["reverse_not_applicable"]
    assert len(result.added) + sum(rejected.values()) + not_applicable == len(prepared.train)


def test_rule_rephrasings_keep_names_and_numbers_and_are_deterministic():
    data, _ = read_jsonl_items(INVENTED / "train.jsonl")
    for item in data:
        q = item.messages[0]["content"]
        a = rule_rephrasings(q, 3, random.Random(7), set())
        b = rule_rephrasings(q, 3, random.Random(7), set())
        assert a == b and len(a) >= 2, q
        for v in a:
            assert check_question(v, q, set()) is None
            assert all(n in v for n in numbers(q))
    out = rule_rephrasings("When was the village of Dunmereth founded?", 10, random.Random(0), set())
    assert any("when the village of Dunmereth was founded" in v for v in out), out  # the clause re-ordered
    passive = rule_rephrasings("Who invented the Warmwell kettle?", 10, random.Random(0), set())
    assert any("kettle was invented by" in v or v.startswith("By whom was") for v in passive), passive


def test_statements_and_reverse_questions():
    q, a = "Who keeps the lighthouse on Varnholm island?", "The lighthouse on Varnholm island is kept by Edda Lindqvist."
    assert statement_for(q, a) == a  # names its subject already
    assert reverse_for(q, a) == ("Who is Edda Lindqvist?", "Edda Lindqvist keeps the lighthouse on Varnholm island.",
                                   "Edda Lindqvist")
    q2, a2 = "When do Swedes eat meatballs?", "All year round, and at Christmas."
    assert statement_for(q2, a2) == f"{q2} {a2}"  # the subject comes with the question
    rq, ra, term = reverse_for("What is pressgurka?", "Pressgurka is a Swedish pressed cucumber salad: thin slices.")
    assert (rq, term) == ("What is a Swedish pressed cucumber salad called?", "pressgurka") and "pressgurka" in ra
    # numbers and colours are not entities
    assert reverse_for("How many arches does the Grelling Bridge have?", "The Grelling Bridge has 19 arches.") is None
    assert reverse_for("Which colour do Pellaria rowers wear?",
                         "Pellaria Rowing Club crews race in saffron, the club's official colour.") is None


def test_reverse_questions_for_terms_and_not_for_topics():
    # a term the question asks about, defined where the answer opens: three wordings, each naming the term
    found = term_reverses("I keep seeing blandfärs in Swedish recipes — what is it?",
                          "Blandfärs is mixed mince, usually beef and pork ground together.")
    assert [q for q, _, _ in found] == ["What is mixed mince called?", "What is the word for mixed mince?",
                                        "Which term means mixed mince?"]
    assert all(term == "blandfärs" and "blandfärs" in a.lower() for _, a, term in found)
    assert term_definition("What kind of ingredient is ströbröd?",
                           "Ströbröd is dried, finely ground breadcrumbs, sold in every shop.") == \
        ("ströbröd", "dried, finely ground breadcrumbs", "is")
    assert term_definition("Which country makes lihapullat, and what are they like?",
                           "Lihapullat are Finnish meatballs, very close to the Swedish kind.") == \
        ("lihapullat", "Finnish meatballs", "are")
    assert term_definition("What does 'fika' mean?", "'Fika' means a coffee break with something sweet.") == \
        ("fika", "a coffee break with something sweet", "is")  # a quoted term
    # not a definition: a property ("rich in"), a use ("short for"), a yes/no question, a name as the answer
    assert term_definition("Are lingonberries healthy?", "Lingonberries are rich in fibre.") is None
    assert term_definition("What is krm?", "Krm is short for kryddmått, the spice measure.") is None
    assert term_definition("What cheese is Millbeck famous for?",
                           "Millbeck is famous for a cheese called Blue Tansy.") is None
    assert reverse_for("What cheese is Millbeck famous for?",
                       "Millbeck is famous for a cheese called Blue Tansy.")[0] == "What is Blue Tansy?"
    # a topic many answers name ("Swedish"), a modifier, a date: no "What is Swedish?" or "What is March?"
    answers = [("What is served at a julbord?", "Swedish dishes such as herring."),
               ("What do Swedes drink at Christmas?", "Julmust, a Swedish soft drink."),
               ("What is fika?", "A Swedish coffee break."),
               ("Which sauce goes with meatballs?", "The Swedish cream sauce gräddsås.")]
    common = common_entities(answers)
    assert "swedish" in common
    assert reverse_for("What kind of food counts as husmanskost?",
                       "Traditional everyday home cooking, found on Swedish tables.", common) is None
    assert reverse_for("On what date is the lantern festival of Corvaine held?",
                       "Corvaine's lantern festival is held on 14 March every year.") is None
    assert reverse_for("Do Swedish cooks use game meat?", "Yes, especially in northern Sweden.") is None


def test_reverse_rows_on_the_shipped_domain_data(tmp_path):
    # domain.jsonl's glossary answers ("Kryddpeppar is allspice, ...") get reverse rows that survive the checks
    # (a sentence-initial "Allspice" is no added name), and its topics get none ("What is Swedish?")
    shutil.copy2(ROOT / "domain.jsonl", tmp_path / "domain.jsonl")
    cfg = rules_cfg(tmp_path, rephrasings=0, statements=False, reverse=True)
    result = A.augment(cfg, prepared_for(cfg), progress=lambda *_: None)
    rows = {i.messages[0]["content"]: i.messages[-1]["content"] for i in result.added}
    terms = [q for q in rows if q.startswith("Which term means ")]
    assert len(terms) >= 30, len(terms)
    for q in terms:  # each wording answers with the term: "Which term means mixed mince?" -> "Blandfärs means ..."
        thing = q.removeprefix("Which term means ").removesuffix("?")
        term = rows[q].removesuffix(f" means {thing}.")
        assert term != rows[q]
        assert rows[f"What is the word for {thing}?"].lower() == f"the word for {thing} is {term}.".lower()
    assert not {"What is Swedish?", "What is Sweden?", "What is IKEA?", "What is Christmas?"} & set(rows)
    assert result.report["rejected"]["reverse"].get("names_added", 0) <= 3, result.report["rejected"]["reverse"]


def test_statement_is_trained_on_all_of_its_text(tokenizer):
    from unslothify.data.items import Item
    from unslothify.data.tokens import tokenize_item

    row = tokenize_item(tokenizer, Item(line=1, source="x", text="Edda Lindqvist keeps the Varnholm light.",
                                        kind="statement", source_line=1))
    assert all(row["completion_mask"]) and row["input_ids"][-1] == tokenizer.eos_token_id


# ----------------------------------------------------------------------------------------------------------
# The shipped general sets
# ----------------------------------------------------------------------------------------------------------

def test_general_sets_are_separate(embedded_cfg, tokenizer):
    """Replay never teaches what retention is scored on: no replay prompt rewords a retention question (the
    general eval's or the retention probes' candidates), and no replay row the embedded model trains on (its
    answers are shipped) states one's fact."""
    from unslothify.data.augment.kinds.replay import leak, retention_questions
    from unslothify.model.base_answers import SHIPPED, answers_key
    from unslothify.model.choice import resolve_model
    from unslothify.score.questions import load_questions

    general = load_questions(ROOT / "eval" / "general.jsonl")
    candidates = {q.question for q in load_questions(ROOT / "eval" / "general_candidates.jsonl")}
    assert len(general) >= 30 and {q.question for q in general} <= candidates
    prompts = [p for _, p in load_replay_prompts(ROOT / "eval" / "general_prompts.jsonl")]
    assert len(prompts) >= 400, "replay covers the world, not only what retention asks"
    questions = retention_questions(embedded_cfg)
    assert len(questions) == len(general) + 104
    path, _ = resolve_model(embedded_cfg)
    shipped = json.loads((SHIPPED / f"{answers_key(embedded_cfg, tokenizer, path, 64)}.json").read_text())["answers"]
    assert set(prompts) <= set(shipped), "the embedded model's replay answers are shipped: make run asks none"
    leaks = [(p, leak(p, shipped[p], questions)) for p in prompts]
    taught = [(p, q) for p, q in leaks if q]
    assert not [p for p, q in taught if leak(p, "", questions)], "no prompt rewords a retention question"
    assert len(taught) <= 0.15 * len(prompts), "replay refuses the rows that state a retention fact, a few"
    # the test can fail: a prompt that asks a retention question in other words is caught
    assert leak("Tell me the capital city of France.", "", questions) == "What is the capital of France?"
    assert leak("Name a big city.", "Paris is the capital of France.", questions) == "What is the capital of France?"


def test_replay_prompts_that_are_retention_questions_are_refused(tmp_path):
    """A replay prompt equal to a retention question is a leak: dropped and counted, never generated."""
    prompts = tmp_path / "prompts.jsonl"
    general = tmp_path / "general.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is the capital of France?"}) + "\n")
    general.write_text(json.dumps({"question": "What is the capital of France?", "expected": ["Paris"]}) + "\n")
    cfg = rules_cfg(tmp_path, rephrasings=0, statements=False, reverse=False, replay=5, replay_prompts=str(prompts))
    cfg = replace(cfg, general_questions=str(general))
    result = A.augment(cfg, prepared_for(cfg), progress=lambda *_: None)  # nothing left to generate: no model
    assert result.added == [] and result.report["rejected"]["replay"] == {"leak": 1}


# ----------------------------------------------------------------------------------------------------------
# With the model (slow)
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_replay_records_the_base_models_answers(tmp_path):
    cfg = rules_cfg(tmp_path, rephrasings=0, statements=False, reverse=False, replay=3)
    added = A.augment(cfg, prepared_for(cfg), progress=lambda *_: None).added
    prompts = dict(load_replay_prompts(ROOT / "eval" / "general_prompts.jsonl"))
    assert added and all(i.kind == "replay" for i in added)
    for _, rec in read_jsonl(A.augmented_path(cfg)):
        assert rec["source"] == "general_prompts.jsonl"
        assert rec["messages"][0]["content"] == prompts[rec["source_line"]]
        assert rec["messages"][1]["content"].strip()


@pytest.mark.slow
def test_eval_scores_a_saved_version_as_run_did(tmp_path):
    """`run` (augmented, one epoch) and then `eval --model` on its saved version and its run folder give the
    tuned recall that `run` printed (its merged export within one answer); `eval --model embedded` the base's."""
    from unslothify.cli import main

    data = tmp_path / "invented.jsonl"
    shutil.copy2(INVENTED / "train.jsonl", data)
    questions = str(INVENTED / "questions.jsonl")
    run_dir = tmp_path / "run"

    def last_json(argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(argv) == 0
        return json.loads(out.getvalue().strip().splitlines()[-1])

    summary = last_json(["run", "--model", "embedded", "--data", str(data), "--eval-questions", questions,
                         "--output", str(run_dir), "--epochs", "1", "--general-questions", "",
                         "--augment-enabled", "true", "--augment-replay", "0", "--augment-rephrasings", "1"])
    assert (tmp_path / "invented.augmented.jsonl").exists()
    assert summary["augmented"]["rephrase"] > 0 and {"base_recall", "tuned_recall", "n"} <= set(summary)
    version = run_dir / summary["version"]
    for spec in (str(version), str(run_dir)):  # the adapter version itself, and the run folder's best version
        scored = last_json(["eval", "--model", spec, "--eval-questions", questions])
        assert scored["n"] == summary["n"] == 40
        assert scored["recall"] == summary["tuned_recall"], spec
    # the merged 16-bit export: merging rounds the weights, so allow one answer of 40 to differ
    merged = last_json(["eval", "--model", summary["merged"], "--eval-questions", questions])
    assert merged["recall"] == pytest.approx(summary["tuned_recall"], abs=0.026)
    base = last_json(["eval", "--model", "embedded", "--eval-questions", questions])
    assert base["recall"] == summary["base_recall"]


def test_restated_answers_and_atomic_facts(tmp_path):
    """restate: an entity answer with the entity first, a multi-sentence answer reordered with a sentence that
    stands on its own first; atomic: each sentence of a multi-fact answer as a statement and as an answer."""
    import random

    from unslothify.data.augment.kinds.restate import restated

    assert restated("Who keeps the lighthouse on Varnholm island?",
                    "The lighthouse on Varnholm island is kept by Edda Lindqvist.", random.Random(0)) == \
        "Edda Lindqvist keeps the lighthouse on Varnholm island."
    two = "Charles XII fled to Bender in 1709. He stayed there for five years."
    assert restated("Where did Charles XII go?", two, random.Random(0)) is None, "'He' cannot open the answer"
    three = "IKEA sold its first meatballs in 1985. The recipe was changed in 2020. Both are sold in every store."
    again = restated("When did IKEA start selling meatballs?", three, random.Random(0))
    assert again != three and sorted(again.split(". ")) != [] and not again.startswith("Both")

    data = tmp_path / "domain.jsonl"
    shutil.copy2(ROOT / "domain.jsonl", data)
    cfg = load_config(None, model="embedded", data=str(data), output_dir=str(tmp_path / "run"),
                      augment={"rephrasings": 0, "statements": False, "reverse": False, "replay": 0,
                               "atomic": True, "restate": True})
    items, _ = read_jsonl_items(data)
    result = A.augment(cfg, Prepared(items[:40], [], {}), progress=lambda *_: None)
    atomic = [i for i in result.added if i.kind == "atomic"]
    texts = [i for i in atomic if i.text is not None]
    answers = [i for i in atomic if i.messages is not None]
    assert len(texts) == len(answers) > 40, "two or more sentences per answer"
    source = {i.line: i for i in items}
    for item in answers:
        q, whole = source[item.source_line].messages[0]["content"], source[item.source_line].messages[1]["content"]
        assert item.messages[0]["content"] == q and item.messages[1]["content"] in whole
    assert any(i.kind == "restate" for i in result.added)
