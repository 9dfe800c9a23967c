"""The augmentation stage: run the active kinds over the training split, write the augmented file beside the
user's data file with a report, and read it back for training (writing it again when it is stale)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..items import DataError, Item, detect_format, normalise, read_jsonl
from ...fsutil import atomic_write_json, atomic_write_text, sha256_file
from ...runs import Run
from .checks import norm_question, user_text
from .context import Context
from .kinds import KINDS, NAMES


# ----------------------------------------------------------------------------------------------------------
# Paths and provenance
# ----------------------------------------------------------------------------------------------------------

def augmented_path(cfg) -> Path:
    """domain.jsonl -> domain.augmented.jsonl, beside the user's file or folder; for a Hub dataset, which has
    no folder here, in the run folder's augment/."""
    from ..sources import display_name, parse

    if not parse(cfg.data).local:
        return Run(cfg.output_dir).root / "augment" / f"{display_name(cfg.data)}.augmented.jsonl"
    data = Path(parse(cfg.data).where)
    stem = data.name[:-len(".jsonl")] if data.name.endswith(".jsonl") else data.stem
    return data.with_name(stem + ".augmented.jsonl")


def report_path(cfg) -> Path:
    p = augmented_path(cfg)
    return p.with_name(p.name[:-len(".jsonl")] + ".report.json")


