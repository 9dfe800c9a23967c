"""The recipes of one way of loading the model, trained in their own process for scripts/benchmark.py
(`python -m scripts.benchmark_worker --spec JSON --result FILE`): Unsloth 4-bit or 16-bit, or plain transformers
+ PEFT (that process never imports unsloth); synthetic items with domain.jsonl's lengths, warm-up steps, then
timed steps with tokens counted in the collator. Recipes: recipes/experiments/benchmark.yaml."""

from __future__ import annotations

import gc
import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from scripts.benchmark_model import ALL_LINEAR
from unslothify.recipes import experiment


def recipe_knobs(name: str) -> dict:
    """{'knobs': ..., 'sft': ...} of a benchmark recipe, with the knobs every recipe shares and its base's."""
    recipes = experiment("benchmark")
    own = recipes[name]
    base = recipe_knobs(own["base"]) if "base" in own else {"knobs": recipes["common"]["knobs"], "sft": {}}
    return {"knobs": {**base["knobs"], **own.get("knobs", {})}, "sft": {**base["sft"], **own.get("sft", {})}}


def notebook_sft_config(recipe: dict, **extra):
    """SFTConfig as Unsloth's notebook builds it (and the plain PEFT baseline, which copies it)."""
    from trl import SFTConfig

    n = recipe["knobs"]
    return SFTConfig(per_device_train_batch_size=n["per_device_train_batch_size"],
                     gradient_accumulation_steps=n["gradient_accumulation_steps"], learning_rate=n["learning_rate"],
                     optim=n["optim"], lr_scheduler_type=n["lr_scheduler_type"], logging_steps=1,
                     max_length=n["max_seq_length"], report_to="none", **recipe["sft"], **extra)


def synthetic_dataset(lengths: list[list[int]], vocab: int, seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for n, answer in lengths:
        ids = [rng.randrange(100, vocab - 100) for _ in range(n)]
        rows.append({"input_ids": ids, "completion_mask": [0] * (n - answer) + [1] * answer})
    return Dataset.from_list(rows)


class Counter:
    """Wraps the collator: non-padding and total tokens, items per micro-batch, in call order."""

    def __init__(self, collator):
        self.collator = collator
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, features):

        batch = self.collator(features)
        ids = batch["input_ids"]
        total = ids.numel()
        if batch.get("attention_mask") is not None:
            real = int(batch["attention_mask"].sum())
        else:
            real = total
        if batch.get("position_ids") is not None and batch.get("attention_mask") is None:
            items = int((batch["position_ids"] == 0).sum())
        else:
            items = ids.shape[0]
        self.batches.append((real, total, items))
        return batch


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _mem(kind: str) -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return (torch.cuda.max_memory_allocated() if kind == "allocated" else torch.cuda.max_memory_reserved()) / 2**30


def step_timer():
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.ends = []
            self.losses = []

        def on_train_begin(self, args, state, control, **kw):
            _sync()
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            _sync()
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return Timer()


