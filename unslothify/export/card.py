"""Model cards (README.md) for merged exports, adapter exports and Hub pushes, made with huggingface_hub's
ModelCard / ModelCardData from what the run folder records: the version's manifest and its parents, the
eval scores, the merge check, the base model's license.

    info = card_info(run_root, "v003", merge_check=check.as_dict())
    write_card(folder, info, kind="merged")                 # README.md + unslothify_card.json
    write_card(folder, read_info(folder), "merged", model_ref="you/repo")   # before a Hub push
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from ..fsutil import atomic_write_json, atomic_write_text
from ..model.embedded import EMBEDDED_GGUF, EMBEDDED_HUB_ID, EMBEDDED_NAME, embedded_package_dir
from ..runs import Run
from ..machine.runtime import REPO_URL

INFO_FILE = "unslothify_card.json"  # what the card was made from; not uploaded (hub.py skips unslothify_*)
TAGS = ["unslothify", "unsloth", "trl", "sft", "lora", "text-generation"]


def base_model_id(manifest: dict) -> str:
    """The base as a Hub id where there is one (the embedded model is SmolLM2-135M-Instruct)."""
    path = str(manifest.get("base_model_path") or manifest.get("base_model") or "")
    if manifest.get("base_model") == "embedded" or Path(path).name == EMBEDDED_NAME:
        return EMBEDDED_HUB_ID
    return path


def base_license(manifest: dict) -> str | None:
    """The base model's license field: the embedded GGUF's general.license, a local base's README.md, or the
    Hub card of a Hub base (from the local cache first). None where it cannot be read."""
    from huggingface_hub import ModelCard

    path = str(manifest.get("base_model_path") or "")
    try:
        if base_model_id(manifest) == EMBEDDED_HUB_ID and not Path(path, "README.md").exists():
            from gguf import GGUFReader

            field = GGUFReader(str(embedded_package_dir() / EMBEDDED_GGUF)).fields.get("general.license")
            return field.contents() if field is not None else None
        if Path(path).is_dir():
            readme = Path(path) / "README.md"
            return ModelCard.load(readme).data.license if readme.exists() else None
        from huggingface_hub import hf_hub_download

        logger = logging.getLogger("huggingface_hub")
        level = logger.level
        logger.setLevel(logging.ERROR)  # retry warnings while offline; the card says 'unknown' then
        try:
            readme = hf_hub_download(path, "README.md", local_files_only=True)
        except Exception:  # not cached: ask the Hub
            readme = hf_hub_download(path, "README.md")
        finally:
            logger.setLevel(level)
        return ModelCard.load(readme).data.license
    except Exception:  # offline, gated, or no card: the card says the license is unknown
        return None


def card_info(run_root, version_name: str, merge_check: dict | None = None, gguf: str | None = None) -> dict:
    """Everything a card shows, from the run folder."""
    run = Run(run_root)
    v = run.version(version_name)
    m = v.manifest
    parents, parent = [], m.get("parent")
    while parent:
        try:
            pm = run.version(parent).manifest
        except FileNotFoundError:
            parents.append({"version": parent, "missing": True})
            break
        parents.append({"version": parent, "epochs": pm.get("cumulative_epochs"), "eval_loss": pm.get("final_eval_loss")})
        parent = pm.get("parent")
    scores = run.root / "eval" / f"{v.name}.json"
    return {
        "version": v.name,
        "parents": parents,
        "base_model": base_model_id(m),
        "base_model_revision": m.get("base_model_revision"),
        "base_license": base_license(m),
        "config": m.get("config", {}),
        "chat_template": m.get("chat_template"),
        "data": m.get("data_file"),
        "data_sha256": m.get("data_sha256"),
        "data_items": m.get("data_items"),
        "train_items": m.get("train_items"),
        "validation_items": m.get("validation_items"),
        "epochs": m.get("cumulative_epochs"),
        "steps": m.get("cumulative_steps"),
        "final_train_loss": m.get("final_train_loss"),
        "final_eval_loss": m.get("final_eval_loss"),
        "scores": json.loads(scores.read_text())["summary"] if scores.exists() else None,
        "merge_check": merge_check,
        "gguf": gguf,
        "packages": {k: m.get("packages", {}).get(k) for k in ("unsloth", "transformers", "trl", "peft", "torch")},
        "created": m.get("created"),
    }


def _fmt(x, digits=4):
    return "n/a" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def _body(info: dict, kind: str, ref: str) -> str:
    hub_repo = ref.count("/") == 1 and not Path(ref).exists()
    name = ref.split("/")[-1] if hub_repo else f"{info['base_model'].split('/')[-1]}, fine-tuned ({info['version']})"
    chain = " <- ".join([info["version"]] + [p["version"] for p in info["parents"]] + ["base"])
    template = info.get("chat_template") or {}
    lines = [f"# {name}", "",
             f"A LoRA fine-tune of [{info['base_model']}](https://huggingface.co/{info['base_model']}) made with "
             f"[unslothify]({REPO_URL}) (Unsloth + TRL SFTTrainer). "
             f"This is {'the adapter merged into 16-bit weights' if kind == 'merged' else 'the LoRA adapter alone'}.",
             "", "## Training", "",
             "| | |", "|---|---|",
             f"| base model | `{info['base_model']}` (revision `{info['base_model_revision'] or 'n/a'}`) |",
             f"| base license | {info['base_license'] or 'unknown: check the base model card'} |",
             f"| adapter version | `{info['version']}`; trained from: {chain} |",
             f"| chat template | {template.get('used', 'n/a')} ({template.get('why', '')}) |",
             f"| data | `{info['data']}`, {_fmt(info['data_items'])} items ({_fmt(info['train_items'])} train, "
             f"{_fmt(info['validation_items'])} validation), SHA-256 `{info['data_sha256']}` |",
             f"| epochs / steps | {_fmt(info['epochs'])} / {_fmt(info['steps'])} (all versions in the chain) |",
             f"| final train / validation loss | {_fmt(info['final_train_loss'])} / {_fmt(info['final_eval_loss'])} |",
             "| made with | " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v) + " |"]
    lines += _evaluation_lines(info)
    lines += ["", "## Use", "", "With transformers:", "", "```python"]
    if kind == "merged":
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'tokenizer = AutoTokenizer.from_pretrained("{ref}")',
                  f'model = AutoModelForCausalLM.from_pretrained("{ref}")']
    else:
        lines += ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                  f'tokenizer = AutoTokenizer.from_pretrained("{ref}")',
                  f'model = AutoPeftModelForCausalLM.from_pretrained("{ref}")  # loads {info["base_model"]} too']
    gguf = info.get("gguf") or f"{info['version']}.Q8_0.gguf"
    lines += ['messages = [{"role": "user", "content": "Your question"}]',
              "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\")",
              "out = model.generate(ids, max_new_tokens=128)",
              "print(tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True))", "```", "",
              f"With llama.cpp or Ollama, from the GGUF file (`python -m unslothify export --formats gguf` writes "
              f"`{gguf}` and an Ollama `Modelfile` beside it):", "", "```bash",
              f"llama-cli -m {gguf} -cnv", "ollama create my-model -f Modelfile", "ollama run my-model", "```",
              "", "## Configuration", "", "Every knob of the training call that made this version:", "", "```yaml",
              yaml.safe_dump(info["config"], sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _evaluation_lines(info: dict) -> list[str]:
    """The card's scores (base and tuned recall, retention) and merge check, where the version has them."""
    s = info.get("scores")
    lines = ["", "## Evaluation", ""]
    if s:
        lines += ["| | base | tuned |", "|---|---|---|",
                  f"| recall on {s.get('n', '?')} held-out questions (`{info['config'].get('eval_questions')}`) | "
                  f"{_fmt(s.get('base_recall'))} | {_fmt(s.get('tuned_recall'))} |"]
        if "tuned_general" in s:
            retention = s.get("retention")  # of the questions the base answers, the share still answered
            lines.append(f"| general questions answered (retention {_fmt(retention, 3)}: of those the base answers, "
                         f"the share still answered) | "
                         f"{_fmt(s.get('base_general'))} | {_fmt(s.get('tuned_general'))} |")
    else:
        lines.append("Not scored yet (`python -m unslothify eval`).")
    mc = info.get("merge_check")
    if mc:
        lines += ["", "## Merge check", "",
                  f"The merged weights were compared with the adapter on its base on {mc['n_prompts']} prompts: "
                  f"max |logit difference| {mc['max_abs_diff']:.4g} (largest logit {mc['max_abs_logit']:.3g}, relative "
                  f"{mc['relative']:.2e}, tolerance {mc['tolerance']:.0e}: {'ok' if mc['ok'] else 'FAILED'}), top-1 "
                  f"token agreement {mc['top1_agreement']:.1%}, greedy continuations identical for "
                  f"{mc['greedy_equal']}/{mc['n_prompts']}."]
    return lines