def _split_hash(items: list[Item]) -> str:
    blob = json.dumps([i.to_record() for i in items], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _inputs(cfg, prepared) -> dict:
    """What the augmented file depends on; a change in any of these makes it stale."""
    a = cfg.augment
    inputs = {"train_sha256": _split_hash(prepared.train), "validation_sha256": _split_hash(prepared.validation),
              "seed": cfg.seed, "augment": {k: v for k, v in asdict(a).items() if k != "enabled"}}
    for kind in KINDS:
        if kind.active(a):
            inputs.update(kind.inputs(cfg))
    return inputs


# ----------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------

@dataclass
class AugmentResult:
    added: list[Item]
    report: dict


def _generators(cfg, model, tokenizer, progress):
    """generator(spec) for the Context: 'model' is the model in use (the one passed, else loaded once)."""
    loaded: dict = {}
    if model is not None:
        loaded["model"] = (model, tokenizer, "the model in use")

    def generator(spec: str):
        if spec not in loaded:
            from ...model.load import load_for_inference

            loaded[spec] = load_for_inference(cfg.model if spec == "model" else spec, cfg, progress)
        return loaded[spec]

    return generator


def augment(cfg, prepared, progress=print, model=None, tokenizer=None) -> AugmentResult:
    """Write the augmented file beside the user's data file (and its report) and return the added Items (kinds
    interleaved by source item, so the first rows show each kind) with the report. `model`/`tokenizer` may be
    passed to reuse a loaded base model for replay and model rewording; otherwise it is loaded when needed."""
    started = time.perf_counter()
    ctx = Context(cfg, list(prepared.train), list(prepared.validation), progress,
                  _generators(cfg, model, tokenizer, progress))
    for kind in KINDS:
        if kind.active(cfg.augment):
            t0 = time.perf_counter()
            kind.run(ctx)
            ctx.details[kind.name] = round(time.perf_counter() - t0, 2)
    added = ctx.added()
    out_path = augmented_path(cfg)
    text = "".join(json.dumps({**it.to_record(), "source": Path(it.source).name}, ensure_ascii=False) + "\n"
                   for it in added)
    atomic_write_text(out_path, text)
    counts = {name: sum(1 for i in added if i.kind == name) for name in NAMES}
    rejects = ctx.rejects
    seconds = round(time.perf_counter() - started, 2)
    report = {
        "file": str(out_path),
        "data": str(cfg.data),
        "inputs": _inputs(cfg, prepared),
        "file_sha256": sha256_file(out_path),
        "train_items": len(ctx.train),
        "added": counts,
        "added_total": len(added),
        "rejected": rejects.counts,
        "rejected_total": rejects.total(),
        "reject_examples": rejects.examples,
        "multi_turn_items_skipped": ctx.multi_turn_skipped,
        "seconds": seconds,
        "details": ctx.details,
    }
    atomic_write_json(report_path(cfg), report)
    atomic_write_json(Run(cfg.output_dir).root / "augment" / "report.json", report)
    rej = ", ".join(f"{k} {sum(v.values())} ({', '.join(f'{r} {n}' for r, n in sorted(v.items()))})"
                    for k, v in sorted(rejects.counts.items())) or "none"
    progress(f"Augmented {len(ctx.train)} training items: added {len(added)} "
             f"({', '.join(f'{k} {n}' for k, n in counts.items() if n) or 'nothing'}) in {seconds:.1f} s; "
             f"rejected {rejects.total()}: {rej}. Wrote {out_path} (your {Path(cfg.data).name} is unchanged).")
    not_english = sum(v.get("not_english", 0) for v in rejects.counts.values())
    if not_english:
        progress(f"Skipped {not_english} rewordings of questions that are not English: the rules are English only "
                 f"(augment.rephrase_with: model rewords in any language the model speaks).")
    return AugmentResult(added, report)


# ----------------------------------------------------------------------------------------------------------
# Reading the augmented file back
# ----------------------------------------------------------------------------------------------------------

def load_augmented(path: str | Path, prepared=None) -> list[Item]:
    """The augmented file's records as Items, validated (each record in the text or messages format, with
    kind and source_line). With `prepared`, a record whose source line is a validation item is an error
    (validation must not leak into training)."""
    path = Path(path)
    if not path.exists() or not path.stat().st_size:
        return []
    # Withheld validation items (objective skill) must not reach training through their variants; under the
    # knowledge objective the validation items are probes of trained items, whose wording must not.
    withheld = [i for i in prepared.validation if i.kind != "probe"] if prepared is not None else []
    val_lines = {i.source_line if i.source_line is not None else i.line for i in withheld}
    probe_questions = {norm_question(user_text(i) or "") for i in prepared.validation if i.kind == "probe"} \
        if prepared is not None else set()
    items = []
    for number, rec in read_jsonl(path):
        where = f"{path}, line {number}"
        fmt = detect_format(rec, where)
        messages, text = normalise(rec, fmt, where)
        kind = rec.get("kind")
        if kind not in NAMES:
            raise DataError(f"{where}: field 'kind' is {kind!r}; an augmented record is one of {', '.join(NAMES)}.")
        src = rec.get("source_line")
        if not isinstance(src, int):
            raise DataError(f"{where}: field 'source_line' must be the line number of the item it came from.")
        if kind != "replay" and src in val_lines:
            raise DataError(f"{where}: source_line {src} is a validation item; augmenting it would leak validation "
                            f"data into training. Delete the line, or run `python -m unslothify augment` again.")
        if messages is not None and norm_question(next((m["content"] for m in reversed(messages)
                                                        if m["role"] == "user"), "")) in probe_questions:
            raise DataError(f"{where}: this question is a knowledge probe's (prepared/probes.jsonl); training on it "
                            f"would make the probe measure memory of its wording. Delete the line, or run "
                            f"`python -m unslothify augment` again.")
        items.append(Item(line=number, source=str(path), messages=messages, text=text, kind=kind, source_line=src))
    return items


def _report(cfg) -> dict | None:
    try:
        return json.loads(report_path(cfg).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def state(cfg, prepared) -> str:
    """'current', 'edited' (inputs unchanged, file changed by hand), 'stale' or 'missing'."""
    path = augmented_path(cfg)
    if not path.exists():
        return "missing"
    report = _report(cfg)
    if report is None or report.get("inputs") != _inputs(cfg, prepared):
        return "stale"
    return "current" if report.get("file_sha256") == sha256_file(path) else "edited"


def training_items(cfg, prepared, progress=print, model=None, tokenizer=None) -> list[Item]:
    """The items a training call uses: the prepared training split, plus the augmented records when enabled,
    read back from the augmented file (written again first when it is missing or stale)."""
    items = list(prepared.train)
    if not cfg.augment.enabled:
        return items
    from accelerate import PartialState

    with PartialState().main_process_first():  # under `accelerate launch`, one process writes, the others read
        return items + _augmented_for_training(cfg, prepared, progress, model, tokenizer)


def _augmented_for_training(cfg, prepared, progress, model, tokenizer) -> list[Item]:
    path = augmented_path(cfg)
    st = state(cfg, prepared)
    if st == "stale" and _edited_by_hand(cfg):
        raise DataError(f"{path} was edited by hand, and the prepared data or the augment settings have changed "
                        f"since it was written. Move your edited copy away and run `python -m unslothify augment` "
                        f"to write it again for the current data (or switch augment.enabled off).")
    if st in ("missing", "stale"):
        progress(f"The augmented file {path} is {'missing' if st == 'missing' else 'out of date'}; writing it.")
        augment(cfg, prepared, progress, model, tokenizer)
    elif st == "edited":
        progress(f"Using {path} as edited by hand.")
    return load_augmented(path, prepared)


def describe_items(items: list[Item]) -> str:
    """'450 items + 1487 augmented (rephrase 899, ...)' for the items a training call uses."""
    counts = {name: sum(1 for i in items if i.kind == name) for name in NAMES}
    added = sum(counts.values())
    return (f"{len(items) - added} items" + (f" + {added} augmented ("
            + ", ".join(f"{k} {n}" for k, n in counts.items() if n) + ")" if added else ""))


def _edited_by_hand(cfg) -> bool:
    path = augmented_path(cfg)
    report = _report(cfg) if path.exists() else None
    return report is not None and report.get("file_sha256") not in (None, sha256_file(path))
