"""How long a run will take on this machine, measured rather than guessed, and what fits its time cap.

With the model loaded, a few of the call's own training steps (at learning rate 0) and one short batch of
greedy generation are timed (seconds on a 2-core CPU); the stages are then sized from the item counts and
token lengths. `run` prints this before its long stages, and Trainer's progress bar keeps an ETA while
training. Where max_train_minutes cannot fit the epochs asked, time_plan says what a call trains instead:
fewer epochs, or (cap_shortens: facts) the facts that fit all of them.

    epochs, stages = fit_time(ft, cfg, export=True)    # what `run` calls: says it, with the plan of the cap
    epochs, facts = time_plan(ft, cfg, epochs)         # what a training call trains within the cap
"""

from __future__ import annotations

import heapq
import math
import random
import re
import time
from pathlib import Path

from ..machine.device import has_cuda, machine
from ..score.probes import PROBE_MAX_NEW_TOKENS, RETENTION_PROBES



def padded_tokens(lengths: list[int], batch: int, grouped: bool, seed: int = 0) -> int:
    """Tokens the steps of one epoch process, padding included: each batch is padded to its longest row.
    Grouped by length (Trainer's group_by_length), rows are sorted within mega-batches of 50 batches."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    if grouped:
        mega = 50 * batch
        order = [x for i in range(0, len(order), mega) for x in sorted(order[i:i + mega], reverse=True)]
    return sum(batch * max(order[i:i + batch]) for i in range(0, len(order), batch))


WARMUP_STEPS = 2


def timed_steps() -> int:
    """Steps timed after the warm-up: on a GPU a step is cheap and Unsloth's compiled blocks recompile for new
    shapes in the first steps, so a dozen steps leave a steady majority; on a CPU each step costs a second or
    more, and six span the rows' lengths."""
    return 12 if has_cuda() else 6


# Timing stops early once the fastest MIN_TIMED_STEPS past the warm-up took ENOUGH_TIMED_SECONDS: a 7B model's packed
# steps take seconds each on a T4, where a dozen would add minutes to the estimate and teach it nothing more.
MIN_TIMED_STEPS, ENOUGH_TIMED_SECONDS = 4, 20.0


def timed_enough(seconds: list[float]) -> bool:
    """Whether the steps so far (warm-up included) time the machine well enough to stop: the fastest
    MIN_TIMED_STEPS past the warm-up took ENOUGH_TIMED_SECONDS (a recompile's seconds alone do not count)."""
    timed = seconds[WARMUP_STEPS:]
    return len(timed) >= MIN_TIMED_STEPS and sum(sorted(timed)[:MIN_TIMED_STEPS]) >= ENOUGH_TIMED_SECONDS


def measure(cfg, model, tokenizer, train_dataset, retention=None) -> dict:
    """What this machine takes per training step and per padded token, and per greedy decoding step. The
    training figures come from the call's own trainer (TRL's collator, forward, backward, optimizer, logging,
    its retention term, train/retention.py) run for a few steps at learning rate 0, so the weights do not move.
    Timing the model's forward and backward alone read 1.6x fast on a slow 2-core machine (it left out the
    optimizer, the collator and the per-step logging), and timing plain SFTTrainer steps without the term
    read 1.6-1.9x fast on an H100. See _train_step_seconds for how the steps are chosen and read."""
    return {**_train_step_seconds(cfg, model, tokenizer, train_dataset, retention),
            **_decode_step_seconds(model, tokenizer, train_dataset["input_ids"][0][:32])}


def spanning_rows(lengths: list[int], batch: int, steps: int) -> list[int]:
    """Indices of batch x steps rows at evenly spaced ranks of length: grouped by length (the trainer sorts a
    set this small longest first), their batches run from the longest rows to the shortest, so the timed steps
    span the call's step sizes instead of repeating its longest batches (the first ones a grouped call takes)."""
    want = batch * steps
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    if len(order) <= want:
        return order
    return [order[round(i * (len(order) - 1) / (want - 1))] for i in range(want)]


