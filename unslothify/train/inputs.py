"""What a training call trains on: the prepared split and its augmented records, tokenised into TRL-ready
datasets, made again only when the config behind them changed (and then it says what changed).

    inputs = TrainingInputs(tokenizer, progress)
    data = inputs.for_config(cfg)        # TrainingData: train, validation, prepared, items, replay_rows
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass
class TrainingData:
    """What one training call trains on: TRL-ready datasets and where they came from."""

    train: object  # datasets.Dataset of input_ids + completion_mask
    validation: object | None  # probe rewordings (knowledge) or held-out items (skill); None: no validation
    prepared: object  # data.prepare.Prepared: the split, its report, the probes
    items: list  # the training Items: the prepared split plus the augmented records
    replay_rows: list  # the tokenised replay rows (input_ids, completion_mask): what the retention term keeps

    @property
    def mean_item_tokens(self) -> float:
        lengths = [len(r) for r in self.train["input_ids"]]
        return sum(lengths) / max(1, len(lengths))

    @property
    def probed(self) -> bool:
        """Evaluations score the knowledge probes (objective knowledge)."""
        return self.prepared.objective == "knowledge" and bool(self.prepared.probes)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class TrainingInputs:
    """The tokenised data of the last config asked for, kept while it still matches."""

    def __init__(self, tokenizer, progress=print):
        self.tokenizer = tokenizer
        self.progress = progress
        self.made_from: dict | None = None  # what the tokenised data was made from
        self.datasets: tuple | None = None  # (train, validation, replay rows)

    def for_config(self, cfg) -> TrainingData:
        """prepared/ made again when it does not match the config, the augmented records read back (written again
        when stale), and both tokenised; tokenised again only when any of that changed."""
        from accelerate import PartialState

        from ..data.augment import training_items
        from ..data.prepare import is_current, load_prepared, prepare
        from ..runs import Run

        with PartialState().main_process_first():  # under `accelerate launch`, one process prepares
            if is_current(cfg):
                prepared = load_prepared(cfg)
            else:
                self.progress(f"The prepared data in {Run(cfg.output_dir).prepared} does not match the config; "
                              f"preparing {cfg.data} again.")
                prepared = prepare(cfg, self.tokenizer, self.progress, plot=False)
        items = training_items(cfg, prepared, self.progress)
        made_from = {"training items": _digest([i.to_record() for i in items]),
                     "validation items": _digest([i.to_record() for i in prepared.validation]),
                     **{k: getattr(cfg, k) for k in ("max_seq_length", "skip_overlong", "system_prompt")}}
        if made_from != self.made_from:
            self._tokenise(cfg, prepared, items, made_from)
        train, validation, replay_rows = self.datasets
        return TrainingData(train, validation, prepared, items, replay_rows)

    def _tokenise(self, cfg, prepared, items, made_from: dict):
        from ..data.augment import describe_items
        from ..data.tokens import to_dataset, tokenize_items

        changed = [k for k in made_from if self.made_from is not None and self.made_from[k] != made_from[k]]
        steer = (f"objective knowledge: every item is trained, {len(prepared.probes)} probes steer"
                 if prepared.objective == "knowledge" else
                 f"objective skill: {len(prepared.validation)} held-out items steer")
        self.progress(("Tokenising again (changed: " + ", ".join(changed) + "). " if changed else "")
                      + f"Training on {describe_items(items)}; {steer}.")
        rows = {name: tokenize_items(self.tokenizer, part, cfg.max_seq_length, cfg.skip_overlong,
                                     cfg.system_prompt)[0] if part else []
                for name, part in (("train", items), ("validation", prepared.validation))}
        self.made_from = made_from
        self.datasets = (to_dataset(rows["train"]), to_dataset(rows["validation"]) if rows["validation"] else None,
                         [r for r in rows["train"] if r["kind"] == "replay"])
