"""How long a run will take on this machine, measured rather than guessed.

With the model loaded, one forward and backward pass over real training rows and one short batch of
greedy generation are timed (a few seconds on a 2-core CPU); the stages are then sized from the item
counts and token lengths. `run` prints this before its long stages, and Trainer's progress bar keeps an
ETA while training.

    cfg = fit_time(ft, cfg, export=True)   # what `run` calls: says it, and caps epochs by max_train_minutes
"""

from __future__ import annotations

import math
import random
import time

from .device import has_cuda, machine
from ..score.probes import PROBE_MAX_NEW_TOKENS, RETENTION_PROBES

GENERATION_BATCH = 16  # chat.answer_batch's default


def padded_tokens(lengths: list[int], batch: int, grouped: bool, seed: int = 0) -> int:
    """Tokens the steps of one epoch process, padding included: each batch is padded to its longest row.
    Grouped by length (Trainer's group_by_length), rows are sorted within mega-batches of 50 batches."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    if grouped:
        mega = 50 * batch
        order = [x for i in range(0, len(order), mega) for x in sorted(order[i:i + mega], reverse=True)]
    return sum(batch * max(order[i:i + batch]) for i in range(0, len(order), batch))


def measure(model, tokenizer, rows: list[list[int]], batch: int) -> dict:
    """Seconds for one forward + backward pass of a batch of median-length rows (per padded token), and
    for one greedy decoding step of a generation batch."""
    import torch

    from ..model.generate import inference_mode
    from ..model.load import for_inference, for_training

    device = next(model.parameters()).device
    median = sorted(map(len, rows))[len(rows) // 2]
    for_training(model)
    model.train()
    per_token = []
    rng = random.Random(0)
    # The first two passes pay one-off costs (on 2 CPU cores 1.8x and 2.7x a steady pass: kernels chosen, memory
    # mapped); the fastest of the next three is the steady state, which a training step of the same rows matched
    # (0.0016 s a token on 2 cores, against 0.0028 when the second pass was counted).
    for i in range(5):
        picked = rng.sample(list(rows), min(batch, len(rows)))
        ids = torch.tensor([list(r[:median]) + [tokenizer.pad_token_id] * (median - len(r[:median])) for r in picked],
                           device=device)
        started = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            per_token.append((time.perf_counter() - started) / ids.numel())
    model.zero_grad(set_to_none=True)
    train_per_token = min(per_token)
    for_inference(model)
    prompt = torch.tensor([rows[0][:32]] * GENERATION_BATCH, device=device)
    new = 8
    with inference_mode(model):
        model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
        started = time.perf_counter()
        model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                       min_new_tokens=new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        decode_step = (time.perf_counter() - started) / new
    for_training(model)
    return {"train_seconds_per_token": train_per_token, "decode_step_seconds": decode_step}


def plan(cfg, timing: dict, train_lengths: list[int], eval_questions: int, general_questions: int, export: bool,
         probes: tuple[int, int] = (0, 0), packed: bool | None = None, epochs: float | None = None) -> dict:
    """Seconds per stage: training, the probes at its evaluations (probes: the knowledge and the retention
    probes asked at each one), the merged export, base and tuned scoring. packed: whether steps are packed rows
    (default: as training will run here, sft_config.packed)."""
    from ..train.args import packed as packs

    packed = packs(cfg) if packed is None else packed
    epochs = cfg.num_train_epochs if epochs is None else epochs
    batch = cfg.per_device_train_batch_size
    tokens = (sum(train_lengths) if packed else padded_tokens(train_lengths, batch, grouped=True))
    steps = math.ceil(epochs * (math.ceil(sum(train_lengths) / (batch * cfg.max_seq_length)) if packed
                                             else math.ceil(len(train_lengths) / batch)))
    # a batch of greedy answers: most stop at their end-of-turn token well before the cap; measured on 2 CPU
    # cores, the eval sets' answers took 0.45 of the time of running every one to max_new_tokens
    per_generation = 0.5 * timing["decode_step_seconds"] * cfg.max_new_tokens
    batches = lambda n: math.ceil(n / GENERATION_BATCH)  # noqa: E731
    evaluations = math.ceil(epochs * cfg.evals_per_epoch)  # and one before training, below
    # One generate call per evaluation for the knowledge and retention probes together, each about as long as a
    # decoding batch of 16 per 40 rows (2 CPU cores: 3 calls of up to 40 probes took 9.5 s, against 8.0 s so
    # sized); the one before training asks the knowledge probes alone (none once their base answers are cached).
    knowledge, retention = probes
    calls = lambda n: max(1.0, n / 40) if n else 0  # noqa: E731
    probe_generation = timing["decode_step_seconds"] * min(cfg.max_new_tokens, PROBE_MAX_NEW_TOKENS)
    return {
        "steps": steps,
        "training": epochs * tokens * timing["train_seconds_per_token"],
        "probes": (calls(knowledge) + evaluations * calls(knowledge + retention)) * probe_generation,
        "export": 30.0 if export else 0.0,  # two model loads in fresh processes; measured 15-40 s on 2 cores
        "scoring": 2 * (batches(eval_questions) + batches(general_questions)) * per_generation,
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


def stage_counts(cfg, data, export: bool) -> dict:
    """The counts plan() sizes the stages by, for a training call on `data` (train/inputs.TrainingData)."""
    from ..score.questions import load_questions

    general = len(load_questions(cfg.general_questions)) if cfg.general_questions else 0
    prepared = data.prepared
    return {"train_lengths": [len(r) for r in data.train["input_ids"]],
            "eval_questions": len(load_questions(cfg.eval_questions)), "general_questions": general,
            "export": export,
            "probes": (len(prepared.probes), RETENTION_PROBES) if prepared.objective == "knowledge" else (0, 0)}


def epochs_that_fit(cfg, epochs: float, timing: dict, counts: dict) -> float | None:
    """The share of `epochs` that fits max_train_minutes on this machine (planned at 90 % of the cap, which
    counts the evaluations inside the call too), or None when they all fit or there is no cap."""
    budget = 0.9 * 60 * cfg.max_train_minutes
    stages = plan(cfg, timing, **counts, epochs=epochs)
    in_call = stages["training"] + stages["probes"]
    if not budget or in_call <= budget:
        return None
    return max(0.1, int(10 * epochs * budget / in_call) / 10)


def fit_time(ft, cfg, export: bool, progress=print, elapsed: float = 0.0) -> float:
    """Say what the rest of the run will take, timed on this machine (a forward and backward pass and a
    generation step over the training rows as they will be trained): the stages left, after `elapsed` seconds
    already spent (loading, preparing, augmenting), with the epochs the time cap leaves. Returns those epochs."""
    data = ft.training_data(cfg)  # tokenised once: the training call reuses them
    counts = stage_counts(cfg, data, export)
    epochs = epochs_within_cap(ft, cfg, cfg.num_train_epochs, say=False) or cfg.num_train_epochs
    stages = plan(cfg, ft.timing(cfg), **counts, epochs=epochs)
    progress(describe_plan(cfg, stages, len(counts["train_lengths"]), ft.model_path, elapsed, epochs))
    return epochs


def epochs_within_cap(session, cfg, epochs: float, say: bool = True) -> float | None:
    """The share of `epochs` a training call of `session` (train/session.FineTune) can train within
    max_train_minutes on this machine (None: all fit, or no cap), said up front: the progress bar then counts
    the steps the call will take, and the cap still stops a call that runs long."""
    if not cfg.max_train_minutes:
        return None
    fit = epochs_that_fit(cfg, epochs, session.timing(cfg), stage_counts(cfg, session.training_data(cfg), False))
    if fit is not None and say:
        session.progress(f"Training {fit:g} of the {epochs:g} epochs asked: that many fit the max_train_minutes = "
                         f"{cfg.max_train_minutes:g} cap on this machine (the panel's max train minutes, or "
                         f"--max-train-minutes; 0 for no cap).")
    return fit