def build_card(info: dict, kind: str = "merged", model_ref: str | None = None):
    """A huggingface_hub ModelCard: metadata (base_model, library_name, tags, license) and the body."""
    from huggingface_hub import ModelCard, ModelCardData

    data_spec = str(info.get("data") or "")
    datasets = [data_spec.split(":")[0]] if data_spec and not Path(data_spec.split(":")[0]).exists() \
        and data_spec.count("/") == 1 else None  # a Hub dataset id
    data = ModelCardData(
        base_model=info["base_model"],
        library_name="transformers" if kind == "merged" else "peft",
        tags=TAGS + ([] if kind == "merged" else ["base_model:adapter:" + info["base_model"]]),
        license=info.get("base_license"),
        pipeline_tag="text-generation",
        datasets=datasets,
    )
    content = f"---\n{data.to_yaml()}\n---\n\n{_body(info, kind, model_ref or '.')}"
    return ModelCard(content)


def write_card(folder, info: dict, kind: str = "merged", model_ref: str | None = None) -> Path:
    """README.md in folder (and the info it came from, so a Hub push can write it again with the repo id)."""
    folder = Path(folder)
    atomic_write_json(folder / INFO_FILE, {"kind": kind, "info": info})
    return atomic_write_text(folder / "README.md", str(build_card(info, kind, model_ref or str(folder))))


def read_info(folder) -> tuple[str, dict] | None:
    """(kind, info) a card in folder was made from, or None."""
    path = Path(folder) / INFO_FILE
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved["kind"], saved["info"]


def minimal_card(folder) -> Path:
    """README.md for a folder this project has no training record of (no unslothify_card.json): what its
    config.json or adapter_config.json says about the base."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    base, library = None, "transformers"
    for name, key in (("adapter_config.json", "base_model_name_or_path"), ("config.json", "_name_or_path")):
        if (folder / name).exists():
            base = json.loads((folder / name).read_text()).get(key) or base
            library = "peft" if name == "adapter_config.json" else library
            break
    data = ModelCardData(base_model=base, library_name=library, tags=TAGS)
    body = (f"# {folder.name}\n\nPushed with [unslothify]({REPO_URL}); the training record of this folder "
            f"(run folder, version) was not found, so this card has no training details.\n")
    return atomic_write_text(folder / "README.md", str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")))
