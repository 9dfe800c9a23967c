"""Exports, each verified after writing, each written atomically (nothing partial on failure).

  adapter  the LoRA adapter alone (a copy of a version folder)
  merged   a 16-bit safetensors model that plain transformers loads; its logits are checked against the
           adapter on its base (unslothify/export/verify.py)
  gguf     llama.cpp / Ollama file made from the merged model by llama.cpp's own converter (gguf.py), with
           an Ollama Modelfile beside it (ollama.py)

    results = export_all(model, tokenizer, version, cfg, formats=("merged", "gguf"))
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .card import card_info, write_card
from ..errors import ExportError
from ..fsutil import atomic_dir, atomic_write_json, check_disk
from .hub import push_to_hub  # noqa: F401  (the notebooks import it from here)
from .verify import SAMPLE_PROMPTS, MergeCheck, sample_prompt_ids, verify_merged

# Every export format, in the order export_all makes them (gguf is made from merged).
FORMATS = ("adapter", "merged", "gguf")


def merged_size_bytes(model) -> int:
    """Bytes a 16-bit copy of the model takes (parameters x 2), counting 4-bit packed weights unpacked."""
    base = getattr(model, "get_base_model", lambda: model)()
    return 2 * sum(p.numel() * (2 if hasattr(p, "quant_state") else 1) for p in base.parameters())


def export_adapter(version_dir: str | Path, out_dir: str | Path, scale: float = 1.0) -> Path:
    """A copy of the version folder, with a model card; at an adapter_scale below 1 its lora_B weights carry the
    scale, so that PEFT loads the adapter as it is used here."""
    version_dir, out_dir = Path(version_dir), Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        for f in version_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if scale != 1.0:
            _scale_adapter_file(tmp / "adapter_model.safetensors", scale)
        write_card(tmp, card_info(version_dir.parent, version_dir.name), "adapter", model_ref=str(out_dir))
    return out_dir


def _scale_adapter_file(path: Path, scale: float):
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: v * scale if "lora_B" in k else v for k, v in tensors.items()}, path, metadata={"format": "pt"})


# ----------------------------------------------------------------------------------------------------------
# merged 16-bit
# ----------------------------------------------------------------------------------------------------------

def export_merged(model, tokenizer, out_dir: str | Path, prompts: list[str] | None = None,
                  progress=print, version=None, checks_ahead=None) -> tuple[Path, MergeCheck]:
    """Merge the adapter into 16-bit weights, then verify against the adapter on its base (in the processes of
    verify.ChecksAhead where given). A merge that fails its check raises ExportError (with the figures) and
    leaves nothing behind. With the Version the adapter came from, the folder gets a model card (README.md)."""
    out_dir = Path(out_dir)
    check_disk(out_dir.parent, merged_size_bytes(model), "the merged 16-bit model")
    prompt_ids = sample_prompt_ids(tokenizer, prompts or SAMPLE_PROMPTS)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        progress(f"Merging the adapter into 16-bit weights -> {out_dir} ...")
        merge_to_16bit(model, tokenizer, tmp)
        check = verify_merged(model, tokenizer, tmp, prompt_ids, ahead=checks_ahead)
        atomic_write_json(tmp / "unslothify_export.json", {"kind": "merged_16bit", "check": check.as_dict()})
        if not check.ok:
            raise ExportError(f"The merged model does not match the adapter on its base: {check.summary()}. "
                              "Nothing was written.", check=check.as_dict())
        if version is not None:
            write_card(tmp, card_info(version.path.parent, version.name, check.as_dict()), "merged", str(out_dir))
    progress(f"Merged model verified: {check.summary()}.")
    return out_dir, check


def storage_dtype(model):
    """float16 where the model runs in float16 (a GPU without bfloat16), else bfloat16."""
    import torch

    base = getattr(model, "get_base_model", lambda: model)()
    dtypes = {p.dtype for p in base.parameters() if p.is_floating_point()}
    return torch.float16 if dtypes == {torch.float16} else torch.bfloat16


def merge_to_16bit(model, tokenizer, folder: Path, dtype=None, shard_bytes: int = 2 << 30, with_adapter: bool = True):
    """Merge a LoRA adapter into its base and write a plain 16-bit safetensors model.

    Each weight under an adapter is taken as the model computes with it (a 4-bit one dequantised by
    bitsandbytes, a 16-bit one upcast), the adapter's delta B @ A * scale added in float32, and the sum
    stored once in 16 bits. Written by hand because neither library does this: PEFT's merge_and_unload on a
    4-bit base quantises the sum back to 4 bits, and Unsloth's save_pretrained_merged merges into the
    original 16-bit weights (downloading them for a pre-quantised base), which differ from the trained 4-bit
    ones by the 4-bit rounding (~9 % of each weight). Shards are written as they fill, so memory holds one
    shard (2 GiB) rather than the whole model (a merged 7B is 14.5 GB, more than a Colab runtime's RAM).
    with_adapter=False writes the base alone, as the model computes with it (scripts/merge_diagnosis.py)."""
    dtype = dtype or storage_dtype(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    _write_shards(_merged_tensors(base, with_adapter), folder, dtype, shard_bytes)
    _write_config(base, tokenizer, folder, dtype)


def _weight_of(p):
    """A parameter as the model computes with it, in float32 (a copy: a delta is added to it in place)."""
    import torch

    if hasattr(p, "quant_state"):
        from bitsandbytes.functional import dequantize_4bit

        return dequantize_4bit(p.data, p.quant_state).float()
    return p.detach().to(torch.float32, copy=True)


def _merged_tensors(base, with_adapter: bool = True):
    """(name, float32 tensor) for every weight of the merged model, under the base model's own names."""
    lora = {name: m for name, m in base.named_modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")}
    inside = tuple(f"{name}." for name in lora)
    tied = getattr(base.config, "tie_word_embeddings", False)
    for pname, p in base.named_parameters():
        owner = next((name for name in lora if pname.startswith(f"{name}.")), None)
        if owner is None:
            if not pname.startswith(inside) and not (tied and pname == "lm_head.weight"):
                yield pname, _weight_of(p)
        elif pname == f"{owner}.base_layer.weight":
            m, w = lora[owner], _weight_of(p)
            for adapter in getattr(m, "active_adapters", ["default"]) if with_adapter else []:
                if adapter in m.lora_A and not getattr(m, "merged", False):
                    a, b = m.lora_A[adapter].weight.float(), m.lora_B[adapter].weight.float()
                    w += (b.to(w.device) @ a.to(w.device)) * m.scaling[adapter]
            yield f"{owner}.weight", w
        elif pname == f"{owner}.base_layer.bias":
            yield f"{owner}.bias", _weight_of(p)


def _write_shards(tensors, folder: Path, dtype, shard_bytes: int):
    """Safetensors shards written as they fill (and an index when there are several), each tensor cast to
    dtype on the way."""
    import torch
    from safetensors.torch import save_file

    shard: dict = {}
    size = total = 0
    written: list[tuple[str, list[str]]] = []

    def flush():
        name = f".shard-{len(written) + 1:05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        written.append((name, list(shard)))
        shard.clear()

    with torch.no_grad():
        for name, w in tensors:
            t = w.to(dtype).cpu().contiguous()
            shard[name] = t
            size += t.numel() * t.element_size()
            total += t.numel() * t.element_size()
            if size >= shard_bytes:
                flush()
                size = 0
    if shard or not written:
        flush()
    if len(written) == 1:
        (folder / written[0][0]).rename(folder / "model.safetensors")
        return
    weight_map = {}
    for i, (name, keys) in enumerate(written, start=1):
        final = f"model-{i:05d}-of-{len(written):05d}.safetensors"
        (folder / name).rename(folder / final)
        weight_map.update({k: final for k in keys})
    atomic_write_json(folder / "model.safetensors.index.json",
                      {"metadata": {"total_size": total}, "weight_map": weight_map})


def _write_config(base, tokenizer, folder: Path, dtype):
    """The config (without the 4-bit quantisation), the generation config and the tokenizer."""
    import copy

    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    config.use_cache = True
    config.save_pretrained(str(folder))
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


# ----------------------------------------------------------------------------------------------------------
# all of them
# ----------------------------------------------------------------------------------------------------------

def export_all(model, tokenizer, version, cfg, formats=FORMATS, gguf_type: str = "q8_0", progress=print) -> dict:
    """The exports of one version into <run>/exports/, each verified; returns their paths and checks. A format
    that cannot be made is skipped with what fixes it (results["skipped"]: {format: message}); the others are
    made and kept. A merged model that fails its check is no export, and nothing is made from it."""
    from .gguf import find_converter
    from ..runs import Run

    formats = list(formats or FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"Unknown export format(s) {unknown}; use {', '.join(FORMATS)}.")
    out = Run(cfg.output_dir).exports
    results: dict = {"skipped": {}}
    if "gguf" in formats:
        try:
            find_converter()  # said before a long merge, not after it
        except ExportError as e:
            results["skipped"]["gguf"] = str(e)
            progress(f"Skipping GGUF: {e}")
            formats.remove("gguf")
    if "adapter" in formats:
        results["adapter"] = export_adapter(version.path, out / "adapter", cfg.adapter_scale)
        progress(f"Adapter {version.name} -> {results['adapter']}")
    if "merged" in formats or "gguf" in formats:
        results["merged"], results["merge_check"] = export_merged(model, tokenizer, out / "merged", progress=progress,
                                                                  version=version)
    if "gguf" in formats:
        _export_gguf(results, tokenizer, version, cfg, out, gguf_type, progress)
    atomic_write_json(out / "exports.json", {
        "version": version.name,
        **{k: str(v) for k, v in results.items() if k in FORMATS},
        **({"modelfile": str(results["gguf"].parent / "Modelfile")} if "gguf" in results else {}),
        **({"merge_check": results["merge_check"].as_dict()} if "merge_check" in results else {}),
        **({"gguf_check": results["gguf_check"].as_dict()} if "gguf_check" in results else {}),
        "skipped": results["skipped"],
    })
    if results["skipped"]:
        made = ", ".join(k for k in FORMATS if k in results) or "nothing"
        progress(f"Made {made}; skipped {', '.join(results['skipped'])} (the reason and the fix are above).")
    return results


def _export_gguf(results: dict, tokenizer, version, cfg, out: Path, gguf_type: str, progress):
    """GGUF from the merged export, read back and checked; a failure skips it and keeps the merged model."""
    from .gguf import export_gguf, verify_gguf

    try:
        gguf = export_gguf(results["merged"], out / f"{version.name}.{gguf_type.upper()}.gguf", gguf_type, progress,
                           system_prompt=cfg.system_prompt)
    except ExportError as e:
        results["skipped"]["gguf"] = str(e)
        progress(f"Skipping GGUF: {e}")
        return
    try:
        check = verify_gguf(gguf, results["merged"], tokenizer, merged_outputs=results["merge_check"].outputs)
    except ExportError as e:  # a GGUF that does not check out is not kept
        gguf.unlink(missing_ok=True)
        (gguf.parent / "Modelfile").unlink(missing_ok=True)
        results["skipped"]["gguf"] = str(e)
        progress(f"Skipping GGUF: {e}")
        return
    progress(f"GGUF {gguf}: {check.summary()}.")
    results["gguf"], results["gguf_check"] = gguf, check
    write_card(results["merged"], card_info(version.path.parent, version.name, results["merge_check"].as_dict(),
                                            gguf=gguf.name), "merged", str(results["merged"]))
