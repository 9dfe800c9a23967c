"""What a version records: its manifest (the base model, the config of the call, the data, the losses and
probe scores, the time and memory, the packages) and the line a training call ends with."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

from ..config import config_dict
from ..machine.device import device_name, peak_memory_gib, precision
from ..machine.runtime import installed_version
from ..model.templates import TEMPLATE_NOTE

PACKAGES = ("unslothify", "unsloth", "unsloth_zoo", "torch", "transformers", "trl", "peft", "datasets",
            "accelerate", "bitsandbytes", "xformers")


def package_versions() -> dict:
    out = {name: v for name in PACKAGES if (v := installed_version(name)) is not None}
    out["python"] = platform.python_version()
    return out


def version_manifest(session, cfg, call, record, data, epochs_before: float) -> dict:
    """The manifest of the version a training call is about to save: `session` (train/session.FineTune) with
    the call's history added, the call's config and facts (train/args.Call), what the call did (CallRecord) and
    the data it trained on (TrainingData)."""
    history = session.history
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    probed = [h for h in history if "probe_recall" in h]
    peak, peak_kind = peak_memory_gib()
    epochs_trained = max((h["epoch"] for h in record.history), default=epochs_before) - epochs_before
    prepared = data.prepared
    return {
        "base_model": cfg.model,
        "base_model_path": session.model_path,
        "base_model_revision": _revision(session.model),
        "chat_template": getattr(session.tokenizer, TEMPLATE_NOTE, None),  # which template, and why
        "parent": session.parent,
        "config": config_dict(cfg),
        "data_file": str(cfg.data),
        "data_sha256": prepared.report.get("data_sha256"),  # prepared/ matched the data when this call began
        "data_items": prepared.report.get("items", prepared.report.get("lines_read")),
        "train_items": len(data.items),
        "validation_items": len(prepared.validation),
        "epochs_this_call": call.epochs,  # asked: num_train_epochs, more_epochs, or those within the time cap
        "seed_this_call": call.seed,  # the knob's seed plus the steps before this call
        "epochs_trained": round(epochs_trained, 4),  # fewer than asked when the time cap stopped the call
        "stopped_at_time_cap": record.stopped_at_cap,
        "cumulative_epochs": round(session.cumulative_epochs, 4),
        "cumulative_steps": session.cumulative_steps,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_eval_loss": eval_losses[-1] if eval_losses else None,
        "objective": prepared.objective,
        "probe_items": len(data.probes),
        "trained_facts": data.trained_lines,  # the facts' source lines where the call trained some of them
        "data_facts": len(prepared.train),
        "retention_probes": len(session.retention_probes or []),
        "retention_weight": cfg.retention_weight,
        "base_probe_recall": probed[0]["probe_recall"] if probed and probed[0]["step"] == 0 else None,
        "final_probe_recall": probed[-1]["probe_recall"] if probed else None,
        "final_probe_retention": probed[-1].get("probe_retention") if probed else None,
        "probe_seconds": round(sum(h.get("probe_seconds", 0) for h in record.history), 2),
        "train_seconds": round(record.seconds, 2),
        "epoch_seconds": record.epoch_seconds,
        "seconds_per_epoch": round(record.seconds / epochs_trained, 2) if epochs_trained else None,
        "peak_memory_gib": round(peak, 3),
        "peak_memory_kind": peak_kind,
        "device": device_name(),
        "precision": precision(),
        "packages": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def saved_line(m: dict) -> str:
    """'1.5 epochs, train loss ..., probe recall ...' for the Saved line of a training call."""
    probes = ""
    if m["final_probe_recall"] is not None:
        base = m["base_probe_recall"]
        probes = (f", probe recall {m['final_probe_recall']:.2f}" + (f" (base {base:.2f})" if base is not None else "")
                  + (f", retention {m['final_probe_retention']:.2f}" if m["final_probe_retention"] is not None else "")
                  + f" (the probes took {m['probe_seconds']:.0f} s, "
                    f"{m['probe_seconds'] / max(m['train_seconds'], 1e-9):.0%} of this call)")
    capped = " (stopped at the max_train_minutes cap)" if m["stopped_at_time_cap"] else ""
    per_epoch = f", {m['seconds_per_epoch']:.1f} s per epoch" if m["seconds_per_epoch"] else ""
    return (f"{m['epochs_trained']:g} epochs this call{capped}, {m['cumulative_epochs']:g} in all, train loss "
            f"{_fmt(m['final_train_loss'])}, validation loss {_fmt(m['final_eval_loss'])}{probes}, "
            f"{m['train_seconds']:.0f} s{per_epoch}, peak memory {m['peak_memory_gib']:.2f} GiB "
            f"({m['peak_memory_kind']}).")


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def _revision(model) -> str | None:
    base = getattr(model, "get_base_model", lambda: model)()
    return getattr(getattr(base, "config", None), "_commit_hash", None)
