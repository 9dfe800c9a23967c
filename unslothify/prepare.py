"""The prepare stage: validate the user's file, split it, measure token lengths, write prepared/.

Nothing is written unless the whole file is valid; prepared/ is replaced atomically.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .data import DataError, Item, items_from_records, length_stats, split_items, tokenize_items
from .fsutil import atomic_dir, atomic_write_json, read_json, write_jsonl
from .runs import Run
from .sources import display_name, fingerprint, load_items


@dataclass
class Prepared:
    train: list[Item]
    validation: list[Item]
    report: dict


def prepare(cfg: Config, tokenizer=None, progress=print, plot: bool = True) -> Prepared:
    from .models import load_tokenizer

    items, load_report = load_items(cfg.data, skip_duplicates=cfg.skip_duplicates, columns=cfg.columns)
    train, val = split_items(items, cfg.validation_split, cfg.seed)
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg, progress)
    _, train, train_lengths, train_overlong = tokenize_items(tokenizer, train, cfg.max_seq_length,
                                                             cfg.skip_overlong, cfg.system_prompt)
    _, val, val_lengths, val_overlong = tokenize_items(tokenizer, val, cfg.max_seq_length, cfg.skip_overlong,
                                                       cfg.system_prompt) if val else ([], [], [], [])
    lengths = train_lengths + val_lengths
    overlong = sorted(train_overlong + val_overlong)
    if not train:
        raise DataError(f"{cfg.data}: no training items left after dropping {len(overlong)} over-long item(s); "
                        f"raise max_seq_length (now {cfg.max_seq_length}).")
    report = {
        "data": str(cfg.data),
        "data_sha256": fingerprint(cfg.data),
        "format": load_report.format,
        "lines_read": load_report.n_read,
        "items": len(items),
        "columns": cfg.columns,
        "chat_template": cfg.chat_template,
        "duplicates_dropped": load_report.duplicates,
        "overlong_dropped": overlong,
        "train_items": len(train),
        "validation_items": len(val),
        "validation_split": cfg.validation_split,
        "seed": cfg.seed,
        "max_seq_length": cfg.max_seq_length,
        "skip_overlong": cfg.skip_overlong,
        "skip_duplicates": cfg.skip_duplicates,
        "system_prompt": cfg.system_prompt,
        "tokenizer": getattr(tokenizer, "name_or_path", ""),
        "token_lengths": length_stats(lengths),
    }
    run = Run(cfg.output_dir)
    with atomic_dir(run.prepared, overwrite=True) as tmp:
        write_jsonl(tmp / "train.jsonl", [i.to_record() for i in train])
        write_jsonl(tmp / "validation.jsonl", [i.to_record() for i in val])
        atomic_write_json(tmp / "report.json", report)
        if plot:
            from .plots import length_histogram

            length_histogram(lengths, cfg.max_seq_length, tmp / "lengths.png",
                             title=f"Token lengths: {display_name(cfg.data)} ({len(lengths)} items)")
    s = report["token_lengths"]
    progress(f"Prepared {len(train)} training and {len(val)} validation items from {cfg.data} "
             f"({load_report.format} format). Tokens per item: min {s['min']}, median {s['median']}, "
             f"p90 {s['p90']}, max {s['max']}, total {s['total']}.")
    if load_report.duplicates or overlong:
        progress(f"Dropped {len(load_report.duplicates)} duplicate and {len(overlong)} over-long item(s); "
                 f"see {run.prepared / 'report.json'}.")
    return Prepared(train, val, report)


def load_prepared(cfg: Config) -> Prepared:
    """The prepared split written by `prepare` (the data notebook or CLI)."""
    run = Run(cfg.output_dir)
    report_path = run.prepared / "report.json"
    if not report_path.exists():
        raise FileNotFoundError(f"{run.prepared}: nothing prepared yet. Run the data notebook or "
                                f"`python -m unslothify prepare` first.")
    from .data import read_jsonl

    def items(name):
        path = run.prepared / name
        return items_from_records([r for _, r in read_jsonl(path)], str(path)) if path.stat().st_size else []

    return Prepared(items("train.jsonl"), items("validation.jsonl"), read_json(report_path))


# The knobs prepare's split and its dropping of over-long or repeated items depend on.
PREPARE_KNOBS = ("validation_split", "seed", "max_seq_length", "skip_overlong", "skip_duplicates", "system_prompt",
                 "columns", "chat_template")


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
