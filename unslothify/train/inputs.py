"""What a training call trains on: the prepared split and its augmented records, tokenised into TRL-ready
datasets, made again only when the config behind them changed (and then it says what changed).

    inputs = TrainingInputs(tokenizer, progress)
    data = inputs.for_config(cfg)        # TrainingData: train, validation, prepared, items, replay_rows, probes
    data = inputs.for_config(cfg, facts=[3, 17, 40])   # the items of those source lines (a time plan of facts)
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
    probes: list  # the knowledge probes (score/questions.Question) of the facts trained
    trained_lines: list[int] | None = None  # the source lines of the facts trained, where not all of them
    row_facts: list = ()  # (source line, kind, tokens, answer tokens) of every training row, in order

    @property
    def mean_item_tokens(self) -> float:
        lengths = [len(r) for r in self.train["input_ids"]]
        return sum(lengths) / max(1, len(lengths))

    @property
    def probed(self) -> bool:
        """Evaluations score the knowledge probes (objective knowledge)."""
        return self.prepared.objective == "knowledge" and bool(self.probes)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class TrainingInputs:
    """The tokenised data of the last config asked for, kept while it still matches."""

    KEEP = 2  # the data of all the facts and of the slice a time plan trains, kept side by side

    def __init__(self, tokenizer, progress=print):
        self.tokenizer = tokenizer
        self.progress = progress
        self.made_from: dict | None = None  # what the last tokenised data was made from
        self.kept: dict[str, tuple] = {}  # made_from (as JSON) -> (train, validation, replay rows, row facts)

    def for_config(self, cfg, facts: list[int] | None = None) -> TrainingData:
        """prepared/ made again when it does not match the config, the augmented records read back (written again
        when stale), and both tokenised; tokenised again only when any of that changed. With `facts` (source
        lines), only the items of those facts and the replay rows, with probes of those facts alone."""
        from accelerate import PartialState

        from ..data.augment import training_items
        from ..data.prepare import is_current, load_prepared, prepare
        from ..data.probes import with_reverse_probes
        from ..runs import Run

        with PartialState().main_process_first():  # under `accelerate launch`, one process prepares
            if is_current(cfg):
                prepared = load_prepared(cfg)
            else:
                self.progress(f"The prepared data in {Run(cfg.output_dir).prepared} does not match the config; "
                              f"preparing {cfg.data} again.")
                prepared = prepare(cfg, self.tokenizer, self.progress, plot=False)
        items = training_items(cfg, prepared, self.progress)
        probes, validation = prepared.probes, prepared.validation
        if facts is not None:
            items, probes, validation = _of_facts(cfg, prepared, items, set(facts))
        if prepared.objective == "knowledge":  # a fifth asked from the name's end, from the trained reverse rows
            probes, validation = with_reverse_probes(probes, validation, items, prepared.train, cfg.seed,
                                                     set(facts) if facts is not None else None)
        made_from = {"training items": _digest([i.to_record() for i in items]),
                     "validation items": _digest([i.to_record() for i in validation]),
                     **{k: getattr(cfg, k) for k in ("max_seq_length", "skip_overlong", "system_prompt")}}
        key = json.dumps(made_from, sort_keys=True)
        if key not in self.kept:
            self.kept[key] = self._tokenise(cfg, prepared, items, validation, made_from)
            while len(self.kept) > self.KEEP:
                self.kept.pop(next(iter(self.kept)))
        self.made_from = made_from
        train, validation_rows, replay_rows, row_facts = self.kept[key]
        return TrainingData(train, validation_rows, prepared, items, replay_rows, probes,
                            sorted(facts) if facts is not None else None, row_facts)

    def _tokenise(self, cfg, prepared, items, validation, made_from: dict) -> tuple:
        from ..data.augment import describe_items
        from ..data.tokens import to_dataset, tokenize_items

        changed = [k for k in made_from if self.made_from is not None and self.made_from[k] != made_from[k]]
        steer = (f"objective knowledge: every item is trained, {len(validation)} probes steer"
                 if prepared.objective == "knowledge" else
                 f"objective skill: {len(validation)} held-out items steer")
        self.progress(("Tokenising again (changed: " + ", ".join(changed) + "). " if changed else "")
                      + f"Training on {describe_items(items)}; {steer}.")
        rows = {name: tokenize_items(self.tokenizer, part, cfg.max_seq_length, cfg.skip_overlong,
                                     cfg.system_prompt)[0] if part else []
                for name, part in (("train", items), ("validation", validation))}
        return (to_dataset(rows["train"]), to_dataset(rows["validation"]) if rows["validation"] else None,
                [r for r in rows["train"] if r["kind"] == "replay"],
                [(r["source_line"], r["kind"], len(r["input_ids"]), sum(r["completion_mask"])) for r in rows["train"]])


def replay_share(replay: int, fact_rows: int, all_fact_rows: int) -> int:
    """Replay rows a slice of the facts keeps: the whole data's share of replay rows to fact rows, or a fifth of
    the slice's fact rows where that is more (REPLAY_FLOOR), up to every replay row there is. A slice forgets as
    fast a step as the whole data does, and the replay rows are what the retention term works on: at the whole
    share a slice of domain.jsonl kept about 10 of 80 and retained 0.85 of the general questions (2 CPU cores,
    60 facts) and 0.80 (the CPU recipe on an H100, 150 facts); with all 80, 0.92 and 0.87, at the same recall
    (docs/augmentation.md, "A CPU's slice of the facts")."""
    return min(replay, max(round(replay * fact_rows / max(1, all_fact_rows)), round(REPLAY_FLOOR * fact_rows)))


REPLAY_FLOOR = 0.2


def _of_facts(cfg, prepared, items: list, facts: set[int]) -> tuple[list, list, list]:
    """(training items, probes, probe items) of the facts on those source lines, with their share of the
    replay rows (replay_share)."""
    from ..data.probes import build_probes

    replay = [i for i in items if i.kind == "replay"]
    facts_all = [i for i in items if i.kind != "replay"]
    kept = [i for i in facts_all if (i.source_line or i.line) in facts]
    probes = build_probes(prepared.train, cfg, among=facts)
    return kept + replay[:replay_share(len(replay), len(kept), len(facts_all))], [q for q, _ in probes], \
        [item for _, item in probes]