def fit_step_cost(seconds: list[float], tokens: list[int]) -> tuple[float, float]:
    """(seconds per step, seconds per padded token) of the line seconds = a + b x tokens through the timed
    steps. A step costs both: on a CPU nearly all of it grows with the tokens; a small model on a GPU is bound
    by the host issuing kernels, so its steps cost about the same whatever their length (an H100, 2026-12-06:
    0.23 s a step on the invented set and on domain.jsonl, whose rows are 1.4x longer; a per-token figure
    alone, timed on a grouped call's longest batches, read domain.jsonl's training 23-42 % short there). The
    line is kept within a >= 0 and b >= 0."""
    n = len(seconds)
    mean_t, mean_s = sum(tokens) / n, sum(seconds) / n
    spread = sum((t - mean_t) ** 2 for t in tokens)
    b = sum((t - mean_t) * (s - mean_s) for t, s in zip(tokens, seconds)) / spread if spread else 0.0
    if spread == 0 or b <= 0:
        return mean_s, 0.0
    a = mean_s - b * mean_t
    if a < 0:
        return 0.0, sum(seconds) / sum(tokens)
    return a, b


def _train_step_seconds(cfg, model, tokenizer, train_dataset, retention=None) -> dict:
    """The call's trainer, run for WARMUP_STEPS + timed_steps() steps (read_timed_steps reads them). Unpacked,
    its rows are spanning_rows; a packed step is max_seq_length tokens whatever its rows, so those are the
    call's own."""
    import tempfile

    from transformers import PrinterCallback, TrainerCallback

    from .trainer import trainer_class

    from ..model.load import for_training
    from .args import Call, packed, sft_args

    import datasets

    datasets.disable_progress_bars()  # TRL's dataset preparation, which the training call says itself
    sync = __import__("torch").cuda.synchronize if has_cuda() else (lambda: None)

    class Timer(TrainerCallback):
        def __init__(self):
            self.seconds, self.started = [], None

        def on_step_begin(self, args, state, control, **kw):
            sync()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            self.seconds.append(time.perf_counter() - self.started)
            if timed_enough(self.seconds):
                control.should_training_stop = True

    tokens = []

    def counting(collate):
        def collate_and_count(examples):
            batch = collate(examples)
            tokens.append(batch["input_ids"].numel())
            return batch
        return collate_and_count

    steps = WARMUP_STEPS + timed_steps()
    rows = train_dataset
    if not packed(cfg):
        rows = train_dataset.select(spanning_rows([len(r) for r in train_dataset["input_ids"]],
                                                  cfg.per_device_train_batch_size, steps))
    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        args = sft_args(cfg, Call.of(cfg, 1.0, has_eval=False, output_dir=out))
        args.learning_rate, args.warmup_steps, args.max_steps = 0.0, 0, steps
        args.report_to, args.disable_tqdm = [], True
        for_training(model)
        trainer = trainer_class()(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                                  callbacks=[timer])
        trainer.retention = retention
        trainer.remove_callback(PrinterCallback)  # logs each step as a real call does, but prints none of it
        trainer.data_collator = counting(trainer.data_collator)
        trainer.train()
    return read_timed_steps(timer.seconds, tokens[:len(timer.seconds)])


