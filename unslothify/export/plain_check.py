"""Load a model with plain transformers (no Unsloth) and write its logits and greedy continuations.

Run as a separate process so nothing Unsloth patched in the exporting process takes part:

    python -m unslothify.export.plain_check MODEL PROMPTS.json --out OUT.pt [--dtype float32|bfloat16]
        [--gguf FILE]                                   an exported GGUF file in MODEL's folder
        [--adapter DIR [--load-dtype torch.bfloat16] [--quantization JSON]]
                                                        MODEL is a base: its LoRA adapter is added by PEFT,
                                                        the base loaded as it was trained (its dtype, 4-bit)

    python -m unslothify.export.plain_check --wait reference|export
                                                        started ahead of its job (verify.ChecksAhead): imports
                                                        what that side needs (PEFT for the reference), then reads
                                                        one JSON line {"argv": [...], "env": {...}} from stdin

PROMPTS.json is a list of token-id lists. OUT.pt gets {"logits": [tensor per prompt], "greedy": [ids],
"seconds": {"imports": ..., "load": ..., "answers": ...}} (where an export check's time goes; started ahead, also
"waited": from its imports' end to its job).
Without --adapter, neither Unsloth nor PEFT may be imported: the export must stand on its own.
"""

import argparse
import json
import os
import sys
import time

STARTED = time.perf_counter()  # before torch and transformers: where a check's seconds go (its output's "seconds")


def ram_left_gib() -> float:
    """The RAM free for offloaded layers (or for the checks side by side), with a margin for a process's own
    tensors."""
    import psutil

    return max(1.0, psutil.virtual_memory().available / 2**30 - 2)


def load(args):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = getattr(torch, args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # A base is loaded in the dtype the training process held it in (rounded as trained; a 4-bit base is
    # quantised from it, so its 4-bit weights are the trained ones), then computes in the comparison's dtype.
    load_dtype = getattr(torch, args.load_dtype.replace("torch.", "")) if args.load_dtype else dtype
    kwargs = {"dtype": load_dtype, "device_map": device if args.dtype == "float32" else "auto"}
    if kwargs["device_map"] == "auto" and args.max_gpu_gib is not None and device == "cuda":
        # what the process that started this one leaves of the card; the rest of the model goes to RAM
        kwargs["max_memory"] = {0: f"{args.max_gpu_gib}GiB", "cpu": f"{ram_left_gib():.0f}GiB"}
    if args.gguf:
        kwargs = {"gguf_file": args.gguf, "dtype": dtype}
    if args.quantization:
        q = BitsAndBytesConfig.from_dict(json.loads(args.quantization))
        q.bnb_4bit_compute_dtype = dtype  # the same 4-bit weights, dequantised to the comparison's precision
        kwargs.update(quantization_config=q, device_map=device)
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    for p in model.parameters():  # everything that is not 4-bit storage computes in the comparison's precision
        if p.is_floating_point() and not hasattr(p, "quant_state"):
            p.data = p.data.to(dtype)
    model.eval()
    if not args.adapter:
        assert not any(m in sys.modules for m in ("unsloth", "peft")), "plain check must not load unsloth or peft"
    assert "unsloth" not in sys.modules, "the reference must not run Unsloth's kernels"
    return model


def parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("prompts")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--max-gpu-gib", type=float, default=None, help="GPU memory this process may take")
    parser.add_argument("--gguf")
    parser.add_argument("--adapter")
    parser.add_argument("--quantization")
    parser.add_argument("--load-dtype", default=None, help="the dtype the base was trained in (default: --dtype)")
    return parser.parse_args(argv)


def import_libraries(with_peft: bool) -> float:
    """Import what a check needs (most of its seconds: 15 s on an H200's host); returns when it was done."""
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401  (imported here so "imports" counts it, not "load")

    if with_peft:
        import peft  # noqa: F401
    return time.perf_counter()


def main(argv):
    if argv[:1] == ["--wait"]:
        return wait(argv[1])
    args = parse(argv)
    imported = import_libraries(bool(args.adapter))
    check(args, {"imports": imported - STARTED}, since=imported)


def wait(side: str):
    """Import what `side` needs, then wait for the job on stdin; stdin closed without one (the exporting process
    closed it, or ended) ends this process."""
    os.nice(10)  # it imports while training runs: on a host of few cores, training comes first
    # The reference's PEFT imports bitsandbytes, which asks torch for the card's capability; if that makes a CUDA
    # context (not measured yet), it holds ~0.5 GiB while training runs: the T4 simulation's training held 9.7-12.7
    # of its 15 GiB (docs/measurements/t4-notes.md), and at the check the reference runs first, on what is left.
    imported = import_libraries(with_peft=side == "reference")
    line = sys.stdin.readline()
    if not line.strip():
        return
    job = json.loads(line)
    env = job.get("env", {})
    os.environ.update(env)  # the memory cap of the exporting process's moment, the threads
    if "OMP_NUM_THREADS" in env:
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    got = time.perf_counter()
    check(parse(job["argv"]), {"imports": imported - STARTED, "waited": got - imported}, since=got)


def check(args, seconds: dict, since: float):
    """Load args.model (with its adapter) and write its logits and greedy continuations to args.out, with where
    the process's seconds went (`seconds` so far, then load and answers from `since`)."""
    import torch

    from unslothify.machine.device import apply_memory_cap

    apply_memory_cap()  # $UNSLOTHIFY_GPU_MEMORY_GIB, set by the exporting process under a cap
    model = load(args)
    loaded = time.perf_counter()
    device = next(model.parameters()).device
    prompts = json.load(open(args.prompts))
    logits, greedy = [], []
    gen = model.generation_config
    pad = gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id
    if isinstance(pad, (list, tuple)):  # eos may be a list of ids (Unsloth writes one); generate wants one id
        pad = pad[0] if pad else None
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids], device=device)
            logits.append(model(input_ids=x).logits[0].float().cpu())
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=24, do_sample=False,
                                 pad_token_id=pad)
            greedy.append(out[0, len(ids):].tolist())
    seconds.update(load=loaded - since, answers=time.perf_counter() - loaded)
    torch.save({"logits": logits, "greedy": greedy, "dtype": str(next(model.parameters()).dtype),
                "seconds": {k: round(v, 1) for k, v in seconds.items()}}, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
