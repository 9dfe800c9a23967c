"""The pure functions that size a run: the learning rate of packed steps, items per step, padded tokens, the
time plan and the GPU memory model. Numbers worked out by hand in each test."""

import math

import pytest

from unslothify.config import Config, load_config, replace
from unslothify.machine.estimate import padded_tokens, plan
from unslothify.machine.fit import memory_needed_gib
from unslothify.train.args import LR_REFERENCE_ITEMS, items_per_step, learning_rate


def test_items_per_step_and_the_packed_learning_rate(monkeypatch):
    cfg = Config(packing=False, per_device_train_batch_size=8, gradient_accumulation_steps=2, learning_rate=2e-4)
    assert items_per_step(cfg, mean_item_tokens=80.0) == 16, "unpacked: one item a row"
    assert learning_rate(cfg, 80.0) == 2e-4, "unpacked steps keep the rate"
    # packed (a GPU): rows of 512 tokens hold 512 / 64 = 8 items; 8 rows x 2 passes = 128 items a step
    import unslothify.train.args as sc

    monkeypatch.setattr(sc, "has_cuda", lambda: True)
    packed = replace(cfg, packing=True, max_seq_length=512)
    assert items_per_step(packed, 64.0) == 128
    assert learning_rate(packed, 64.0) == pytest.approx(2e-4 * math.sqrt(128 / LR_REFERENCE_ITEMS))  # 8e-4
    assert learning_rate(replace(packed, packed_lr_scale=False), 64.0) == 2e-4
    assert learning_rate(replace(packed, learning_rate=5e-3), 64.0) == 1e-2, "capped at 1e-2"
    assert learning_rate(packed, None) == 2e-4, "no lengths known: unscaled"


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
                  packed=False)
    assert stages["steps"] == 20, "40 items / 4 a step, 2 epochs"
    assert stages["training"] == pytest.approx(2 * 4000 * 0.001), "2 epochs of 40 x 100 padded tokens"
    # 3 evaluations (before, after each epoch): the 40 knowledge probes alone before training, then one generate
    # call of up to 24 new tokens for them and the 32 retention probes, 72 rows sized as 1.8 calls of 40
    assert stages["probes"] == pytest.approx((1 + 2 * 1.8) * 0.05 * 24)
    assert stages["scoring"] == pytest.approx(2 * (2 + 1) * 0.5 * 0.05 * 64), "base and tuned, half the cap"
    assert stages["export"] == 30.0
    packed = plan(replace(cfg, max_seq_length=400), timing, lengths, 32, 16, False, packed=True)
    assert packed["steps"] == 6, "4000 tokens in rows of 400, 4 rows a step: 3 steps an epoch"
    assert packed["training"] == pytest.approx(2 * 4000 * 0.001) and packed["export"] == 0.0


def test_gpu_memory_model():
    qlora = load_config(None, recipe="mistral-7b-qlora")
    # 4-bit with checkpointing: 4.9 GiB + 0.17 GiB per 1000 tokens (8 x 512 = 4096) + what a whole run adds
    # (3.4 GiB, measured on the T4 simulation) + 0.6 GiB of CUDA context
    assert memory_needed_gib(qlora) == round(4.9 + 0.17 * 4.096 + 3.4 + 0.6, 1) == 9.6
    sixteen = load_config(None, recipe="mistral-7b-lora-16bit")
    assert memory_needed_gib(sixteen) == round(14.0 + 4.4 * 4.096 + 3.4 + 0.6, 1) == 36.0
