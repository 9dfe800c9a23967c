"""The pure functions that size a run: SFTConfig from the knobs and the call, padded tokens, the time plan and
the GPU memory model. Numbers worked out by hand in each test."""

import pytest

from unslothify.config import load_config, replace
from unslothify.train.plan import (fact_order, fit_step_cost, padded_tokens, plan, read_timed_steps, spanning_rows,
                                   timed_enough)
from unslothify.machine.fit import memory_needed_gib
from unslothify.train.args import Call, sft_args


def test_sft_config_gets_each_knob_as_it_is_and_the_calls_own_facts(monkeypatch):
    """What the panel shows is what TRL gets: the learning rate of a packed step included (the recipe states
    it); the call adds its epochs, its first step and the seed shifted by it (a continued call sees a fresh
    data order)."""
    import unslothify.train.args as args_module

    monkeypatch.setattr(args_module, "has_cuda", lambda: True)  # as on a GPU (Unsloth's CPU path unpacks again)
    cfg = load_config(None, model="embedded", packing=True, learning_rate=5e-4, seed=7, warmup=0.05,
                      evals_per_epoch=2)
    call = Call.of(cfg, 2.0, start_step=30, run_name="v002")
    args = sft_args(cfg, call)
    assert (args.learning_rate, args.warmup_steps, args.num_train_epochs) == (5e-4, 0.05, 2.0)
    assert (call.seed, args.seed, args.run_name) == (37, 37, "v002")
    assert args.eval_steps == pytest.approx(0.25), "2 evaluations per epoch, of 2 epochs"
    assert not args.eval_on_start, "a continued call has its first point already"
    assert sft_args(cfg, Call.of(cfg, 0.2)).eval_steps == 0.9999, "one evaluation, at the end of a short call"


def test_a_time_plan_takes_the_items_stating_one_fact_together():
    """examples/outside states each fact twice (lines 2k-1 and 2k: two wordings of one question); a slice of a
    time plan trains both or neither of most, where a shuffle of single items split half of them. Every line
    comes once, in an order fixed by the seed."""
    from conftest import ROOT
    from unslothify.data.items import read_jsonl_items

    items, _ = read_jsonl_items(ROOT / "examples" / "outside" / "train.jsonl")
    for seed in (1, 2, 3):
        order = fact_order(items, seed)
        assert sorted(order) == [i.line for i in items] and order == fact_order(items, seed)
        half = set(order[:40])
        split = sum((line in half) != (line + 1 in half) for line in range(1, 80, 2))
        assert split <= 4, (seed, split)
    assert fact_order(items, 1) != fact_order(items, 2)


def test_padded_tokens_pads_each_batch_to_its_longest_row():
    assert padded_tokens([10, 20, 30, 40], batch=2, grouped=True) == 2 * 40 + 2 * 20, "sorted: (40, 30) and (20, 10)"
    ungrouped = padded_tokens([10, 20, 30, 40], batch=2, grouped=False, seed=0)
    assert 2 * 40 + 2 * 20 <= ungrouped <= 2 * 40 + 2 * 40
    assert padded_tokens([7] * 10, batch=4, grouped=False) == 3 * 4 * 7, "the last batch counts as full"


def test_plan_sizes_each_stage():
    cfg = replace(load_config(None, model="embedded"), num_train_epochs=2.0, per_device_train_batch_size=4,
                  max_new_tokens=64, evals_per_epoch=1)
    timing = {"train_seconds_per_token": 0.001, "decode_step_seconds": 0.05}
    lengths = [100] * 40
    stages = plan(cfg, timing, lengths, eval_questions=32, general_questions=16, export=True, probes=(40, 32),
                  packed=False, answer_tokens=20, general_answer_tokens=50)
    assert stages["steps"] == 20, "40 items / 4 a step, 2 epochs"
    assert stages["training"] == pytest.approx(2 * 4000 * 0.001), "2 epochs of 40 x 100 padded tokens"
    # 3 evaluations (before, after each epoch): the 40 knowledge probes alone before training, then one generate
    # call of up to 24 new tokens for them and the 32 retention probes, 72 rows sized as 1.8 calls of 40
    assert stages["probes"] == pytest.approx((1 + 2 * 1.8) * 0.05 * 24)
    # base and tuned, 2 + 1 batches of 16 each: the held-out questions' as long as the trained answers' 90th
    # percentile (20 tokens), the general questions' as the replay answers' (50)
    assert stages["scoring"] == pytest.approx(2 * (2 * 0.05 * 20 + 1 * 0.05 * 50))
    kept = plan(cfg, timing, lengths, eval_questions=32, general_questions=16, export=True, base_asked=(0, 0),
                answer_tokens=20, general_answer_tokens=50)
    assert kept["scoring"] == pytest.approx(2 * 0.05 * 20 + 1 * 0.05 * 50), "the base's answers kept: tuned alone"
    half = plan(cfg, timing, lengths, 32, 16, True, base_asked=(0, 16), answer_tokens=20, general_answer_tokens=50)
    assert half["scoring"] == pytest.approx(2 * 0.05 * 20 + 2 * 0.05 * 50), "the base asked the general file only"
    assert plan(cfg, timing, lengths, 32, 16, True, answer_tokens=100)["scoring"] == pytest.approx(2 * 3 * 0.05 * 64), \
        "answers no longer than max_new_tokens"
    assert stages["export"] == 30.0
    packed = plan(replace(cfg, max_seq_length=400), timing, lengths, 32, 16, False, packed=True)
    assert packed["steps"] == 6, "4000 tokens in rows of 400, 4 rows a step: 3 steps an epoch"
    assert packed["training"] == pytest.approx(2 * 4000 * 0.001) and packed["export"] == 0.0
    fixed = plan(cfg, {**timing, "train_seconds_per_step": 0.2, "train_one_off_seconds": 7.0}, lengths, 0, 0, False,
                 packed=False)
    assert fixed["training"] == pytest.approx(20 * 0.2 + 2 * 4000 * 0.001 + 7.0), "per step, per token, once"


