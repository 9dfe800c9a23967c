"""Training recipes compared by scripts/benchmark.py, and the packing budget chosen from the data.

Each recipe is a set of config knobs (see config.py) plus, where a recipe needs them, SFTConfig
arguments our config does not expose. Importing this module imports nothing heavy (no torch, no unsloth),
so the plain transformers + PEFT benchmark worker may use it.

    SEED              the project's first recipe: every item padded to 512 tokens, batch 2 x accumulation 4
    UNSLOTH_NOTEBOOK  Unsloth's Mistral notebook: batch 2 x 4, no packing, max_seq_length 2048, adamw_8bit
    PLAIN_PEFT        transformers + PEFT + bitsandbytes QLoRA without Unsloth, same batches as the notebook
    OURS              padding-free packing of whole items into rows, 16-bit LoRA on GPUs with the memory
"""

from __future__ import annotations

import math

# Knobs shared by every recipe: LoRA r16 on all linear layers, adamw_8bit, lr 2e-4, linear schedule.
COMMON = {"lora_r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 2e-4, "optim": "adamw_8bit",
          "lr_scheduler_type": "linear"}

SEED = {**COMMON, "load_in_4bit": True, "packing": False, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 4, "max_seq_length": 512, "gradient_checkpointing": True}
SEED_SFT = {"pad_to_multiple_of": 512}  # every row padded to 512 tokens (padding="max_length")

UNSLOTH_NOTEBOOK = {**COMMON, "load_in_4bit": True, "packing": False, "per_device_train_batch_size": 2,
                    "gradient_accumulation_steps": 4, "max_seq_length": 2048, "gradient_checkpointing": True}
# As in Unsloth's notebooks' SFTConfig (padding_free left unset: Unsloth chooses).
UNSLOTH_NOTEBOOK_SFT = {"warmup_steps": 5, "weight_decay": 0.001, "seed": 3407}

PLAIN_PEFT = dict(UNSLOTH_NOTEBOOK)

# The GPU recipe (the config defaults plus gpu.recommend()'s memory-dependent choices): whole items
# packed padding-free into rows of max_seq_length tokens, per_device_train_batch_size rows per step,
# 4096 tokens per step (config default 8 x 512, recommend() 2 x 2048: measured the same).
OURS = {**COMMON, "packing": True, "gradient_accumulation_steps": 1}
# What measured fastest on an H100 80GB (docs/benchmark.md): 16-bit LoRA, no gradient checkpointing, fused
# AdamW, 2 rows x 2048 tokens: 10.3k tokens/s, 38 % MFU, 31 GiB, 3.6 s per epoch of domain.jsonl.
OURS_H100 = {**OURS, "load_in_4bit": False, "gradient_checkpointing": False, "optim": "adamw_torch_fused",
             "per_device_train_batch_size": 2, "max_seq_length": 2048}


def packing_plan(lengths: list[int], tokens_per_step: int = 4096, min_updates_per_epoch: int = 8,
                 row_tokens: int | None = None) -> dict:
    """Rows and row length for padding-free packing, from the items' token lengths.

    The step budget is tokens_per_step (on an H100, 4096 tokens ran at 83-95 % of the throughput of 8192 or
    16384, with 2-4x the optimizer updates per epoch: docs/benchmark.md), lowered where needed so an epoch
    still has min_updates_per_epoch optimizer updates
    (a small data set must not shrink to a handful of updates). Rows are max_seq_length tokens long: at
    least the longest item (items are never split), rounded up to a multiple of 64.
    """
    if not lengths:
        raise ValueError("no items")
    longest = max(lengths)
    total = sum(lengths)
    budget = min(tokens_per_step, max(longest, total // max(1, min_updates_per_epoch)))
    row = row_tokens or max(_round_up(longest, 64), min(2048, _round_up(budget, 64)))
    rows = max(1, budget // row)
    steps = math.ceil(total / (rows * row))
    return {"max_seq_length": row, "per_device_train_batch_size": rows, "tokens_per_step": rows * row,
            "updates_per_epoch": steps, "items_per_update": round(len(lengths) / steps, 1)}


def _round_up(n: int, k: int) -> int:
    return ((n + k - 1) // k) * k
