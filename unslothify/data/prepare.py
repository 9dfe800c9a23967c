"""The prepare stage: validate the user's file, split it, measure token lengths, write prepared/.

Nothing is written unless the whole file is valid; prepared/ is replaced atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from .items import DataError, Item, items_from_records, split_items
from .tokens import length_stats, tokenize_items
from ..errors import StepMissing
from ..fsutil import atomic_dir, atomic_write_json, read_json, write_jsonl
from .probes import build_probes, choose_objective, read_probes, write_probes
from ..runs import Run
from .sources import display_name, fingerprint, load_items


@dataclass
class Prepared:
    train: list[Item]
    validation: list[Item]  # held-out items (objective skill) or probe rewordings of trained items (knowledge)
    report: dict
    probes: list = field(default_factory=list)  # knowledge probes (evaluation.Question), objective knowledge

    @property
    def objective(self) -> str:
        return self.report.get("objective_chosen", "skill")


def prepare(cfg: Config, tokenizer=None, progress=print, plot: bool = True) -> Prepared:
    """Read and check cfg.data, choose the objective, split (skill) or build the probes (knowledge), measure
    token lengths and write prepared/ (nothing, if any item is bad)."""
    from ..model.load import load_tokenizer

    items, load_report = load_items(cfg.data, skip_duplicates=cfg.skip_duplicates, columns=cfg.columns)
    objective, why = choose_objective(cfg, items)
    progress(f"Objective: {objective} ({why}).")
    tokenizer = tokenizer or load_tokenizer(cfg, progress)
    train, val, probes, lengths, overlong = _split(cfg, items, objective, tokenizer)
    report = {
        "data": str(cfg.data), "data_sha256": fingerprint(cfg.data), "format": load_report.format,
        "lines_read": load_report.n_read, "items": len(items), "columns": cfg.columns,
        "chat_template": cfg.chat_template, "duplicates_dropped": load_report.duplicates, "overlong_dropped": overlong,
        "train_items": len(train), "validation_items": len(val), "validation_split": cfg.validation_split,
        "objective": cfg.objective, "objective_chosen": objective, "objective_why": why, "probes": cfg.probes,
        "probe_items": len(probes), "seed": cfg.seed, "max_seq_length": cfg.max_seq_length,
        "skip_overlong": cfg.skip_overlong, "skip_duplicates": cfg.skip_duplicates, "system_prompt": cfg.system_prompt,
        "tokenizer": getattr(tokenizer, "name_or_path", ""), "token_lengths": length_stats(lengths),
    }
    run = Run(cfg.output_dir)
    with atomic_dir(run.prepared, overwrite=True) as tmp:
        write_jsonl(tmp / "train.jsonl", [i.to_record() for i in train])
        write_jsonl(tmp / "validation.jsonl", [i.to_record() for i in val])
        write_probes(tmp / "probes.jsonl", probes)
        atomic_write_json(tmp / "report.json", report)
        if plot:
            from ..ui.plots import length_histogram

            import matplotlib.pyplot as plt

            # written, then closed: a notebook shows the saved file where its text says (not twice)
            plt.close(length_histogram(lengths, cfg.max_seq_length, tmp / "lengths.png",
                                       title=f"Token lengths: {display_name(cfg.data)} ({len(lengths)} items)"))
    s = report["token_lengths"]
    held = (f"{len(probes)} knowledge probes (trained items asked in new words; their answers' loss is the "
            f"validation loss)" if objective == "knowledge" else f"{len(val)} validation items")
    progress(f"Prepared {len(train)} training items and {held} from {cfg.data} ({load_report.format} format). "
             f"Tokens per item: min {s['min']}, median {s['median']}, p90 {s['p90']}, max {s['max']}, "
             f"total {s['total']}.")
    if load_report.duplicates or overlong:
        progress(f"Dropped {len(load_report.duplicates)} duplicate and {len(overlong)} over-long item(s); "
                 f"see {run.prepared / 'report.json'}.")
    return Prepared(train, val, report, probes)


def _split(cfg: Config, items: list[Item], objective: str, tokenizer):
    """(train, validation, probes, token lengths of the data's items, over-long lines dropped). Knowledge
    trains every item (a withheld fact is never taught) and validates on probe rewordings of trained items;
    skill holds validation_split of the items out."""
    train, val = (list(items), []) if objective == "knowledge" else split_items(items, cfg.validation_split, cfg.seed)
    _, train, lengths, overlong = tokenize_items(tokenizer, train, cfg.max_seq_length, cfg.skip_overlong,
                                                 cfg.system_prompt)
    probes = build_probes(train, cfg) if objective == "knowledge" else []
    if probes:
        val = [item for _, item in probes]
    _, val, val_lengths, val_overlong = tokenize_items(tokenizer, val, cfg.max_seq_length, cfg.skip_overlong,
                                                       cfg.system_prompt) if val else ([], [], [], [])
    kept = {id(i) for i in val}
    probes = [q for q, item in probes if id(item) in kept]
    if objective == "skill":  # the held-out items are the data's too
        lengths, overlong = lengths + val_lengths, overlong + val_overlong
    if not train:
        raise DataError(f"{cfg.data}: no training items left after dropping {len(overlong)} over-long item(s); "
                        f"raise max_seq_length (now {cfg.max_seq_length}).")
    return train, val, probes, lengths, sorted(overlong)


def load_prepared(cfg: Config) -> Prepared:
    """The prepared split written by `prepare` (the data notebook or CLI)."""
    run = Run(cfg.output_dir)
    report_path = run.prepared / "report.json"
    if not report_path.exists():
        raise StepMissing(f"{run.prepared}: nothing prepared yet. Run notebook 01_prepare_data, or "
                          f"`python -m unslothify prepare`, first.")
    from .items import read_jsonl

    def items(name):
        path = run.prepared / name
        return items_from_records([r for _, r in read_jsonl(path)], str(path)) if path.stat().st_size else []

    return Prepared(items("train.jsonl"), items("validation.jsonl"), read_json(report_path),
                    read_probes(run.prepared / "probes.jsonl"))


# The knobs prepare's split and its dropping of over-long or repeated items depend on.
PREPARE_KNOBS = ("validation_split", "seed", "max_seq_length", "skip_overlong", "skip_duplicates", "system_prompt",
                 "columns", "chat_template", "objective", "probes")


def is_current(cfg: Config) -> bool:
    """Whether prepared/ was made from the current data with the current split and length settings."""
    path = Run(cfg.output_dir).prepared / "report.json"
    if not path.exists():
        return False
    r = read_json(path)
    if not all(r.get(k) == getattr(cfg, k) for k in PREPARE_KNOBS):
        return False
    try:
        return r.get("data_sha256") == fingerprint(cfg.data)
    except DataError:  # the data is gone or unreadable: prepare again, which says why
        return False