def test_step_cost_is_fitted_as_a_cost_per_step_and_per_token():
    tokens = [800, 600, 400, 200]
    assert fit_step_cost([0.25 + 0.001 * t for t in tokens], tokens) == pytest.approx((0.25, 0.001))
    assert fit_step_cost([0.3, 0.3, 0.2, 0.4], tokens) == pytest.approx((0.3, 0.0)), "longer rows no dearer: per step"
    assert fit_step_cost([0.9, 0.6, 0.45, 0.1], tokens) == pytest.approx((0.0, 2.05 / 2000)), "a < 0: per token"
    assert fit_step_cost([0.5, 0.7], [400, 400]) == pytest.approx((0.6, 0.0)), "one size: its mean per step"


def test_timed_steps_are_read_without_their_warm_up_and_recompiles():
    # two warm-up steps, then steps of 0.1 s + 0.001 s a token, one of them a 5-second recompile
    tokens = [400, 400, 800, 600, 400, 200, 400, 600]
    seconds = [9.0, 3.0] + [0.1 + 0.001 * t for t in tokens[2:]]
    seconds[5] += 5.0
    read = read_timed_steps(seconds, tokens)
    assert (read["train_seconds_per_step"], read["train_seconds_per_token"]) == pytest.approx((0.1, 0.001))
    assert read["train_one_off_seconds"] == pytest.approx(9.0 + 3.0 - 2 * 0.5 + 5.0), "warm-up and recompile, once"


def test_timing_stops_early_only_where_steps_are_slow():
    warm = [30.0, 12.0]
    assert timed_enough(warm + [6.0, 5.5, 7.0, 5.0]), "a T4's packed 7B steps: 4 timed are enough"
    assert not timed_enough(warm + [6.0, 5.5, 7.0]), "at least 4 timed"
    assert not timed_enough(warm + [0.15, 0.16, 11.0, 9.0, 0.15]), "two recompiles among fast steps: keep timing"
    assert not timed_enough([1.3] * 8), "2 CPU cores: all the steps asked"


def test_timed_rows_span_the_lengths():
    lengths = list(range(100, 0, -1))  # row i is 100 - i tokens long
    rows = spanning_rows(lengths, batch=2, steps=3)
    assert sorted(lengths[i] for i in rows) == [1, 21, 41, 60, 80, 100], "evenly spaced ranks, shortest to longest"
    assert sorted(spanning_rows([5, 6, 7], batch=2, steps=3)) == [0, 1, 2], "fewer rows than asked: all of them"


def test_gpu_memory_model():
    qlora = load_config(None, recipe="mistral-7b-qlora")
    # 4-bit with checkpointing: 4.9 GiB + 0.17 GiB per 1000 tokens (8 x 512 = 4096) + what a whole run adds
    # (3.4 GiB, measured on the T4 simulation) + 0.6 GiB of CUDA context
    assert memory_needed_gib(replace(qlora, retention_weight=0)) == round(4.9 + 0.17 * 4.096 + 3.4 + 0.6, 1) == 9.6
    # the retention term's logits: 0.74 GiB per 1000 tokens more (the T4 simulation: 12.73 GiB against 9.71)
    assert memory_needed_gib(qlora) == round(4.9 + (0.17 + 0.74) * 4.096 + 3.4 + 0.6, 1) == 12.6
    sixteen = load_config(None, recipe="mistral-7b-lora-16bit")
    assert memory_needed_gib(replace(sixteen, retention_weight=0)) == round(14.0 + 4.4 * 4.096 + 3.4 + 0.6, 1) == 36.0


def test_compile_blocks_off_holds_for_the_process_and_a_users_choice_is_kept(monkeypatch):
    """compile_blocks false turns Unsloth's block compile off for the process (it reads the variable at every
    training forward); a later load that asks for compiling takes back only what the package set."""
    import os

    from unslothify.model import load

    monkeypatch.delenv(load.BLOCK_COMPILE_ENV, raising=False)
    monkeypatch.setattr(load, "_block_compile_set_here", False)
    load.compile_blocks(False)
    assert os.environ[load.BLOCK_COMPILE_ENV] == "0"
    load.compile_blocks(True)
    assert load.BLOCK_COMPILE_ENV not in os.environ
    monkeypatch.setenv(load.BLOCK_COMPILE_ENV, "0")  # the user's own
    load.compile_blocks(True)
    assert os.environ[load.BLOCK_COMPILE_ENV] == "0"
