"""The time plan on a slower machine: with cap_shortens: facts (the CPU recipe), what max_train_minutes cannot fit
shortens the facts trained, not their passes. Timed at two threads and at one (a machine half as fast, so that
CI covers a slower machine than its own), the slower machine plans fewer facts, trains exactly those for every
epoch asked, and the score reads the held-out questions about them."""

import shutil

import pytest

from conftest import INVENTED


@pytest.mark.slow
def test_a_slower_machine_plans_fewer_facts_and_trains_them_for_every_epoch(tmp_path):
    import torch

    from unslothify.config import load_config
    from unslothify.data.prepare import prepare
    from unslothify.train.plan import time_plan
    from unslothify.model.load import for_inference
    from unslothify.score.questions import score_version
    from unslothify.train.session import FineTune

    data = tmp_path / "facts.jsonl"
    shutil.copy2(INVENTED / "train.jsonl", data)
    cfg = load_config(None, model="embedded", data=str(data), eval_questions=str(INVENTED / "questions.jsonl"),
                      output_dir=str(tmp_path / "run"), max_train_minutes=1.0, cap_shortens="facts",
                      augment={"replay": 40})
    assert (cfg.num_train_epochs, cfg.evals_per_epoch) == (4.5, 0.5), "the CPU recipe's epochs and evaluations"
    prepare(cfg, plot=False, progress=lambda *_: None)
    said = []
    ft = FineTune.start(cfg, progress=said.append)
    threads = torch.get_num_threads()
    plans = {}
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            ft.timings.clear()  # timed again at this speed
            plans[n] = time_plan(ft, cfg, cfg.num_train_epochs)
        assert plans[1][0] == plans[2][0] == 4.5, "every epoch asked, for fewer facts"
        slow, fast = plans[1][1], plans[2][1]
        assert 0 < len(slow) < len(fast) < 80, (len(slow), len(fast))
        assert set(slow) <= set(fast), "the facts come in one seeded order: a slower machine trains a prefix"
        assert any(m.startswith(f"This machine learns about {len(slow)} of the 80 facts") for m in said)
        version = ft.train(cfg)  # still at one thread: the plan is the slow machine's
    finally:
        torch.set_num_threads(threads)
    m = version.manifest
    assert m["trained_facts"] == slow and m["epochs_this_call"] == 4.5
    rows = ft.training_data(cfg, slow).items
    trained = {i.source_line for i in rows if i.kind != "replay"}
    assert trained == set(slow), "the call's rows are those facts' (and their rewordings), and replay"
    fact_rows, replay = sum(i.kind != "replay" for i in rows), sum(i.kind == "replay" for i in rows)
    assert replay >= min(40, round(fact_rows / 5)), "a slice keeps replay rows of a fifth of its rows, not its share"
    for_inference(ft.model)
    summary, _ = score_version(ft.model, ft.tokenizer, cfg, version, progress=lambda *_: None)
    assert summary["trained_facts"] == len(slow) and 0 < summary["trained_facts_n"] < summary["n"]
