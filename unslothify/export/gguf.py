"""GGUF for llama.cpp / Ollama: made from a merged model folder by llama.cpp's own converter (fetched once
from the llama-cpp-python source on PyPI), k-quants by llama.cpp's quantizer, then read back by transformers
and, when installed, by llama.cpp, and asked the same questions as the merged model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ExportError
from ..fsutil import atomic_dir, check_disk
from ..fsutil import cache_dir
from .ollama import write_modelfile
from .verify import (
    FLOAT32_LIMIT,
    SAMPLE_PROMPTS,
    MergeCheck,
    compare,
    exported_params,
    plain_transformers_outputs,
    same_until_eos,
    sample_prompt_ids,
)

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist carries llama.cpp's converter, gguf-py and conversion/ at this version
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")  # written directly by convert_hf_to_gguf.py


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


def export_gguf(merged_dir: str | Path, out_file: str | Path, method: str = "q8_0", progress=print,
                system_prompt: str = "") -> Path:
    """GGUF from a merged model folder, with an Ollama `Modelfile` beside it (ollama.py). f32/f16/bf16/q8_0
    come straight from the converter; other types (q4_k_m, q5_k_m, ...) are quantized from an f16 GGUF by
    llama.cpp."""
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
    write_modelfile(out_file, merged_dir, system_prompt, progress)
    return out_file


@dataclass
class GGUFCheck:
    answers_gguf: list[str]
    answers_merged: list[str]
    same_answers: int
    llama_cpp_answers: list[str] | None
    logits: MergeCheck | None
    tensors: dict | None = None  # {GGUF tensor: relative difference from the merged weight} (gguf-py's read-back)

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "logits"}
        if self.logits is not None:
            out["top1_agreement"] = self.logits.top1_agreement
        return out

    def summary(self) -> str:
        if self.tensors is not None:
            worst = max(self.tensors.values())
            s = (f"gguf-py read the GGUF back: {len(self.tensors)} tensors match the merged weights to within "
                 f"{worst:.2%} (its quantisation); llama-cpp-python is not installed, so nothing answered from it")
            return s
        who = "transformers read the GGUF back" if self.logits is not None else \
            "llama.cpp read the GGUF back (transformers' read-back skipped: it dequantises to float32)"
        s = f"{who}; greedy answers identical to the merged model for {self.same_answers}/" \
            f"{len(self.answers_merged)} prompts"
        if self.logits is not None:
            s += f"; top-1 token agreement {self.logits.top1_agreement:.1%}"
        if self.llama_cpp_answers is not None:
            s += f"; llama.cpp loaded it and answered {sum(bool(a) for a in self.llama_cpp_answers)}/" \
                 f"{len(self.llama_cpp_answers)} prompts"
        return s


def verify_gguf(gguf_file: str | Path, merged_dir: str | Path, tokenizer, prompts: list[str] | None = None,
                merged_outputs: dict | None = None) -> GGUFCheck:
    """Load the GGUF back with transformers (dequantised) and, when installed, with llama.cpp, and compare
    their greedy answers with the merged model's (`merged_outputs`: the merge check's, for SAMPLE_PROMPTS).
    Above FLOAT32_LIMIT parameters transformers' read-back is skipped: it dequantises to float32 in RAM (28 GB
    for a 7B, more than a Colab runtime has), and llama.cpp's answers are compared instead."""
    gguf_file, merged_dir = Path(gguf_file), Path(merged_dir)
    ids = sample_prompt_ids(tokenizer, prompts or SAMPLE_PROMPTS)
    llama_answers = _llama_cpp_answers(gguf_file, tokenizer, ids)
    large = exported_params(merged_dir) > FLOAT32_LIMIT
    if large and llama_answers is None:  # no llama.cpp here (a Colab runtime): the weights, read back by gguf-py
        return GGUFCheck([], [], 0, None, None, tensor_check(gguf_file, merged_dir))
    merged = merged_outputs if merged_outputs is not None and not prompts else plain_transformers_outputs(merged_dir, ids)
    decode = lambda xs: [tokenizer.decode(x, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()  # noqa: E731
                         for x in xs]
    a_merged = decode(merged["greedy"])
    if large:
        same = sum(a.startswith(b[:40]) or b.startswith(a[:40]) for a, b in zip(llama_answers, a_merged))
        return GGUFCheck(llama_answers, a_merged, same, llama_answers, None)
    from_gguf = plain_transformers_outputs(gguf_file.parent, ids, gguf_file=gguf_file.name, dtype="float32")
    a_gguf = decode(from_gguf["greedy"])
    same = sum(same_until_eos(x, y) for x, y in zip(merged["greedy"], from_gguf["greedy"]))
    return GGUFCheck(a_gguf, a_merged, same, llama_answers, compare(merged, from_gguf, tolerance=1.0))


# GGUF tensors llama.cpp's converter writes unpermuted, and the merged model's names for them (q and k are
# permuted for rotary embeddings, so they are left out).
TENSOR_PAIRS = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
                "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
                "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
                "blk.0.ffn_up.weight": "model.layers.0.mlp.up_proj.weight"}
TENSOR_TOLERANCE = 0.02  # q8_0 rounds each block of 32 to 1/127 of its largest value: ~0.4 % of the norm


def tensor_check(gguf_file: Path, merged_dir: Path) -> dict:
    """Read the GGUF back with gguf-py, without dequantising the whole model (7 GB of RAM for a q8_0 7B would
    not fit beside the run on a Colab runtime): a few tensors, dequantised one at a time, against the merged
    weights. ExportError when they differ by more than the quantisation explains."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    reader = GGUFReader(str(gguf_file))
    found = {t.name: t for t in reader.tensors}
    shards = {}
    index = merged_dir / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"] if index.exists() else None
    out = {}
    for gname, hname in TENSOR_PAIRS.items():
        if gname not in found:
            continue
        shard = merged_dir / (weight_map[hname] if weight_map else "model.safetensors")
        if shard not in shards:
            shards[shard] = safe_open(str(shard), "pt")
        want = shards[shard].get_tensor(hname).float().numpy()
        t = found[gname]
        got = dequantize(t.data, t.tensor_type).reshape(want.shape).astype(np.float32)
        out[gname] = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))
    if len(out) < 2 or max(out.values()) > TENSOR_TOLERANCE:
        raise ExportError(f"{gguf_file} does not hold the merged weights: relative differences {out} "
                          f"(tolerance {TENSOR_TOLERANCE:.0%}). Nothing was kept.")
    return out


def _llama_cpp_answers(gguf_file: Path, tokenizer, ids: list[list[int]]) -> list[str] | None:
    """Greedy answers from llama.cpp, None when llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=512, verbose=False)
    answers = []
    for p in ids:
        prompt = tokenizer.decode(p)
        if tokenizer.bos_token and prompt.startswith(tokenizer.bos_token):
            prompt = prompt[len(tokenizer.bos_token):]  # llama.cpp adds the BOS token itself
        out = llm(prompt, max_tokens=24, temperature=0.0)
        answers.append(out["choices"][0]["text"].strip())
    del llm
    return answers
