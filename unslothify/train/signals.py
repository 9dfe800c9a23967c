"""What the history says in plain words: overfitting (validation loss), forgetting and stalled recall (the probes)."""

from __future__ import annotations

from ..score.probes import RETENTION_PROBES, standard_error
from ..runs import RETENTION_FLOOR  # "best" and the warnings read retention against one floor


def overfitting_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """Plain words when validation loss has risen at the last two evaluations while training loss fell."""
    evals = [h for h in history if "eval_loss" in h]
    if len(evals) < 3:
        return None
    a, b, c = (e["eval_loss"] for e in evals[-3:])
    if not (c > b > a):
        return None
    lo, hi = evals[-3]["step"], evals[-1]["step"]
    train = [h["loss"] for h in history if "loss" in h and lo <= h["step"] <= hi]
    if len(train) < 2 or not (sum(train[-3:]) / len(train[-3:]) < sum(train[:3]) / len(train[:3])):
        return None
    where = f" or go back to {best_version_name} (lowest validation loss)" if best_version_name else ""
    return (f"Overfitting: validation loss rose from {a:.3f} to {c:.3f} over the last evaluations while training "
            f"loss kept falling, so the adapter is memorising the training items rather than learning what "
            f"generalises. Train fewer epochs, lower learning_rate, lower lora_r / lora_alpha, or raise "
            f"lora_dropout / weight_decay{where}.")


def knowledge_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """Plain words when the probes say training has stopped helping: retention fell under the floor by more
    than its standard error (one miss in 48 questions is noise, not forgetting), or recall stalled over the last two evaluations while training loss kept falling."""
    evals = [h for h in history if "probe_recall" in h]
    if len(evals) < 2:
        return None
    back = f" Or go back to {best_version_name} (the best version so far)." if best_version_name else ""
    last, before = evals[-1], evals[:-1]
    kept = [e["probe_retention"] for e in before if "probe_retention" in e]
    if "probe_retention" in last and kept and max(kept) >= RETENTION_FLOOR:
        retention, n = last["probe_retention"], int(last.get("retention_n") or RETENTION_PROBES)
        error = standard_error(retention, n)
        if retention + error < RETENTION_FLOOR:  # under the floor by more than the measurement's noise
            return (f"Forgetting: the model now answers {retention:.0%} (+-{error:.0%}) of the {n} general questions "
                    f"the base model answers (it was {kept[-1]:.0%}), under the {RETENTION_FLOOR:.0%} floor. Lower "
                    f"learning_rate or the epochs, use the version at a lower adapter_scale (it keeps more of the "
                    f"world and less of the facts), or bring augment.replay up to 80 if it is lower (more rows kept "
                    f"no more on a GPU). docs/augmentation.md has the measured trade of each." + back)
    if len(evals) < 3:
        return None
    lo, hi = evals[-3]["step"], evals[-1]["step"]
    train = [h["loss"] for h in history if "loss" in h and lo <= h["step"] <= hi]
    stalled = max(e["probe_recall"] for e in evals[-2:]) <= evals[-3]["probe_recall"]
    if stalled and len(train) >= 2 and sum(train[-3:]) / len(train[-3:]) < sum(train[:3]) / len(train[:3]):
        return (f"Recall has stalled: the probes are answered at {evals[-1]['probe_recall']:.0%}, no better than "
                f"{evals[-3]['probe_recall']:.0%} two evaluations ago, while training loss kept falling. More epochs "
                f"now memorise the training wording rather than teach the facts: stop here, or teach them in more "
                f"words (augment.rephrasings)." + back)
    return None


def steering_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """The warning for this history: by the probes under the knowledge objective, else by validation loss."""
    if any("probe_recall" in h for h in history):
        return knowledge_message(history, best_version_name)
    return overfitting_message(history, best_version_name)
