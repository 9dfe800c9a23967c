"""Exports, each verified after writing, each written atomically (nothing partial on failure).

  adapter  the LoRA adapter alone (copy of a version folder)
  merged   a 16-bit safetensors model that plain transformers loads; its logits are checked against
           adapter-on-base in a separate process that imports neither unsloth nor peft
  gguf     llama.cpp / Ollama file made from the merged model by llama.cpp's own converter, loaded back
           by transformers (and by llama.cpp when llama-cpp-python is installed) and asked the same questions
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_dir, atomic_write_json
from .models import cache_dir

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist carries llama.cpp's converter, gguf-py and conversion/ at this version
SAMPLE_PROMPTS = ["What are Swedish meatballs called in Swedish?", "Give me one tip for juicy meatballs.",
                  "What is the capital of France?"]
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")  # written directly by convert_hf_to_gguf.py


class ExportError(RuntimeError):
    """An export could not be made or did not verify; nothing was left behind."""


# ----------------------------------------------------------------------------------------------------------
# disk space
# ----------------------------------------------------------------------------------------------------------

def merged_size_bytes(model) -> int:
    """Bytes a 16-bit copy of the model takes (parameters x 2), counting 4-bit packed weights unpacked."""
    base = getattr(model, "get_base_model", lambda: model)()
    total = 0
    for p in base.parameters():
        n = p.numel()
        if p.dtype.itemsize == 1 and hasattr(p, "quant_state"):  # bitsandbytes 4-bit: two values per byte
            n *= 2
        total += n
    return total * 2


def check_disk(folder: str | Path, needed: int, what: str):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    margin = int(needed * 1.1) + (256 << 20)
    if free < margin:
        raise ExportError(f"Not enough disk space for {what} in {folder}: needs about {margin / 2**30:.1f} GiB, "
                          f"{free / 2**30:.1f} GiB free. Free some space or choose another --output folder "
                          f"(a merged 7B model takes about 15 GB).")


# ----------------------------------------------------------------------------------------------------------
# adapter
# ----------------------------------------------------------------------------------------------------------

def export_adapter(version_dir: str | Path, out_dir: str | Path) -> Path:
    version_dir, out_dir = Path(version_dir), Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        for f in version_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
    return out_dir


# ----------------------------------------------------------------------------------------------------------
# merged 16-bit
# ----------------------------------------------------------------------------------------------------------

@dataclass
class MergeCheck:
    max_abs_diff: float
    max_abs_logit: float
    relative: float
    top1_agreement: float
    tolerance: float
    greedy_equal: int
    n_prompts: int

    @property
    def ok(self) -> bool:
        return self.relative <= self.tolerance and self.top1_agreement >= 0.98

    def summary(self) -> str:
        return (f"max |logit difference| {self.max_abs_diff:.4g} (largest logit {self.max_abs_logit:.3g}, "
                f"relative {self.relative:.2e} <= tolerance {self.tolerance:.0e}: {'ok' if self.ok else 'FAILED'}); "
                f"top-1 token agreement {self.top1_agreement:.1%}; greedy continuations identical for "
                f"{self.greedy_equal}/{self.n_prompts} prompts")


def merge_tolerance(model) -> float:
    """Relative tolerance on logits: float32 merges agree to rounding; 16-bit storage and a 4-bit base
    (dequantised, merged, stored in 16 bits) differ by a known small amount."""
    import torch

    base = getattr(model, "get_base_model", lambda: model)()
    quantized = any(type(m).__name__ == "Linear4bit" for m in base.modules())
    # Measured on the embedded model: rounding a float32 merge once to bfloat16 moves logits by up to
    # 1.5 % of the largest logit; a 4-bit base adds its dequantisation.
    return 5e-2 if quantized else 3e-2


def export_merged(model, tokenizer, out_dir: str | Path, prompts: list[str] | None = None,
                  progress=print) -> tuple[Path, MergeCheck]:
    """Merge the adapter into 16-bit weights (Unsloth's save_pretrained_merged), then verify."""
    out_dir = Path(out_dir)
    check_disk(out_dir.parent, merged_size_bytes(model), "the merged 16-bit model")
    prompt_ids = sample_prompt_ids(tokenizer, prompts or SAMPLE_PROMPTS)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        progress(f"Merging the adapter into 16-bit weights -> {out_dir} ...")
        merge_to_16bit(model, tokenizer, tmp)
        check = verify_merged(model, tokenizer, tmp, prompt_ids)
        atomic_write_json(tmp / "unslothify_export.json", {"kind": "merged_16bit", "check": check.__dict__})
        if not check.ok:
            raise ExportError(f"The merged model does not match adapter-on-base: {check.summary()}. "
                              "Nothing was written.")
    progress(f"Merged model verified: {check.summary()}.")
    return out_dir, check


def merge_to_16bit(model, tokenizer, folder: Path):
    """A 4-bit base is dequantised here and merged in float32 (merge_4bit_dequantized). A large unquantised
    base goes through Unsloth's save_pretrained_merged (layer by layer). A small unquantised base is merged
    by PEFT on a float32 copy and stored in its 16-bit dtype once: merging directly in 16 bits rounds the
    delta twice, which measured three times the logit error on the embedded model (max 1.6 vs 0.5)."""
    import torch

    if _is_4bit(model):
        merge_4bit_dequantized(model, tokenizer, folder)
        return
    reference, in_float32 = _float32_reference(model)
    if not in_float32:
        model.save_pretrained_merged(str(folder), tokenizer, save_method="merged_16bit")
        return
    base_dtype = next(getattr(model, "get_base_model", lambda: model)().parameters()).dtype
    target = base_dtype if base_dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    merged = reference.merge_and_unload().to(target)
    merged.config.use_cache = True
    merged.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    del merged, reference


def _is_4bit(model) -> bool:
    base = getattr(model, "get_base_model", lambda: model)()
    return any(hasattr(p, "quant_state") for p in base.parameters())


def merge_4bit_dequantized(model, tokenizer, folder: Path, dtype=None, shard_size: str = "5GB"):
    """Merge a LoRA adapter into a bitsandbytes 4-bit base offline: each 4-bit weight is dequantised
    (bitsandbytes.functional.dequantize_4bit, the weights the adapter was trained and evaluated on), the
    adapter's delta B @ A * scale is added in float32, and the sum is stored once in bfloat16.

    Unsloth's save_pretrained_merged instead merges into the original 16-bit weights, which it reads from
    the base's folder or downloads from the Hub (for unsloth/...-bnb-4bit bases: the 16-bit repo, ~15 GB).
    That model differs from the trained adapter-on-4-bit-base by the 4-bit rounding (about 9 % of each
    weight), so the merge check could not verify it; this merge needs no download and verifies."""
    import copy

    import torch
    from bitsandbytes.functional import dequantize_4bit
    from huggingface_hub import save_torch_state_dict

    dtype = dtype or torch.bfloat16
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lora = {name: m for name, m in base.named_modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")}
    state: dict[str, torch.Tensor] = {}

    def weight_of(p):
        if hasattr(p, "quant_state"):
            return dequantize_4bit(p.data, p.quant_state).float()
        return p.detach().to(torch.float32, copy=True)  # a copy: the delta is added in place

    with torch.no_grad():
        for name, m in lora.items():
            w = weight_of(m.base_layer.weight)
            for adapter in getattr(m, "active_adapters", ["default"]):
                if adapter in m.lora_A and not getattr(m, "merged", False):
                    a, b = m.lora_A[adapter].weight.float(), m.lora_B[adapter].weight.float()
                    w += (b.to(w.device) @ a.to(w.device)) * m.scaling[adapter]
            state[f"{name}.weight"] = w.to(dtype).cpu()
            if getattr(m.base_layer, "bias", None) is not None:
                state[f"{name}.bias"] = m.base_layer.bias.detach().to(dtype).cpu()
        inside = tuple(f"{name}." for name in lora)
        for pname, p in base.named_parameters():
            if pname.startswith(inside):
                continue  # the LoRA layer's base weight, adapter weights: handled above
            state[pname] = weight_of(p).to(dtype).cpu()
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    config.use_cache = True
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_torch_state_dict(state, str(folder), max_shard_size=shard_size)
    config.save_pretrained(str(folder))
    gen = getattr(base, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    del state


def sample_prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    return [list(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                               add_generation_prompt=True, return_dict=True)["input_ids"])
            for p in prompts]


def plain_transformers_outputs(model_dir: Path, prompt_ids: list[list[int]], gguf_file: str | None = None) -> dict:
    """Logits and greedy continuations from a fresh process with plain transformers."""
    import torch

    with tempfile.TemporaryDirectory() as td:
        prompts_path, out_path = Path(td) / "prompts.json", Path(td) / "out.pt"
        prompts_path.write_text(json.dumps(prompt_ids))
        cmd = [sys.executable, "-m", "unslothify.plain_check", str(model_dir), str(prompts_path), str(out_path)]
        if gguf_file:
            cmd += ["--gguf", gguf_file]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                            os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise ExportError(f"Plain transformers could not load {model_dir}"
                              f"{' / ' + gguf_file if gguf_file else ''}:\n{proc.stderr[-3000:]}")
        return torch.load(out_path)


def _float32_reference(model):
    """An unquantised model of moderate size is compared in float32, so the check measures the merge and
    its 16-bit storage rather than 16-bit arithmetic noise; a 4-bit or large model is compared as it runs."""
    import copy

    base = getattr(model, "get_base_model", lambda: model)()
    quantized = any(type(m).__name__ == "Linear4bit" for m in base.modules())
    n_params = sum(p.numel() for p in base.parameters())
    if quantized or n_params > 2e9:
        return model, False
    reference = copy.deepcopy(model).float()
    for module in reference.modules():
        # Instance-level forward/generate overrides (Unsloth's CPU loss patch, wrappers added in training)
        # may close over the original module, so the copy would silently run the 16-bit weights.
        module.__dict__.pop("forward", None)
        module.__dict__.pop("generate", None)
    return reference, True


def reference_outputs(model, tokenizer, prompt_ids: list[list[int]]) -> dict:
    """Logits and greedy continuations of the in-memory model (adapter on base)."""
    import torch

    from .chat import _inference

    model, _ = _float32_reference(model)
    device = next(model.parameters()).device
    logits, greedy = [], []
    with _inference(model, tokenizer):
        for ids in prompt_ids:
            x = torch.tensor([ids], device=device)
            logits.append(model(input_ids=x).logits[0].float().cpu())
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=24, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            greedy.append(out[0, len(ids):].tolist())
    return {"logits": logits, "greedy": greedy}


def compare(ref: dict, other: dict, tolerance: float) -> MergeCheck:
    import torch

    max_diff = max_logit = 0.0
    agree = total = 0
    for a, b in zip(ref["logits"], other["logits"]):
        a, b = a.float(), b.float()
        max_diff = max(max_diff, (a - b).abs().max().item())
        max_logit = max(max_logit, a.abs().max().item())
        ta, tb = a.argmax(-1), b.argmax(-1)
        # A flip between two tokens the reference itself scores within 1 % of its largest logit of each other
        # (a near-tie, e.g. margin 0.006 of 40.9 in a chat-template position) is rounding, not a wrong merge.
        margin = a.gather(-1, ta[:, None])[:, 0] - a.gather(-1, tb[:, None])[:, 0]
        agree += ((ta == tb) | (margin <= 1e-2 * a.abs().max())).sum().item()
        total += a.shape[0]
    greedy_equal = sum(_same_until_eos(x, y) for x, y in zip(ref["greedy"], other["greedy"]))
    return MergeCheck(max_diff, max_logit, max_diff / max(max_logit, 1e-9), agree / max(total, 1), tolerance,
                      greedy_equal, len(ref["logits"]))


def _same_until_eos(a: list[int], b: list[int]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def verify_merged(model, tokenizer, merged_dir: Path, prompt_ids: list[list[int]]) -> MergeCheck:
    ref = reference_outputs(model, tokenizer, prompt_ids)
    plain = plain_transformers_outputs(merged_dir, prompt_ids)
    return compare(ref, plain, merge_tolerance(model))


# ----------------------------------------------------------------------------------------------------------
# GGUF
# ----------------------------------------------------------------------------------------------------------

def llama_cpp_dir() -> Path:
    return Path(os.environ.get("LLAMA_CPP_DIR", cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}"))


def find_converter() -> Path:
    root = llama_cpp_dir()
    script = root / "convert_hf_to_gguf.py"
    if script.exists() and (root / "gguf-py").is_dir():
        return script
    raise ExportError(
        f"GGUF export needs llama.cpp's converter, which is missing: {script} (with gguf-py/ and conversion/ "
        f"beside it). Get it with `python -m unslothify setup-gguf` (downloads the llama-cpp-python=="
        f"{LLAMA_CPP_PYTHON} source from PyPI and unpacks its llama.cpp converter there), or point LLAMA_CPP_DIR "
        f"at a llama.cpp checkout. Nothing was written.")


def setup_gguf_tools(progress=print) -> Path:
    """Fetch llama.cpp's converter from the llama-cpp-python sdist on PyPI (no git, no build)."""
    root = llama_cpp_dir()
    if (root / "convert_hf_to_gguf.py").exists():
        return root
    with tempfile.TemporaryDirectory() as td:
        progress(f"Downloading llama-cpp-python=={LLAMA_CPP_PYTHON} source from PyPI for its GGUF converter ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", td], check=True)
        sdist = next(Path(td).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"{sdist.name[:-len('.tar.gz')]}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        with atomic_dir(root, overwrite=True) as tmp, tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(prefix):
                    rel = member.name[len(prefix):]
                    if rel.startswith(wanted):
                        dest = tmp / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as src, open(dest, "wb") as out:
                            shutil.copyfileobj(src, out)
    progress(f"llama.cpp converter ready in {root}.")
    return root


def _quantize_with_llama_cpp(src: Path, dst: Path, method: str):
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(f"GGUF type {method} needs llama.cpp's quantizer, which is missing: install "
                          f"llama-cpp-python=={LLAMA_CPP_PYTHON} (pip builds it from source in a few minutes). "
                          f"Types written without it: {', '.join(CONVERTER_TYPES)}. Nothing was written.") from None
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{method.upper()}", None)
    if ftype is None:
        raise ExportError(f"Unknown GGUF type {method!r} for llama.cpp.")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ExportError(f"llama.cpp could not quantize {src} to {method} (code {rc}).")


def export_gguf(merged_dir: str | Path, out_file: str | Path, method: str = "q8_0", progress=print) -> Path:
    """GGUF from a merged model folder. f32/f16/bf16/q8_0 come straight from the converter; other
    types (q4_k_m, q5_k_m, ...) are quantized from an f16 GGUF by llama.cpp."""
    merged_dir, out_file = Path(merged_dir), Path(out_file)
    method = method.lower()
    converter = find_converter()
    if method not in CONVERTER_TYPES:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            _quantize_with_llama_cpp(out_file, out_file, method)  # raises the clear message
    size = sum(f.stat().st_size for f in merged_dir.glob("*.safetensors"))
    check_disk(out_file.parent, size * (2 if method not in CONVERTER_TYPES else 1), "the GGUF file")
    first = method if method in CONVERTER_TYPES else "f16"
    tmp_dir = Path(tempfile.mkdtemp(dir=out_file.parent, prefix=f".{out_file.name}.", suffix=".partial"))
    try:
        staged = tmp_dir / f"model.{first}.gguf"
        progress(f"Converting {merged_dir} to GGUF ({first}) with llama.cpp's convert_hf_to_gguf.py ...")
        env = {**os.environ, "PYTHONPATH": str(converter.parent / "gguf-py")}
        proc = subprocess.run([sys.executable, str(converter), str(merged_dir), "--outfile", str(staged),
                               "--outtype", first], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise ExportError(f"llama.cpp's converter failed on {merged_dir}:\n{proc.stderr[-3000:]}")
        if method != first:
            final = tmp_dir / f"model.{method}.gguf"
            progress(f"Quantizing to {method} with llama.cpp ...")
            _quantize_with_llama_cpp(staged, final, method)
            staged = final
        os.replace(staged, out_file)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_file


@dataclass
class GGUFCheck:
    answers_gguf: list[str]
    answers_merged: list[str]
    same_answers: int
    llama_cpp_answers: list[str] | None
    logits: MergeCheck | None

    def summary(self) -> str:
        s = f"transformers read the GGUF back; greedy answers identical to the merged model for " \
            f"{self.same_answers}/{len(self.answers_merged)} prompts"
        if self.logits is not None:
            s += f"; top-1 token agreement {self.logits.top1_agreement:.1%}"
        if self.llama_cpp_answers is not None:
            s += f"; llama.cpp loaded it and answered {sum(bool(a) for a in self.llama_cpp_answers)}/" \
                 f"{len(self.llama_cpp_answers)} prompts"
        return s


def verify_gguf(gguf_file: str | Path, merged_dir: str | Path, tokenizer, prompts: list[str] | None = None) -> GGUFCheck:
    """Load the GGUF back with transformers (dequantised) and, when installed, with llama.cpp."""
    gguf_file, merged_dir = Path(gguf_file), Path(merged_dir)
    prompts = prompts or SAMPLE_PROMPTS
    ids = sample_prompt_ids(tokenizer, prompts)
    merged = plain_transformers_outputs(merged_dir, ids)
    from_gguf = plain_transformers_outputs(gguf_file.parent, ids, gguf_file=gguf_file.name)
    decode = lambda xs: [tokenizer.decode(x, skip_special_tokens=True).strip() for x in xs]  # noqa: E731
    a_merged, a_gguf = decode(merged["greedy"]), decode(from_gguf["greedy"])
    same = sum(_same_until_eos(x, y) for x, y in zip(merged["greedy"], from_gguf["greedy"]))
    logits = compare(merged, from_gguf, tolerance=1.0)
    llama_answers = None
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
    if llama_cpp is not None:
        llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=512, verbose=False)
        llama_answers = []
        for p in ids:
            out = llm(tokenizer.decode(p), max_tokens=24, temperature=0.0)
            llama_answers.append(out["choices"][0]["text"].strip())
        del llm
    return GGUFCheck(a_gguf, a_merged, same, llama_answers, logits)


# ----------------------------------------------------------------------------------------------------------
# Hugging Face Hub
# ----------------------------------------------------------------------------------------------------------

def hub_token() -> str | None:
    """From HF_TOKEN or `huggingface-cli login`; never printed, logged or saved by this package."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def push_to_hub(folder: str | Path, repo_id: str, private: bool = True, progress=print) -> str:
    from huggingface_hub import HfApi

    token = hub_token()
    if not token:
        raise ExportError("No Hugging Face token: set HF_TOKEN in the environment or run "
                          "`huggingface-cli login`, then push again.")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                 ignore_patterns=["unslothify_*.json", "*.partial", ".*"])
    except Exception as e:  # the token may appear in some client errors: report the type and repo only
        raise ExportError(f"Push of {folder} to {repo_id} failed ({type(e).__name__}). Check the repo id, your "
                          f"network and the token's write permission.") from None
    progress(f"Pushed {folder} to https://huggingface.co/{repo_id}")
    return str(getattr(info, "commit_url", repo_id))


def export_all(model, tokenizer, version, cfg, formats=("adapter", "merged", "gguf"), gguf_type: str = "q8_0",
               progress=print) -> dict:
    """The exports of one version into <run>/exports/, each verified; returns their paths."""
    from .runs import Run

    formats = list(formats)
    unknown = set(formats) - {"adapter", "merged", "gguf"}
    if unknown:
        raise ExportError(f"Unknown export format(s) {sorted(unknown)}; use adapter, merged, gguf.")
    out = Run(cfg.output_dir).exports
    results: dict = {}
    if "gguf" in formats:
        find_converter()  # fail before a long merge when the GGUF tool is missing
    if "adapter" in formats:
        results["adapter"] = export_adapter(version.path, out / "adapter")
        progress(f"Adapter {version.name} -> {results['adapter']}")
    if "merged" in formats or "gguf" in formats:
        results["merged"], results["merge_check"] = export_merged(model, tokenizer, out / "merged", progress=progress)
    if "gguf" in formats:
        gguf = export_gguf(results["merged"], out / f"{version.name}.{gguf_type.upper()}.gguf", gguf_type, progress)
        check = verify_gguf(gguf, results["merged"], tokenizer)
        progress(f"GGUF {gguf}: {check.summary()}.")
        results["gguf"], results["gguf_check"] = gguf, check
    atomic_write_json(out / "exports.json", {
        "version": version.name,
        **{k: str(v) for k, v in results.items() if k in ("adapter", "merged", "gguf")},
        **({"merge_check": results["merge_check"].__dict__} if "merge_check" in results else {}),
        **({"gguf_check": results["gguf_check"].__dict__ | {"logits": None}} if "gguf_check" in results else {}),
    })
    return results
