#!/usr/bin/env python3
"""Where the merged model's logit difference comes from, on a real model (GPU).

Trains the embedded SmolLM2-135M-Instruct with the default recipe on examples/invented, loaded 4-bit as
`auto` loads Mistral 7B (and 16-bit with --bits 16), then measures each part of the merge check on its own,
as max |logit difference| / largest logit over sample prompts:

  base, 4-bit kernels    the base (adapter off) as Unsloth runs it (bf16 compute over 4-bit weights) against
                         its dequantised weights in float32 (plain transformers)
  reference, 4-bit       plain transformers + bitsandbytes + PEFT in float32 (the check's reference) against the
                         dequantised float32 merge: the same function two ways, so ~0
  bf16 storage           the merge stored in bfloat16 against the same merge stored in float32
  Unsloth's LoRA kernels adapter-on-base as Unsloth runs it (fused LoRA, bf16) against the float32 reference
  old check              Unsloth in-process against the bf16 merge (what the merge check compared before)
  new check              the float32 reference against the bf16 merge (what export_merged compares now)

and held-out recall of the adapter (as trained and evaluated) and of the merged model run by plain
transformers in bfloat16 on the GPU. Writes OUT/merge_diag.json and prints a table.

    python -m scripts.merge_diagnosis --out OUT [--bits 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INVENTED = ROOT / "examples" / "invented"


def relative(a: dict, b: dict) -> dict:
    diff = max((x.float() - y.float()).abs().max().item() for x, y in zip(a["logits"], b["logits"]))
    top = max(x.float().abs().max().item() for x in a["logits"])
    top1 = sum((x.argmax(-1) == y.argmax(-1)).sum().item() for x, y in zip(a["logits"], b["logits"]))
    total = sum(x.shape[0] for x in a["logits"])
    return {"max_abs_diff": round(diff, 4), "largest_logit": round(top, 3), "relative": round(diff / top, 5),
            "top1": round(top1 / total, 4)}


def in_process(model, tokenizer, prompt_ids) -> dict:
    import torch

    from unslothify.model.generate import inference_mode

    device = next(model.parameters()).device
    with inference_mode(model):
        logits = [model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu() for ids in prompt_ids]
    return {"logits": logits}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(ROOT / "runs" / "merge_diag"))
    p.add_argument("--bits", type=int, default=4, choices=(4, 16))
    p.add_argument("--epochs", type=float, default=None, help="default: the embedded recipe's")
    args = p.parse_args()
    from unslothify.data.augment import augment
    from unslothify.config import load_config
    from unslothify.score.questions import evaluate, load_questions
    from unslothify.export.stage import merge_to_16bit
    from unslothify.model.load import for_inference
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune
    from unslothify.export.verify import SAMPLE_PROMPTS, plain_transformers_outputs, reference_outputs, sample_prompt_ids

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="merge-diag-"))
    shutil.copy2(INVENTED / "train.jsonl", work / "facts.jsonl")
    cfg = load_config(None, model="embedded", data=str(work / "facts.jsonl"), load_in_4bit=args.bits == 4,
                      eval_questions=str(INVENTED / "questions.jsonl"), output_dir=str(work / "run"),
                      num_train_epochs=args.epochs)
    prepared = prepare(cfg, plot=False)
    augment(cfg, prepared)
    ft = FineTune.start(cfg)
    version = ft.train()
    for_inference(ft.model)
    questions = load_questions(cfg.eval_questions)
    prompts = SAMPLE_PROMPTS + [q.question for q in questions[:7]]
    ids = sample_prompt_ids(ft.tokenizer, prompts)

    import torch

    folders = {}
    for name, dtype, with_adapter in (("merged_bf16", torch.bfloat16, True), ("merged_fp32", torch.float32, True),
                                      ("base_fp32", torch.float32, False)):
        folders[name] = work / name
        folders[name].mkdir()
        merge_to_16bit(ft.model, ft.tokenizer, folders[name], dtype=dtype, with_adapter=with_adapter)
    out = {name: plain_transformers_outputs(folder, ids) for name, folder in folders.items()}
    out["reference_fp32"] = reference_outputs(ft.model, ids, "float32")
    out["unsloth"] = in_process(ft.model, ft.tokenizer, ids)
    with ft.model.disable_adapter():
        out["unsloth_base"] = in_process(ft.model, ft.tokenizer, ids)

    parts = {
        "base, 4-bit kernels (Unsloth bf16 vs dequantised fp32)": relative(out["base_fp32"], out["unsloth_base"]),
        "reference vs fp32 merge (same function, two ways)": relative(out["reference_fp32"], out["merged_fp32"]),
        "bf16 storage (fp32 merge vs bf16 merge)": relative(out["merged_fp32"], out["merged_bf16"]),
        "Unsloth's kernels (fp32 reference vs Unsloth in-process)": relative(out["reference_fp32"], out["unsloth"]),
        "old check (Unsloth in-process vs bf16 merge)": relative(out["unsloth"], out["merged_bf16"]),
        "new check (fp32 reference vs bf16 merge)": relative(out["reference_fp32"], out["merged_bf16"]),
        "adapter effect (reference vs base, fp32)": relative(out["reference_fp32"], out["base_fp32"]),
    }
    adapter, _ = evaluate(ft.model, ft.tokenizer, questions, max_new_tokens=cfg.max_new_tokens)
    del ft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    merged = AutoModelForCausalLM.from_pretrained(folders["merged_bf16"], dtype=torch.bfloat16, device_map=device)
    merged_result, _ = evaluate(merged, AutoTokenizer.from_pretrained(folders["merged_bf16"]), questions,
                                max_new_tokens=cfg.max_new_tokens)
    result = {"bits": args.bits, "version": version.name, "steps": version.manifest["cumulative_steps"],
              "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "prompts": len(prompts), "parts": parts,
              "recall_adapter": adapter["recall"], "recall_merged_plain_bf16": merged_result["recall"],
              "n": adapter["n"], "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"merge_diag_{args.bits}bit.json").write_text(json.dumps(result, indent=2))
    print(f"\n{args.bits}-bit base, {version.manifest['cumulative_steps']} steps, {len(prompts)} prompts:")
    print("| part | max abs diff | largest logit | relative | top-1 |\n|---|---:|---:|---:|---:|")
    for name, r in parts.items():
        print(f"| {name} | {r['max_abs_diff']} | {r['largest_logit']} | {r['relative']:.2%} | {r['top1']:.1%} |")
    print(f"held-out recall: adapter {adapter['recall']}, merged (plain transformers, bf16) {merged_result['recall']} "
          f"of {adapter['n']}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
