"""The training recipes scripts/benchmark.py compares with ours, as config knobs plus, where a recipe needs
them, SFTConfig arguments our config does not expose. Imports nothing heavy, so the plain transformers + PEFT
benchmark worker may use it.

    SEED              the project's first recipe: every item padded to 512 tokens, batch 2 x accumulation 4
    UNSLOTH_NOTEBOOK  Unsloth's Mistral notebook: batch 2 x 4, no packing, max_seq_length 2048, adamw_8bit
    PLAIN_PEFT        transformers + PEFT + bitsandbytes QLoRA without Unsloth, same batches as the notebook
    OURS              padding-free packing of whole items into rows (recipes/mistral-7b-qlora.yaml's method)
"""

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

# Our GPU recipes (recipes/mistral-7b-qlora.yaml, recipes/mistral-7b-lora-16bit.yaml): whole items packed
# padding-free into rows of max_seq_length tokens, per_device_train_batch_size rows per step, 4096 tokens per
# step (8 x 512 and 2 x 2048 measured the same).
OURS = {**COMMON, "packing": True, "gradient_accumulation_steps": 1}
