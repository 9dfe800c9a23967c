"""The Mistral-7B-shaped model the speed benchmark trains: its shape, its FLOPs per token, the card's bf16 peak,
and a random-initialised copy written to disk (scripts/benchmark.py)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=32768, max_position_embeddings=32768,
                  rope_theta=1e6, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None)


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def linear_params(c: dict) -> int:
    h, i, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    return L * per_layer + h * c["vocab_size"]  # + lm_head


def lora_params(c: dict, r: int) -> int:
    h, i, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
    return L * sum(r * (a + b) for a, b in shapes)


def flops_per_token(c: dict, lengths: list[int], r: int = 16) -> dict:
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    width = c["num_attention_heads"] * hd
    attn = sum(3 * 4 * c["num_hidden_layers"] * width * n * (n + 1) / 2 for n in lengths) / sum(lengths)
    n_lin, n_lora = linear_params(c), lora_params(c, r)
    return {"linear_params": n_lin, "lora_params": n_lora, "attention_per_token": attn,
            "per_token": 4 * n_lin + 6 * n_lora + attn}


def matmul_peak(n: int = 8192, reps: int = 30) -> float:
    import torch

    torch.manual_seed(0)
    sets = [(torch.randn(n, n, device="cuda", dtype=torch.bfloat16),
             torch.randn(n, n, device="cuda", dtype=torch.bfloat16)) for _ in range(3)]
    out = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for a, b in sets:
        torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    times = []
    for k in range(reps):
        a, b = sets[k % 3]
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.matmul(a, b, out=out)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del sets, out
    torch.cuda.empty_cache()
    return 2 * n ** 3 / statistics.median(times)


def build_model(target: Path, tok_dir: Path, layers: int):
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = MistralConfig(**{**MISTRAL_7B, "num_hidden_layers": layers}, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    t = time.perf_counter()
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = MistralForCausalLM(cfg)
    torch.set_default_dtype(prev)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(target, max_shard_size="4GB")
    tok.save_pretrained(target)
    del model
    torch.cuda.empty_cache()
    print(f"model: {n / 1e9:.3f} B parameters written to {target} in {time.perf_counter() - t:.0f} s", flush=True)
    return n
