"""GPU test suite: the whole pipeline on a small random-initialised Mistral-architecture model.

Skipped without CUDA (CI has none). On the device machine: `bash scripts/gpu_check.sh` (installs the
wheels, unpacks .gpu-assets/, runs `pytest tests/gpu -v`). Locally, UNSLOTHIFY_GPU_TESTS_ON_CPU=1 runs the
same flow on the CPU (no 4-bit, no 8-bit optimizer, no packing) to debug the test code itself.

Inputs (no hub access is needed or made):
  tokenizer   UNSLOTHIFY_TEST_TOKENIZER, else .gpu-assets/tokenizer, else the cached embedded SmolLM2
              checkpoint (~/.cache/unslothify/SmolLM2-135M-Instruct): the SmolLM2 BPE tokenizer
              (vocab 49152, ChatML template), so the tiny model has vocab 49152.
  converter   LLAMA_CPP_DIR (llama.cpp's convert_hf_to_gguf.py with gguf-py/ and conversion/).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ON_CPU = os.environ.get("UNSLOTHIFY_GPU_TESTS_ON_CPU") == "1"

# A small Mistral: the real architecture (GQA 4:1 like Mistral 7B's 32:8, SwiGLU, RMSNorm, RoPE),
# small enough to pre-train for a few seconds.
TINY = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, rope_theta=1e6,
            rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    skip = None if (_has_cuda() or ON_CPU) else pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu_check.sh)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.gpu)
            if skip is not None:
                item.add_marker(skip)


def tokenizer_dir() -> Path:
    candidates = [os.environ.get("UNSLOTHIFY_TEST_TOKENIZER"), ROOT / ".gpu-assets" / "tokenizer",
                  Path(os.environ.get("UNSLOTHIFY_CACHE", Path.home() / ".cache" / "unslothify"))
                  / "SmolLM2-135M-Instruct"]
    for c in candidates:
        if c and (Path(c) / "tokenizer.json").exists():
            return Path(c)
    pytest.skip("no tokenizer: run `bash scripts/gpu_check.sh prepare` here, or set UNSLOTHIFY_TEST_TOKENIZER")


def chat_rows(tokenizer, path: Path, n: int) -> list[list[int]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[:n]:
        msgs = json.loads(line)["messages"]
        rows.append(list(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]))
    return rows


def build_tiny_mistral(target: Path, tok_dir: Path, pretrain_steps: int, seed: int = 0) -> Path:
    """Random-initialised Mistral of TINY's shape, briefly pre-trained (full fine-tune) on domain.jsonl so
    that its next-token distributions are peaked: greedy continuations and top-1 agreement then test the
    merge rather than ties between near-equal logits of an untrained model. Saved in bfloat16."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = MistralConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, **TINY)
    device = "cuda" if _has_cuda() else "cpu"
    model = MistralForCausalLM(cfg).to(device)
    rows = chat_rows(tok, ROOT / "domain.jsonl", 500)
    if pretrain_steps:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for step in range(pretrain_steps):
            idx = torch.randint(len(rows), (16,), generator=g).tolist()
            width = max(len(rows[i]) for i in idx)
            ids = torch.full((16, width), tok.pad_token_id)
            labels = torch.full((16, width), -100)
            for r, i in enumerate(idx):
                ids[r, :len(rows[i])] = torch.tensor(rows[i])
                labels[r, :len(rows[i])] = torch.tensor(rows[i])
            ids, labels = ids.to(device), labels.to(device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.config.unslothify_pretrain = {"steps": pretrain_steps, "final_loss": round(loss.item(), 3)}
    model = model.to(torch.bfloat16).cpu()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    if target.exists():
        shutil.rmtree(target)
    model.save_pretrained(target)
    tok.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    steps = int(os.environ.get("UNSLOTHIFY_TEST_PRETRAIN_STEPS", "300"))
    return build_tiny_mistral(tmp_path_factory.mktemp("models") / "tiny-mistral", tokenizer_dir(), steps)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """The first 160 items of domain.jsonl (144 train, 16 validation at validation_split 0.1)."""
    path = tmp_path_factory.mktemp("data") / "domain160.jsonl"
    path.write_text("\n".join((ROOT / "domain.jsonl").read_text(encoding="utf-8").splitlines()[:160]) + "\n",
                    encoding="utf-8")
    return path


def offline_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "UNSLOTH_DISABLE_STATISTICS": "1"}
