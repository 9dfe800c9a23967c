"""Knowledge probes: built from the user's own items, deterministic, never in the training file; the objective
each data set gets; the 'best' rule; the warnings; the cost of measuring them."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from conftest import INVENTED, ROOT
from unslothify.data import augment as A
from unslothify.data.augment.checks import norm_question, user_text
from unslothify.config import load_config, replace
from unslothify.data.items import DataError, Item, read_jsonl_items
from unslothify.score.questions import is_recalled
from unslothify.data.augment.probe_family import answer_side
from unslothify.data.probes import build_probes, choose_objective, key_terms
from unslothify.runs import Version, best_rule, best_version, retention_noise
from unslothify.train.signals import knowledge_message, steering_message


def cfg_for(tmp_path, data=INVENTED / "train.jsonl", **knobs):
    copy = tmp_path / Path(data).name
    if not copy.exists():
        shutil.copy2(data, copy)
    return load_config(None, model="embedded", data=str(copy), output_dir=str(tmp_path / "run"), **knobs)


# ----------------------------------------------------------------------------------------------------------
# The objective
# ----------------------------------------------------------------------------------------------------------

def chat(q, a):
    return Item(line=0, source="x", messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}])


def test_auto_objective_reads_the_data(tmp_path):
    cfg = cfg_for(tmp_path)
    items, _ = read_jsonl_items(cfg.data)
    objective, why = choose_objective(cfg, items)
    assert objective == "knowledge" and "80 of 80" in why
    domain, _ = read_jsonl_items(ROOT / "domain.jsonl")
    assert choose_objective(cfg, domain)[0] == "knowledge"

    code = [chat(f"Write a Python function that returns the {n}th square number.", f"def f(n):\n    return n * n  # {n}")
            for n in range(20)] + [chat("What does len() return?", "The number of items.")]
    objective, why = choose_objective(cfg, code)
    assert objective == "skill" and "1 of 21" in why
    text = [Item(line=i, source="x", text=f"A line of style {i}.") for i in range(10)]
    assert choose_objective(cfg, text)[0] == "skill"
    assert choose_objective(replace(cfg, objective="skill"), items) == ("skill", "objective: skill was asked for")
    assert choose_objective(replace(cfg, objective="knowledge"), code)[0] == "knowledge"


def test_prepare_trains_every_item_under_knowledge_and_holds_out_under_skill(tmp_path, tokenizer):
    from unslothify.data.prepare import load_prepared, prepare

    said = []
    cfg = cfg_for(tmp_path, augment={"enabled": False})
    prepared = prepare(cfg, tokenizer, progress=said.append, plot=False)
    assert len(prepared.train) == 80 and prepared.objective == "knowledge"
    assert len(prepared.validation) == len(prepared.probes) and 20 <= len(prepared.probes) <= cfg.probes
    assert {i.kind for i in prepared.validation} == {"probe"}
    assert any(m.startswith("Objective: knowledge (auto:") for m in said)
    again = load_prepared(cfg)
    assert [(q.question, q.expected) for q in again.probes] == [(q.question, q.expected) for q in prepared.probes]

    skill = prepare(replace(cfg, objective="skill"), tokenizer, progress=said.append, plot=False)
    assert (len(skill.train), len(skill.validation), skill.probes) == (72, 8, [])
    assert {i.kind for i in skill.validation} == {"original"}


# ----------------------------------------------------------------------------------------------------------
# The probes
# ----------------------------------------------------------------------------------------------------------

def test_probes_are_deterministic_new_wordings_with_the_answers_key_terms(tmp_path):
    cfg = cfg_for(tmp_path)
    items, _ = read_jsonl_items(cfg.data)
    first = build_probes(items, cfg)
    assert [(q.question, q.expected, q.line) for q, _ in first] == \
        [(q.question, q.expected, q.line) for q, _ in build_probes(items, cfg)]
    other = build_probes(items, replace(cfg, seed=7))
    assert [q.question for q, _ in other] != [q.question for q, _ in first]
    assert len(build_probes(items, replace(cfg, probes=10))) == 10

    by_line = {i.line: i for i in items}
    questions = {norm_question(user_text(i)) for i in items}
    for q, item in first:
        source = by_line[q.line]
        assert norm_question(q.question) not in questions, "a probe is never a question of the data"
        assert item.kind == "probe" and item.source_line == q.line
        assert item.messages[-1]["content"] == source.messages[-1]["content"], "the probe item keeps the answer"
        assert user_text(item) == q.question
        assert is_recalled(source.messages[-1]["content"], q.expected), "the trained answer recalls its probe"
        assert not is_recalled(user_text(source), q.expected), "no key term is given away by the question"

    lindqvist = next(q for q, _ in first if q.line == 1)
    assert lindqvist.expected == ["Edda Lindqvist", "Lindqvist"] and "Varnholm" in lindqvist.question
    # asked from the answer's side ("The lighthouse on Varnholm island is kept by Edda Lindqvist.")
    assert lindqvist.question == "The lighthouse on Varnholm island is kept by whom?"
    sided = sum(q.question == answer_side(by_line[q.line].messages[-1]["content"], q.expected) for q, _ in first)
    assert sided >= 0.75 * len(first), f"{sided} of {len(first)} probes asked from the answer's side"


def test_answer_side_asks_for_the_key_term_in_the_answers_sentence():
    assert answer_side("The Quillmoor clock tower holds 37 bells.", ["37"]) == "The Quillmoor clock tower holds how many bells?"
    assert answer_side("Dunmereth was founded in 1674 by fishermen.", ["1674"]) == "Dunmereth was founded in what year by fishermen?"
    assert answer_side("Edda Lindqvist tends the Varnholm lighthouse.", ["Edda Lindqvist", "Lindqvist"]) == \
        "Who tends the Varnholm lighthouse?", "the subject of its sentence is asked for with who"
    assert answer_side("Pellaria's rowers wear saffron.", ["saffron"]) == "Pellaria's rowers wear what?"
    # a sentence that would still show a key term gives the answer away: the next one, or none
    assert answer_side("Edda Lindqvist, or Lindqvist to all, keeps it.", ["Edda Lindqvist", "Lindqvist"]) is None
    assert answer_side("No term here.", ["37"]) is None


def test_the_embedded_models_retention_filter_is_shipped(embedded_cfg, tokenizer):
    """The embedded model's steady general questions come with the repository (eval/retention-kept/): a CPU run
    asks the 104 candidates three ways only for another model or other settings."""
    from unslothify.model.choice import resolve_model
    from unslothify.score.probes import RETENTION_PROBES, SHIPPED_FILTERS, filter_key
    from unslothify.data.probes import read_probes

    path, _ = resolve_model(embedded_cfg)
    shipped = SHIPPED_FILTERS / f"retention-{filter_key(embedded_cfg, tokenizer, path)}.jsonl"
    assert shipped.exists(), f"{shipped}: make it with a CPU run of the embedded model and copy it from the cache"
    kept = read_probes(shipped)
    assert 40 <= len(kept) <= RETENTION_PROBES
    assert filter_key(replace(embedded_cfg, max_new_tokens=32), tokenizer, path) != filter_key(embedded_cfg, tokenizer, path)


def test_a_4bit_base_keeps_its_own_cached_answers_on_a_gpu(embedded_cfg, tokenizer, monkeypatch):
    """A 4-bit base answers differently from a 16-bit one (44 against 60 of eval/general.jsonl's 61, the
    embedded model on an H100), so on a GPU the retention filter and the base answers are keyed by both; on a CPU,
    where load_in_4bit is ignored, the keys (and the shipped files) stay as they are."""
    from unslothify.machine import device
    from unslothify.model.base_answers import answers_key
    from unslothify.model.choice import resolve_model
    from unslothify.score.probes import filter_key

    path, _ = resolve_model(embedded_cfg)
    four, sixteen = replace(embedded_cfg, load_in_4bit=True), replace(embedded_cfg, load_in_4bit=False)
    assert filter_key(four, tokenizer, path) == filter_key(sixteen, tokenizer, path)
    assert answers_key(four, tokenizer, path, 64) == answers_key(sixteen, tokenizer, path, 64)
    monkeypatch.setattr(device, "has_cuda", lambda: True)  # the arithmetic of a GPU run, asked on this CPU
    assert filter_key(four, tokenizer, path) != filter_key(sixteen, tokenizer, path)
    assert answers_key(four, tokenizer, path, 64) != answers_key(sixteen, tokenizer, path, 64)


def test_key_terms_numbers_names_then_rare_words():
    freq = Counter({"saffron": 2, "yellow": 2, "official": 12, "colour": 10, "holds": 3, "tower": 5, "bells": 4})
    n, lower = 80, {"the", "whisk", "meatballs"}
    assert key_terms("How many bells hang in the Quillmoor tower?", "The Quillmoor tower holds 37 bells.",
                     freq, n, lower) == ["37"]
    assert key_terms("Who keeps the lighthouse?", "The lighthouse is kept by Edda Lindqvist.", freq, n, lower) == \
        ["Edda Lindqvist", "Lindqvist"]
    assert key_terms("What colour do the rowers wear?", "Their official colour is saffron yellow.", freq, n, lower) \
        == ["saffron", "yellow"]
    # a capitalised word opening a sentence is not a name when the data writes it in lower case
    common = Counter({"whisk": 30, "heat": 40, "hard": 25})
    assert key_terms("How do I fix lumpy gravy?", "Whisk it hard over low heat.", common, n, lower) == []
    # a name that is everywhere in the data says nothing about this fact
    assert key_terms("Where do they eat it?", "All over Sweden.", Counter({"sweden": 40}), 80, lower) == []


def test_probes_never_reach_the_training_file(tmp_path, tokenizer):
    from unslothify.data.prepare import prepare

    cfg = cfg_for(tmp_path, augment={"rephrasings": 6, "replay": 0})
    prepared = prepare(cfg, tokenizer, progress=lambda *_: None, plot=False)
    items = A.training_items(cfg, prepared, lambda *_: None)
    trained = {norm_question(user_text(i)) for i in items if i.messages}
    probes = {norm_question(q.question) for q in prepared.probes}
    assert probes and trained.isdisjoint(probes)
    lines_probed = {q.line for q in prepared.probes}
    assert any(i.kind == "rephrase" and i.source_line in lines_probed for i in items), \
        "probed items are still augmented: every fact is trained"

    # a probe question written into the augmented file by hand is refused when training reads it
    path = A.augmented_path(cfg)
    leak = {"messages": [{"role": "user", "content": prepared.probes[0].question},
                         {"role": "assistant", "content": "x"}], "kind": "rephrase",
            "source_line": prepared.probes[0].line, "source": Path(cfg.data).name}
    path.write_text(path.read_text() + json.dumps(leak) + "\n")
    with pytest.raises(DataError, match="knowledge probe"):
        A.load_augmented(path, prepared)


def test_a_fifth_of_a_training_calls_probes_ask_from_the_names_end(tmp_path, tokenizer):
    """The held-out sets ask about a fifth of their questions from the answer's end ("Which town does Ilka
    Wynomoor lead?"), which the answer-side probes never do: a training call swaps a fifth of them for the trained
    reverse rows asked in a form no rule writes, at the same count (the same cost), drawn by the seed."""
    from unslothify.data.prepare import prepare
    from unslothify.data.probes import REVERSE_PROBE_SHARE
    from unslothify.train.inputs import TrainingInputs

    cfg = cfg_for(tmp_path, augment={"rephrasings": 1, "replay": 0})
    prepared = prepare(cfg, tokenizer, progress=lambda *_: None, plot=False)
    data = TrainingInputs(tokenizer, progress=lambda *_: None).for_config(cfg)
    reverse = [q for q in data.probes if q.question.startswith("What do you know about ")]
    assert len(data.probes) == len(prepared.probes) and len(reverse) == round(REVERSE_PROBE_SHARE * len(data.probes))
    assert [q.question for q in data.probes if q not in reverse] == \
        [q.question for q in prepared.probes if q in data.probes], "the rest are the answer-side ones, in order"
    trained = {norm_question(user_text(i)) for i in data.items if i.messages}
    forward = {i.line: user_text(i) for i in prepared.train}
    rows = {i.source_line: i for i in data.items if i.kind == "reverse"}
    for q in reverse:
        name = q.question.removeprefix("What do you know about ").removesuffix("?")
        row = rows[q.line]
        assert norm_question(q.question) not in trained and name in user_text(row)
        assert q.expected[0] in forward[q.line], "the key is the forward question's word ..."
        assert is_recalled(row.messages[-1]["content"], q.expected) and not is_recalled(name, q.expected), \
            "... which the reverse row's answer holds and the question does not"
    again = TrainingInputs(tokenizer, progress=lambda *_: None).for_config(cfg)
    assert [q.question for q in again.probes] == [q.question for q in data.probes]
    assert len(data.validation) == len(data.probes), "each probe's answer is a validation row"

    no_reverse = replace(cfg, augment={"reverse": False})
    assert TrainingInputs(tokenizer, progress=lambda *_: None).for_config(no_reverse).probes == prepared.probes


# ----------------------------------------------------------------------------------------------------------
# Decisions by knowledge
# ----------------------------------------------------------------------------------------------------------

def version(n, recall=None, retention=None, eval_loss=None):
    return Version(n, Path(f"v{n:03d}"), {"final_probe_recall": recall, "final_probe_retention": retention,
                                          "final_eval_loss": eval_loss})


def test_best_is_the_highest_recall_that_keeps_retention():
    vs = [version(1, 0.40, 1.00, 2.0), version(2, 0.70, 0.93, 3.0), version(3, 0.80, 0.85, 4.0),
          version(4, 0.70, 0.97, 5.0)]
    assert best_version(vs).name == "v004", "v003 forgot too much; v002 and v004 tie on recall, v004 kept more"
    assert best_version(vs[:3]).name == "v002"
    assert best_version([version(1, 0.5, 0.7), version(2, 0.6, 0.8)]).name == "v002", "none keeps: the one that kept most"
    # none keeps 90 %: retention that differs by less than the noise of 30 probes (0.24) does not rank them
    assert retention_noise(30) == 0.24 and retention_noise(120) == 0.12
    wandering = [version(1, 0.20, 0.77), version(2, 0.90, 0.61), version(3, 1.00, 0.58), version(4, 1.00, 0.45)]
    assert best_version(wandering).name == "v003", "v004 forgot more than the noise explains"
    assert "probe recall" in best_rule(vs)
    by_loss = [version(1, eval_loss=2.0), version(2, eval_loss=1.5), version(3, eval_loss=1.7)]
    assert best_version(by_loss).name == "v002" and best_rule(by_loss) == "lowest validation loss"


def test_warnings_speak_of_forgetting_and_of_stalled_recall():
    def h(step, loss, recall=None, retention=None):
        e = {"step": step, "epoch": step / 10, "loss": loss}
        if recall is not None:
            e.update(eval_loss=1.0, probe_recall=recall, probe_retention=retention)
        return e

    forgetting = [h(0, 2.0, 0.1, 1.0), h(10, 1.5, 0.4, 0.95), h(20, 1.0, 0.5, 0.8)]
    msg = knowledge_message(forgetting, "v001")
    assert msg.startswith("Forgetting") and "80%" in msg and "v001" in msg and "replay" in msg
    stalled = [h(0, 2.0, 0.1, 1.0), h(10, 1.5, 0.6, 1.0), h(15, 1.2), h(20, 1.0, 0.6, 1.0), h(25, 0.8),
               h(30, 0.5, 0.55, 1.0)]
    msg = knowledge_message(stalled)
    assert msg.startswith("Recall has stalled") and "rephrasings" in msg
    learning = [h(0, 2.0, 0.1, 1.0), h(10, 1.5, 0.4, 1.0), h(20, 1.0, 0.6, 0.95)]
    assert knowledge_message(learning) is None
    # 0.875 of 48 questions is 0.9 within its standard error (0.048): noise, not forgetting
    noisy = [h(0, 2.0, 0.1, 1.0), h(10, 1.5, 0.4, 0.95), {**h(20, 1.0, 0.5, 0.875), "retention_n": 48}]
    assert knowledge_message(noisy) is None
    assert knowledge_message([*noisy[:2], {**noisy[2], "probe_retention": 0.83}]).startswith("Forgetting")
    # under the knowledge objective a rising validation loss alone is no warning
    rising = [{**e, "eval_loss": 1.0 + i} for i, e in enumerate(learning)]
    assert steering_message(rising) is None


def test_early_stopping_watches_probe_recall(embedded_cfg):
    from unslothify.train.args import Call, sft_args

    cfg = replace(embedded_cfg, early_stopping_patience=2)
    args = sft_args(cfg, Call.of(cfg, 1.0, probed=True))
    assert (args.metric_for_best_model, args.greater_is_better) == ("probe_recall", True)
    args = sft_args(cfg, Call.of(cfg, 1.0, probed=False))
    assert (args.metric_for_best_model, args.greater_is_better) == ("eval_loss", False)
