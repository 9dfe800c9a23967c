"""The embedded model's answers shipped with the project (eval/base-answers/): its replay answers to every
general prompt and its answers to the eval files the project scores, so that a first `make run` on a CPU asks
none of them (model/base_answers.py keeps them per model; this writes the embedded model's, on a CPU).

    python -m scripts.ship_base_answers
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_FILES = ["eval/questions.jsonl", "eval/general.jsonl", "examples/invented/questions.jsonl",
              "examples/invented-b/questions.jsonl", "examples/confirm/questions.jsonl"]


def main():
    from unslothify.config import load_config
    from unslothify.data.augment.kinds.replay import load_prompts, prompts_path
    from unslothify.fsutil import cache_dir
    from unslothify.machine.device import has_cuda
    from unslothify.model.base_answers import SHIPPED, answers_key, base_answers
    from unslothify.model.generate import answer_batch
    from unslothify.model.load import for_inference, load_base, load_tokenizer
    from unslothify.score.questions import load_questions

    assert not has_cuda(), "the shipped answers are the CPU's (a GPU run keeps its own in the user cache)"
    cfg = load_config(None, model="embedded")
    model, tokenizer, path = load_base(cfg)
    for_inference(model)
    key = answers_key(cfg, tokenizer, path, cfg.max_new_tokens)
    assert key == answers_key(cfg, load_tokenizer(cfg), path, cfg.max_new_tokens), "replay and scoring share a key"

    def ask(questions):
        return answer_batch(model, tokenizer, questions, max_new_tokens=cfg.max_new_tokens,
                            system_prompt=cfg.system_prompt, desc="Base answers")

    batches = [[p for _, p in load_prompts(prompts_path(cfg))]]
    batches += [[q.question for q in load_questions(ROOT / f)] for f in EVAL_FILES]
    for questions in batches:
        base_answers(questions, cfg, tokenizer, path, ask)
    SHIPPED.mkdir(parents=True, exist_ok=True)
    kept = cache_dir() / "base-answers" / f"{key}.json"
    wanted = {q for qs in batches for q in qs}
    answers = {q: a for q, a in json.loads(kept.read_text())["answers"].items() if q in wanted}
    shipped = SHIPPED / f"{key}.json"
    shipped.write_text(json.dumps({"model": Path(path).name, "device": "cpu", "max_new_tokens": cfg.max_new_tokens,
                                   "answers": dict(sorted(answers.items()))}, ensure_ascii=False, indent=0) + "\n")
    print(f"{len(answers)} answers -> {shipped.relative_to(ROOT)}")
    kept.unlink()  # what is shipped is read from the project


if __name__ == "__main__":
    main()