def read_timed_steps(seconds: list[float], tokens: list[int]) -> dict:
    """The plan's step costs from each step's seconds and padded tokens. The warm-up steps pay one-off costs
    (kernels chosen, memory mapped; on 2 CPU cores 1.8x and 2.7x a steady step; on a GPU the compiled blocks,
    17-26 s for the embedded model on an H100), and a timed step over twice the median is a recompile at a new
    shape: neither is fitted. What they took beyond the fitted line is kept as the one-off seconds, which a
    training call pays again (on the H100 its first step and the first steps after some evaluations took 5-15 s
    more than a steady step)."""
    timed = list(zip(seconds, tokens))[WARMUP_STEPS:]
    median = sorted(s for s, _ in timed)[len(timed) // 2]
    steady = [(s, t) for s, t in timed if s <= 2 * median]
    per_step, per_token = fit_step_cost([s for s, _ in steady], [t for _, t in steady])
    one_off = sum(seconds) - sum(per_step + per_token * t for t in tokens)
    return {"train_seconds_per_step": per_step, "train_seconds_per_token": per_token,
            "train_one_off_seconds": max(0.0, one_off),
            "timed_step_seconds": [round(s, 4) for s in seconds], "timed_step_tokens": tokens}


def _decode_step_seconds(model, tokenizer, prompt_ids: list[int]) -> dict:
    import torch

    from ..model.generate import generation_batch, inference_mode
    from ..model.load import for_inference, for_training

    device = next(model.parameters()).device
    prompt = torch.tensor([list(prompt_ids)] * generation_batch(), device=device)  # a real row's opening
    new = 8
    for_inference(model)
    with inference_mode(model):
        model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
        started = time.perf_counter()
        model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                       min_new_tokens=new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        decode_step = (time.perf_counter() - started) / new
    for_training(model)
    return {"decode_step_seconds": decode_step}


def plan(cfg, timing: dict, train_lengths: list[int], eval_questions: int, general_questions: int, export: bool,
         probes: tuple[int, int] = (0, 0), packed: bool | None = None, epochs: float | None = None,
         base_asked: tuple[int, int] | None = None, answer_tokens: int | None = None,
         general_answer_tokens: int | None = None) -> dict:
    """Seconds per stage: training, the probes at its evaluations (probes: the knowledge and the retention
    probes asked at each one), the merged export, scoring (the tuned model's answers to both files, and the base
    model's to the base_asked (eval, general) questions it has no kept answers for; default all). packed: whether steps are packed
    rows (default: as training will run here, train/args.packed)."""
    from ..model.generate import generation_batch
    from .args import packed as packs

    packed = packs(cfg) if packed is None else packed
    epochs = cfg.num_train_epochs if epochs is None else epochs
    batch = cfg.per_device_train_batch_size
    tokens = (sum(train_lengths) if packed else padded_tokens(train_lengths, batch, grouped=True))
    steps = math.ceil(epochs * (math.ceil(sum(train_lengths) / (batch * cfg.max_seq_length)) if packed
                                             else math.ceil(len(train_lengths) / batch)))
    # a batch of greedy answers runs until its longest answer ends: the tuned model answers about as long as the
    # answers it trained on, so a batch lasts about their 90th percentile (capped by max_new_tokens); on 2 CPU
    # cores the cap alone, halved, read 1.7-3.4x long
    per_generation = timing["decode_step_seconds"] * min(cfg.max_new_tokens, answer_tokens or cfg.max_new_tokens)
    # general questions draw answers as long as the base model's own to the replay prompts (on the outside set,
    # whose facts are short, sizing them by the facts' answers read scoring 2.2x short)
    per_general = timing["decode_step_seconds"] * min(cfg.max_new_tokens, general_answer_tokens or cfg.max_new_tokens)
    batches = lambda n: math.ceil(n / generation_batch())  # noqa: E731
    base_eval, base_general = (eval_questions, general_questions) if base_asked is None else base_asked
    evaluations = math.ceil(epochs * cfg.evals_per_epoch)  # and one before training, below
    # One generate call per evaluation for the knowledge and retention probes together, each about as long as a
    # decoding batch of 16 per 40 rows (2 CPU cores: 3 calls of up to 40 probes took 9.5 s, against 8.0 s so
    # sized); the one before training asks the knowledge probes alone (none once their base answers are cached).
    knowledge, retention = probes
    calls = lambda n: max(1.0, n / 40) if n else 0  # noqa: E731
    probe_generation = timing["decode_step_seconds"] * min(cfg.max_new_tokens, PROBE_MAX_NEW_TOKENS)
    return {
        "steps": steps,
        "training": (steps * timing.get("train_seconds_per_step", 0.0) + epochs * tokens * timing["train_seconds_per_token"]
                     + timing.get("train_one_off_seconds", 0.0)),
        "probes": (calls(knowledge) + evaluations * calls(knowledge + retention)) * probe_generation,
        "export": 30.0 if export else 0.0,  # two model loads in fresh processes; measured 15-40 s on 2 cores
        # the tuned model answers both files; the base model the questions it has no kept answers for
        "scoring": ((batches(eval_questions) + batches(base_eval)) * per_generation
                    + (batches(general_questions) + batches(base_general)) * per_general),
    }


def describe_plan(cfg, stages: dict, items: int, model_name: str, elapsed: float = 0.0,
                  epochs: float | None = None) -> str:
    total = elapsed + sum(v for k, v in stages.items() if k != "steps")
    parts = ", ".join(f"{k} {v / 60:.1f} min" for k, v in stages.items() if k != "steps" and v)
    done = f"{elapsed / 60:.1f} min so far, then " if elapsed else ""
    return (f"Expected time: about {total / 60:.0f} min all told on {machine()} ({done}{parts}): {model_name}, "
            f"{items} training "
            f"items, {stages['steps']} steps of {cfg.per_device_train_batch_size} "
            f"{'packed rows' if cfg.packing and has_cuda() else 'items'} over "
            f"{cfg.num_train_epochs if epochs is None else epochs:g} epochs. "
            f"Measured just now on this machine; the progress bar below keeps the estimate current.")


def stage_counts(cfg, data, export: bool, session=None) -> dict:
    """The counts plan() sizes the stages by, for a training call on `data` (train/inputs.TrainingData); with the
    session, the base model's answers it has kept are not counted as asked."""
    from ..data.tokens import length_stats
    from ..model.base_answers import missing_base_answers
    from ..score.questions import load_questions

    eval_qs, general_qs = ([q.question for q in load_questions(path)] if path and Path(path).exists() else []
                           for path in (cfg.eval_questions, cfg.general_questions))
    asked = (tuple(missing_base_answers(qs, cfg, session.tokenizer, session.model_path) for qs in (eval_qs, general_qs))
             if session is not None else None)
    p90 = lambda xs: length_stats(xs).get("p90")  # noqa: E731  (None without rows of that kind)
    return {"train_lengths": [len(r) for r in data.train["input_ids"]],
            "eval_questions": len(eval_qs), "general_questions": len(general_qs), "export": export,
            "answer_tokens": p90([a for _, kind, _, a in data.row_facts if kind != "replay"]),
            "general_answer_tokens": p90([a for _, kind, _, a in data.row_facts if kind == "replay"]),
            "probes": (len(data.probes), RETENTION_PROBES) if data.prepared.objective == "knowledge" else (0, 0),
            "base_asked": asked}


# What a plan fills of max_train_minutes. Three fresh-clone `make run`s on 2 shared cores (2026-12-06) trained
# 13 % slower, 31 % faster and 15 % slower than timed (the load of other work on the machine changes under a
# run): at 90 % of the cap the slower two were stopped short of their last passes (4.29 and 3.86 of 4.5 epochs).
PLAN_SHARE_OF_CAP = 0.8


def epochs_that_fit(cfg, epochs: float, timing: dict, counts: dict) -> float | None:
    """The share of `epochs` that fits max_train_minutes on this machine (planned at PLAN_SHARE_OF_CAP, which
    counts the evaluations inside the call too), or None when they all fit or there is no cap."""
    budget = PLAN_SHARE_OF_CAP * 60 * cfg.max_train_minutes
    stages = plan(cfg, timing, **counts, epochs=epochs)
    in_call = stages["training"] + stages["probes"]
    if not budget or in_call <= budget:
        return None
    return max(0.1, int(10 * epochs * budget / in_call) / 10)


def fit_time(ft, cfg, export: bool, progress=print, elapsed: float = 0.0) -> tuple[float, dict]:
    """Say what the rest of the run will take, timed on this machine (a few training steps and a generation step
    over the rows as they will be trained): the stages left, after `elapsed` seconds already spent (loading,
    preparing, augmenting), with what the time cap leaves to train. Returns the epochs and the seconds expected
    of each stage; the data is tokenised here once, and the training call reuses it."""
    epochs, facts = time_plan(ft, cfg, cfg.num_train_epochs)
    counts = stage_counts(cfg, ft.training_data(cfg, facts), export, ft)
    stages = plan(cfg, ft.timing(cfg), **counts, epochs=epochs)
    progress(describe_plan(cfg, stages, len(counts["train_lengths"]), ft.model_path, elapsed, epochs))
    return epochs, stages


def time_plan(session, cfg, epochs: float, say: bool = True) -> tuple[float, list[int] | None]:
    """(epochs, facts) a training call of `session` (train/session.FineTune) trains within max_train_minutes on
    this machine: all of it (facts None); every item for fewer epochs (cap_shortens: epochs); or, under the
    knowledge objective, the facts that fit all the epochs asked (cap_shortens: facts: their source lines),
    said up front. The progress bar then counts the steps the call will take; the cap still stops a call that
    runs long."""
    if not cfg.max_train_minutes:
        return epochs, None
    data, timing = session.training_data(cfg), session.timing(cfg)
    fit = epochs_that_fit(cfg, epochs, timing, stage_counts(cfg, data, False))
    if fit is None:
        return epochs, None
    if cfg.cap_shortens == "facts" and data.prepared.objective == "knowledge":
        facts, note = facts_that_fit(cfg, epochs, timing, data)
        plan_of_call = (epochs, facts)
    else:
        note = (f"Training {fit:g} of the {epochs:g} epochs asked: that many fit the max_train_minutes = "
                f"{cfg.max_train_minutes:g} cap on this machine (the panel's max train minutes, or "
                f"--max-train-minutes; 0 for no cap).")
        plan_of_call = (fit, None)
    if say and note not in session.said:
        session.said.add(note)
        session.progress(note)
    return plan_of_call


def facts_that_fit(cfg, epochs: float, timing: dict, data) -> tuple[list[int], str]:
    """(source lines, what to say): the most facts, in fact_order, whose training rows (with their
    rewordings, and every replay row) fit `epochs` within max_train_minutes, planned as epochs_that_fit does."""
    budget = PLAN_SHARE_OF_CAP * 60 * cfg.max_train_minutes
    order = fact_order(data.prepared.train, cfg.seed)

    from .inputs import replay_share

    replay = [t for _, kind, t, _ in data.row_facts if kind == "replay"]
    fact_rows = [(line, t) for line, kind, t, _ in data.row_facts if kind != "replay"]

    def seconds(n: int) -> float:
        chosen = set(order[:n])
        lengths = [t for line, t in fact_rows if line in chosen]
        lengths += replay[:replay_share(len(replay), len(lengths), len(fact_rows))]
        stages = plan(cfg, timing, lengths or [1], 0, 0, False, (min(cfg.probes, n), RETENTION_PROBES), epochs=epochs)
        return stages["training"] + stages["probes"]

    lo, hi = 1, len(order)
    while lo < hi:  # the largest n that fits (at least one): seconds(n) grows with n
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if seconds(mid) <= budget else (lo, mid - 1)
    rest = seconds(len(order))
    note = (f"This machine learns about {lo} of the {len(order)} facts in {cfg.max_train_minutes:g} minutes "
            f"({epochs:g} passes each, with their rewordings): training those, topic by topic (the items that name "
            f"the same things together), and scoring the held-out questions about them. The other {len(order) - lo} "
            f"need a GPU, or max_train_minutes 0 (all {len(order)} would take about {_duration(rest)} of training "
            f"here).")
    return sorted(order[:lo]), note


def fact_order(items, seed: int) -> list[int]:
    """The facts' source lines in the order a time plan takes them, topic by topic: a seeded shuffle says where
    each topic starts, and from there the next item is the one sharing the most rare words (names, numbers,
    terms: weighted by how rare) with the topic so far, until none shares one. A slower machine trains a prefix
    of what a faster one does (scripts/measure_run.py --facts draws its slices by it too).

    Why by topic: a fact is often stated by several items (two wordings of one question; three answers that each
    name the king's exile), and a held-out question about it was answered on 2 CPU cores when every item stating
    it was trained (33 of 35, the outside set's slices of 47 and 58 of its 80 items) and half the time when only
    some were (19 of 38; scripts/slice_coverage.py). A shuffle of single items trained one wording of most facts."""
    from ..data.augment.checks import answer_text, user_text

    lines = [i.source_line or i.line for i in items]
    starts = list(lines)
    random.Random(f"{seed}:facts").shuffle(starts)
    rank = {line: k for k, line in enumerate(starts)}
    words = {line: key_words(user_text(i)) | key_words(answer_text(i)) for line, i in zip(lines, items)}
    df: dict[str, int] = {}
    for ws in words.values():
        for w in ws:
            df[w] = df.get(w, 0) + 1
    # rare: in two items or more, and in at most 5 % of them (2 at least, RARE_MAX_ITEMS at most); a word in
    # more ties a topic to everything
    cut = min(max(2, TOPIC_RARE_SHARE * len(lines)), RARE_MAX_ITEMS)
    rare = {line: {w for w in ws if 1 < df[w] <= cut} for line, ws in words.items()}
    holding: dict[str, list[int]] = {}
    for line in lines:
        for w in rare[line]:
            holding.setdefault(w, []).append(line)
    order, done = [], set()
    for start in starts:
        if start in done:
            continue
        seen, score, heap = set(), {}, []  # one topic: its words so far, each item's weight, a max-heap of them
        nxt = start
        while nxt is not None:
            order.append(nxt)
            done.add(nxt)
            for w in rare[nxt] - seen:
                seen.add(w)
                for other in holding[w]:
                    if other not in done:
                        score[other] = score.get(other, 0.0) + math.log(len(lines) / df[w])
                        heapq.heappush(heap, (-score[other], rank[other], other))
            nxt = None
            while heap:  # entries go stale as an item's weight grows or it is taken: skip those
                neg, _, other = heapq.heappop(heap)
                if other not in done and -neg == score[other]:
                    nxt = other
                    break
    return order


TOPIC_RARE_SHARE, RARE_MAX_ITEMS = 0.05, 50


def key_words(text: str | None) -> set[str]:
    """The words of a text that can tie it to another about the same thing: numbers, and words of four letters
    or more that are not function words, lowercased."""
    from ..data.augment.checks import FUNCTION_WORDS

    return {w.lower() for w in KEY_WORD.findall(text or "")
            if w.isdigit() or (len(w) > 3 and w.lower() not in FUNCTION_WORDS)}


KEY_WORD = re.compile(r"\w[\w'’-]*", re.UNICODE)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 5400 else f"{seconds / 60:.0f} minutes"
