"""The whole pipeline on a GPU, in order, on one small random-initialised Mistral (see conftest.py):

4-bit load -> LoRA training with the GPU defaults (bf16, adamw_8bit) and validation loss -> a second,
incremental training call (v001, v002, one continuous history) -> resume from v001 -> padding-free packing
(and that packed items do not see each other) -> merge of the 4-bit base, verified -> GGUF -> chat ->
the CLI under `accelerate launch`.

The tests share one FineTune session and run in file order; a failure early makes later ones fail too.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from .conftest import ON_CPU, ROOT, offline_env

state: dict = {}


def _cuda():
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def cfg(tiny_model, small_data, tmp_path_factory):
    from unslothify.config import load_config

    run = tmp_path_factory.mktemp("runs") / "tiny"
    return load_config(None, model=str(tiny_model), data=str(small_data), output_dir=str(run),
                       num_train_epochs=1, learning_rate=2e-3, max_seq_length=256, evals_per_epoch=2,
                       lora_r=16, lora_alpha=32, warmup=2, per_device_train_batch_size=2)


@pytest.fixture(scope="module")
def prepared(cfg):
    from unslothify.data.prepare import prepare

    return prepare(cfg, plot=False)


def test_environment_report():
    from unslothify.machine import fit as gpu

    report = gpu.check()
    print(gpu.describe_report(report))
    if ON_CPU:
        return
    assert report["cuda_available"] and report["bf16"]
    assert report["unsloth"] and report["bitsandbytes"] and report["trl"]



def test_auto_on_a_gpu_trains_the_gpu_recipe():
    """model: auto on a GPU loads the 7B QLoRA recipe (recipes/mistral-7b-qlora.yaml)."""
    from unslothify.config import load_config, recipe_of

    c = load_config(None)
    assert recipe_of(c)[0] == "mistral-7b-qlora"
    assert c.optim == "adamw_8bit" and c.learning_rate == 5e-4 and c.load_in_4bit
    assert c.packing and c.per_device_train_batch_size * c.max_seq_length == 4096, "4096 tokens per packed step"


def test_load_4bit_and_lora(cfg, prepared):
    from unslothify.train.session import FineTune

    ft = FineTune.start(cfg)
    state["ft"] = ft
    base = ft.model.get_base_model()
    n4 = sum(type(m).__module__.startswith("bitsandbytes") and type(m).__name__ == "Linear4bit"
             for m in base.modules())
    trainable = sum(p.numel() for p in ft.model.parameters() if p.requires_grad)
    print(f"Linear4bit modules: {n4}; trainable LoRA parameters: {trainable}")
    shape = base.config
    kv = shape.num_key_value_heads * (shape.hidden_size // shape.num_attention_heads)
    ins_outs = [(shape.hidden_size, shape.hidden_size), (shape.hidden_size, kv), (shape.hidden_size, kv),
                (shape.hidden_size, shape.hidden_size), (shape.hidden_size, shape.intermediate_size),
                (shape.hidden_size, shape.intermediate_size), (shape.intermediate_size, shape.hidden_size)]
    assert trainable == cfg.lora_r * sum(i + o for i, o in ins_outs) * shape.num_hidden_layers, \
        "rank r on the 7 projections of every layer: r x (in + out) each"
    if not ON_CPU:
        assert n4 == 7 * 4, "every attention and MLP projection of the 4 layers should be 4-bit"
        assert next(ft.model.parameters()).is_cuda


def test_train_v001_with_gpu_defaults(cfg):
    ft = state["ft"]
    v1 = ft.train()
    assert v1.name == "v001"
    args = ft.last_trainer.args
    if not ON_CPU:
        assert args.bf16 and not args.fp16
        assert args.packing and args.padding_free, "the default GPU recipe packs items padding-free"
        assert args.optim.value == "adamw_8bit"
        opt = ft.last_trainer.optimizer
        inner = getattr(opt, "optimizer", opt)
        assert "bitsandbytes" in type(inner).__module__, type(inner)
        assert v1.manifest["peak_memory_kind"].startswith("GPU")
    hist = v1.history()
    losses = [h["loss"] for h in hist if "loss" in h]
    evals = [h["eval_loss"] for h in hist if "eval_loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    assert len(evals) >= (2 if ON_CPU else 3) and all(math.isfinite(x) for x in evals), \
        f"validation loss at the start, mid-epoch (evals_per_epoch 2) and the end: {evals}"
    assert v1.manifest["final_eval_loss"] == evals[-1] < evals[0], f"validation loss should fall on this data: {evals}"
    print(f"v001: {v1.manifest['train_seconds']} s, peak {v1.manifest['peak_memory_gib']} GiB, "
          f"eval {evals[0]:.3f} -> {evals[-1]:.3f}")


def test_second_call_continues_history(cfg):
    ft = state["ft"]
    v1 = ft.run.version("v001")
    v2 = ft.train(more_epochs=1)
    assert v2.name == "v002" and v2.manifest["parent"] == "v001"
    h1, h2 = v1.history(), v2.history()
    assert h2[:len(h1)] == h1, "v002's history starts with v001's"
    new = h2[len(h1):]
    assert new and min(h["step"] for h in new) > max(h["step"] for h in h1)
    assert abs(v2.manifest["cumulative_epochs"] - 2.0) < 0.05
    assert v2.manifest["cumulative_steps"] == 2 * v1.manifest["cumulative_steps"]
    steps = [h["step"] for h in h2 if "loss" in h]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_resume_from_v001(cfg):
    from unslothify.train.session import FineTune

    ft = FineTune.resume(cfg, "v001")
    v1 = ft.run.version("v001")
    assert ft.history == v1.history() and ft.parent == "v001"
    if not ON_CPU:
        base = ft.model.get_base_model()
        assert any(type(m).__name__ == "Linear4bit" for m in base.modules())
    v3 = ft.train(more_epochs=0.5)
    assert v3.name == "v003" and v3.manifest["parent"] == "v001"
    assert abs(v3.manifest["cumulative_epochs"] - 1.5) < 0.05
    del ft
    _free()


@pytest.mark.skipif(ON_CPU, reason="packing is GPU-only in training.py")
def test_unpacked_training_and_packing_isolation(cfg, tmp_path):
    """packing: false still trains (padded batches), and packed items do not see each other: the validation
    loss of the same items with the same weights is the same packed (padding-free rows) and unpacked."""
    from datasets import Dataset
    from trl import SFTTrainer

    from unslothify.config import replace
    from unslothify.data.prepare import prepare
    from unslothify.train.args import Call, sft_args
    from unslothify.train.session import FineTune

    pcfg = replace(cfg, packing=False, output_dir=str(tmp_path / "unpacked"), per_device_train_batch_size=8,
                   max_seq_length=512)
    prepare(pcfg, plot=False)
    ft = FineTune.start(pcfg)
    v = ft.train(more_epochs=1)
    tr = ft.last_trainer
    assert not tr.args.packing and not tr.args.padding_free
    losses = [h["loss"] for h in v.history() if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    evals = [h for h in v.history() if "eval_loss" in h]
    assert len(evals) >= 3, f"evaluations at start, mid-epoch and end: {evals}"
    tr = _packing_trainer(ft, replace(pcfg, packing=True), tmp_path)

    train_ds = ft.training_data(pcfg).train
    items = Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]}
                               for r in train_ds.select(range(24))])
    batch = tr.data_collator([items[i] for i in range(4)])
    print("packed batch:", {k: tuple(x.shape) for k, x in batch.items() if hasattr(x, "shape")})
    assert batch["input_ids"].shape[0] == 1, "padding-free: one row per batch"
    results = {}
    for packing in (True, False):
        c = replace(pcfg, packing=packing)
        args = sft_args(c, Call.of(c, 1.0, has_eval=True, output_dir=str(tmp_path / f"eval-{packing}")))
        trainer = SFTTrainer(model=ft.model, args=args, train_dataset=items, eval_dataset=items,
                             processing_class=ft.tokenizer)
        results[packing] = (trainer.evaluate()["eval_loss"], len(trainer.eval_dataset))
    print("eval loss (loss, rows): packed", results[True], "unpacked", results[False])
    assert results[True][1] < results[False][1], "the packed eval set has fewer rows than items"
    packed, plain = results[True][0], results[False][0]
    assert abs(packed - plain) <= 0.02 * abs(plain), "packed items must not attend to each other"
    del ft, tr
    _free()


def test_merge_4bit_base_verified(cfg, tmp_path_factory):
    from unslothify.export.stage import export_merged
    from unslothify.export.verify import SAMPLE_PROMPTS, plain_transformers_outputs, reference_outputs, sample_prompt_ids

    ft = state["ft"]
    out = tmp_path_factory.mktemp("exports") / "merged"
    merged, check = export_merged(ft.model, ft.tokenizer, out)
    state["merged"] = merged
    print("merge check:", check.summary())
    assert check.ok
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config, "the merged model must be plain 16-bit"
    assert list(merged.glob("*.safetensors"))
    # The adapter must matter, or the check above proves nothing: the reference (adapter on base) differs
    # from the base alone by more than the merged model differs from the reference.
    ids = sample_prompt_ids(ft.tokenizer, SAMPLE_PROMPTS)
    on = reference_outputs(ft.model, ids)
    base_dir = tmp_path_factory.mktemp("exports") / "base"
    from unslothify.export.stage import merge_to_16bit

    merge_to_16bit(ft.model, ft.tokenizer, base_dir, with_adapter=False)
    off = plain_transformers_outputs(base_dir, ids)
    effect = max((a - b).abs().max().item() for a, b in zip(on["logits"], off["logits"]))
    print(f"adapter effect on logits: max {effect:.4g}; merge error max {check.max_abs_diff:.4g}")
    assert effect > 3 * check.max_abs_diff


def test_gguf_export(cfg):
    from unslothify.export.gguf import export_gguf, find_converter, verify_gguf

    try:
        find_converter()
    except Exception as e:
        pytest.skip(str(e).splitlines()[0])
    merged = state["merged"]
    out = merged.parent / "tiny.F16.gguf"
    gguf = export_gguf(merged, out, "f16")
    assert gguf.exists() and gguf.stat().st_size > 1_000_000
    check = verify_gguf(gguf, merged, state["ft"].tokenizer)
    print("gguf check:", check.summary())
    assert check.logits.top1_agreement >= 0.95
    assert check.same_answers >= 2


def test_chat(cfg):
    from unslothify.ui.chat import ChatSession
    from unslothify.model.generate import answer_batch

    ft = state["ft"]
    chat = ChatSession(ft.model, ft.tokenizer, temperature=0.0, max_new_tokens=24)
    a = chat.send("What are Swedish meatballs called in Swedish?")
    b = chat.send("And how are they served?")
    print("chat:", repr(a), "|", repr(b))
    assert isinstance(a, str) and isinstance(b, str) and (a or b)
    assert len(chat.history) == 4
    sampled = ChatSession(ft.model, ft.tokenizer, temperature=0.7, max_new_tokens=8).send("Hello")
    assert isinstance(sampled, str)
    answers = answer_batch(ft.model, ft.tokenizer, ["What is köttbullar?", "Name a side dish."], max_new_tokens=8)
    assert len(answers) == 2
    state.pop("ft")
    _free()


def test_cli_train_under_accelerate_launch(tiny_model, small_data, tmp_path):
    """`accelerate launch --num_processes 1 -m unslothify train ...` runs and saves v001 (data parallel with
    more processes is documented in docs/benchmark.md; only one GPU was lent for these runs)."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    out = tmp_path / "cli"
    procs = os.environ.get("UNSLOTHIFY_TEST_NUM_PROCESSES", "1")
    cmd = [*launcher, "--num_processes", procs, "--num_machines", "1", "--mixed_precision",
           "no" if ON_CPU else "bf16", "--dynamo_backend", "no", "-m", "unslothify", "train", "--model", str(tiny_model), "--data",
           str(small_data), "--output", str(out), "--epochs", "1", "--max-seq-length", "256",
           "--learning-rate", "2e-3"]
    if ON_CPU:
        cmd.insert(len(launcher), "--cpu")
    env = offline_env()
    env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "v001" / "manifest.json").read_text())
    history = json.loads((out / "v001" / "history.json").read_text())
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert manifest["final_eval_loss"] == evals[-1] and math.isfinite(evals[-1]), "one version, evaluated at the end"


def _packing_trainer(ft, pcfg, tmp_path):
    from trl import SFTTrainer

    from unslothify.train.args import Call, sft_args

    args = sft_args(pcfg, Call.of(pcfg, 1.0, has_eval=False, output_dir=str(tmp_path / "collator")))
    tr = SFTTrainer(model=ft.model, args=args, train_dataset=ft.training_data(pcfg).train, processing_class=ft.tokenizer)
    assert tr.args.packing and tr.args.padding_free
    return tr


def _free():
    import gc

    gc.collect()
    if _cuda():
        import torch

        torch.cuda.empty_cache()