def step_profiler(name: str, first_step: int, steps: int = 2):
    """torch.profiler over `steps` optimizer steps from first_step; writes the top operators by device and by
    host time, and device-busy time per step against wall time per step, to $BENCH_PROFILE_DIR."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    out = Path(os.environ["BENCH_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)

    class Profiler(TrainerCallback):
        prof = None
        t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == first_step and self.prof is None:
                _sync()
                self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.prof is not None and state.global_step == first_step + steps:
                _sync()
                wall = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)
                ev = self.prof.key_averages()
                # Kernels only: an operator's own device time repeats that of the kernels it launched.
                device_us = sum(e.self_device_time_total for e in ev if e.device_type == DeviceType.CUDA)
                slug = "".join(c if c.isalnum() else "_" for c in name)[:60]
                text = [f"{name}: {steps} steps, wall {wall / steps:.3f} s per step, device busy "
                        f"{device_us / 1e6 / steps:.3f} s per step ({device_us / 1e6 / wall:.0%})",
                        ev.table(sort_by="self_device_time_total", row_limit=25),
                        ev.table(sort_by="self_cpu_time_total", row_limit=25)]
                (out / f"profile_{slug}.txt").write_text("\n\n".join(text))
                print(text[0], flush=True)
                self.prof = False

    return Profiler()


def cmd_worker(args):
    spec = json.loads(args.spec)
    results = []
    res_path = Path(args.result)

    def save():
        res_path.write_text(json.dumps(results))

    lengths = json.loads(Path(spec["lengths"]).read_text())["train"]
    import torch

    if spec["worker"] == "peft-4bit":
        model, tok = load_plain(spec)
        assert "unsloth" not in sys.modules, "the plain worker must not import unsloth"
    else:
        model, tok, cfg = load_unsloth(spec)
    print(f"[{spec['worker']}] loaded; allocated {_mem('allocated'):.2f} GiB", flush=True)
    vocab = model.config.vocab_size if hasattr(model, "config") else 32768
    ds = synthetic_dataset(lengths, min(vocab, 32768))
    for recipe in spec["recipes"]:
        print(f"\n[{spec['worker']}] --- {recipe['name']} ---", flush=True)
        try:
            if spec["worker"] == "peft-4bit":
                r = run_plain(model, tok, ds, recipe, spec)
            else:
                r = run_unsloth(model, tok, cfg, ds, recipe, spec)
        except Exception as e:
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            if "out of memory" in str(e).lower():
                r["error"] = "CUDA out of memory"
        r.update(name=recipe["name"], kind=recipe["kind"], worker=spec["worker"])
        results.append(r)
        save()
        print(f"[{spec['worker']}] result: {json.dumps(r)}", flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_unsloth(spec):
    from unslothify.config import load_config
    from unslothify.model.load import add_lora, load_base
    from benchmark_recipes import COMMON

    t = time.perf_counter()
    cfg = load_config(None, model=spec["model_dir"], load_in_4bit=spec["load_in_4bit"], max_seq_length=2048,
                      gradient_checkpointing=spec["gc"], output_dir=tempfile.mkdtemp(), **COMMON)
    model, tok, _ = load_base(cfg)
    model = add_lora(model, cfg)
    print(f"load + LoRA {time.perf_counter() - t:.0f} s", flush=True)
    return model, tok, cfg


def load_plain(spec):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    t = time.perf_counter()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], quantization_config=q, dtype=torch.bfloat16,
                                                 attn_implementation="sdpa", device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=ALL_LINEAR,
                                             bias="none", task_type="CAUSAL_LM"))
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    print(f"load + LoRA {time.perf_counter() - t:.0f} s", flush=True)
    return model, tok


def _measure(trainer, counter, timer, spec, items_per_update, extra=None) -> dict:
    import torch

    warm, meas = spec["warmup"], spec["measure"]
    _sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t
    ends = timer.ends
    assert len(ends) >= warm + meas + 1, f"only {len(ends) - 1} steps ran"
    seconds = ends[warm + meas] - ends[warm]
    ga = trainer.args.gradient_accumulation_steps
    timed = counter.batches[warm * ga:(warm + meas) * ga]
    real = sum(b[0] for b in timed)
    total = sum(b[1] for b in timed)
    step_times = [ends[i + 1] - ends[i] for i in range(warm, warm + meas)]
    return {"tokens": real, "seconds": seconds, "step_s": seconds / meas,
            "step_s_min": min(step_times), "step_s_max": max(step_times),
            "first_steps_s": [round(ends[i + 1] - ends[i], 3) for i in range(warm)],
            "pad_share": 1 - real / total, "tokens_per_micro_batch": total / len(timed),
            "items_per_micro_batch": sum(b[2] for b in timed) / len(timed),
            "items_per_update": items_per_update,
            "max_allocated_gib": _mem("allocated"), "max_reserved_gib": _mem("reserved"),
            "losses": timer.losses[-3:], "train_wall_s": round(wall, 1),
            "padding_free": bool(getattr(trainer.args, "padding_free", None)),
            "micro_batches_seen": len(counter.batches), **(extra or {})}


def run_unsloth(model, tok, cfg, ds, recipe, spec):
    from trl import SFTTrainer

    from unslothify.config import replace
    from unslothify.model.load import for_training
    from unslothify.train.args import Call, sft_args

    total_steps = spec["warmup"] + spec["measure"]
    kind = recipe["kind"]
    out = tempfile.mkdtemp()
    if kind == "seed":
        seed = recipe_knobs("seed")
        c = replace(cfg, **{k: v for k, v in seed["knobs"].items() if k != "load_in_4bit"}, output_dir=out)
        args = sft_args(c, Call.of(c, 100.0, has_eval=False))
        for k, v in seed["sft"].items():
            setattr(args, k, v)
    elif kind == "notebook":
        args = notebook_sft_config(recipe_knobs("unsloth-notebook"), output_dir=out)
    else:
        knobs = {**recipe_knobs("ours")["knobs"], "per_device_train_batch_size": recipe["rows"],
                 "max_seq_length": recipe["row"], "output_dir": out}
        if recipe.get("optim"):
            knobs["optim"] = recipe["optim"]
        c = replace(cfg, **knobs)
        args = sft_args(c, Call.of(c, 100.0, has_eval=False))
    args.max_steps = total_steps
    args.disable_tqdm = True
    args.save_strategy = "no"
    for_training(model)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    counter = Counter(trainer.data_collator)
    trainer.data_collator = counter
    timer = step_timer()
    trainer.add_callback(timer)
    if os.environ.get("BENCH_PROFILE_DIR"):
        trainer.add_callback(step_profiler(recipe["name"], spec["warmup"] + 2))
    steps_per_epoch = _steps_per_epoch(trainer)
    res = _measure(trainer, counter, timer, spec, len(ds) / steps_per_epoch,
                   {"packed_rows": len(trainer.train_dataset), "optim": str(args.optim),
                    "gradient_checkpointing": spec["gc"], "load_in_4bit": spec["load_in_4bit"],
                    "per_device_train_batch_size": args.per_device_train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps, "max_length": args.max_length,
                    "steps_per_epoch": steps_per_epoch})
    del trainer
    return res


def run_plain(model, tok, ds, recipe, spec):
    from trl import SFTTrainer

    args = notebook_sft_config(recipe_knobs("plain-peft"), output_dir=tempfile.mkdtemp(), bf16=True,
                               gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
                               disable_tqdm=True, max_steps=spec["warmup"] + spec["measure"], save_strategy="no")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    counter = Counter(trainer.data_collator)
    trainer.data_collator = counter
    timer = step_timer()
    trainer.add_callback(timer)
    steps_per_epoch = _steps_per_epoch(trainer)
    res = _measure(trainer, counter, timer, spec, len(ds) / steps_per_epoch,
                   {"optim": str(args.optim), "gradient_checkpointing": args.gradient_checkpointing,
                    "load_in_4bit": spec["load_in_4bit"], "per_device_train_batch_size": args.per_device_train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps, "steps_per_epoch": steps_per_epoch})
    del trainer
    return res


def _steps_per_epoch(trainer) -> int:
    rows = len(trainer.train_dataset)
    per_step = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    return max(1, math.ceil(rows / per_step))


def main():
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", required=True, help="the worker and its recipes, as scripts/benchmark.py plans them")
    p.add_argument("--result", required=True, help="JSON file the results are written to")
    cmd_worker(p.parse_args())


if __name__ == "__main__":
    main()
