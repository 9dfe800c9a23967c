"""The run folder: what a user would hate to lose lives here, in files, with versions.

    runs/<name>/
      config.yaml             the config of the latest training call
      prepared/               train.jsonl, validation.jsonl, report.json, lengths.png (from `prepare`)
      v001/, v002/, ...       adapter versions: adapter weights + tokenizer + manifest.json + history.json
      checkpoints/            resumable Trainer checkpoints left by an interrupted training call
      exports/                adapter/, merged/, gguf/
      eval/                   eval results (JSON)

A version folder is written under a temporary name and renamed when complete, and never overwritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import StepMissing

VERSION_RE = re.compile(r"^v(\d{3,})$")


@dataclass
class Version:
    number: int
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def eval_loss(self) -> float | None:
        return self.manifest.get("final_eval_loss")

    @property
    def probe_recall(self) -> float | None:
        return self.manifest.get("final_probe_recall")

    @property
    def probe_retention(self) -> float | None:
        return self.manifest.get("final_probe_retention")

    def history(self) -> list[dict]:
        f = self.path / "history.json"
        return json.loads(f.read_text()) if f.exists() else []


def adapter_base(folder: str | Path) -> str | None:
    """The base model a saved adapter (a version folder) names in its adapter_config.json; None where the
    folder holds no adapter."""
    config = Path(folder) / "adapter_config.json"
    return json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path") if config.is_file() else None


class Run:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def interrupted(self) -> dict | None:
        """What an interrupted training call left in checkpoints/ (checkpoint, step, config, history), or None."""
        marker = self.checkpoints / "interrupted.json"
        return json.loads(marker.read_text()) if marker.exists() else None

    def versions(self) -> list[Version]:
        if not self.root.exists():
            return []
        out = []
        for p in self.root.iterdir():
            m = VERSION_RE.match(p.name)
            manifest = p / "manifest.json"
            if m and p.is_dir() and manifest.exists():  # a folder without its manifest is not a version
                out.append(Version(int(m.group(1)), p, json.loads(manifest.read_text())))
        return sorted(out, key=lambda v: v.number)

    def next_version_path(self) -> Path:
        taken = [int(m.group(1)) for p in (self.root.iterdir() if self.root.exists() else [])
                 if (m := VERSION_RE.match(p.name))]
        return self.root / f"v{max(taken, default=0) + 1:03d}"

    def version(self, which: int | str | None = None) -> Version:
        """A version by number (3, 'v003', '3'), 'latest' / None, or 'best' (best_version: by the probes under
        the knowledge objective, else the lowest validation loss)."""
        versions = self.versions()
        if not versions:
            raise StepMissing(f"{self.root}: no adapter versions yet. Train one first: notebook 02_train, or "
                              f"`python -m unslothify train`.")
        if which in (None, "latest"):
            return versions[-1]
        if which == "best":
            return best_version(versions)
        n = int(str(which).lstrip("v"))
        for v in versions:
            if v.number == n:
                return v
        raise StepMissing(f"{self.root}: no version v{n:03d}; there are {', '.join(v.name for v in versions)}.")


# Under the knowledge objective a version is eligible for "best" while it answers at least this share of the
# general questions the base model answered (trainer.RETENTION_FLOOR names the same floor for the warnings).
RETENTION_FLOOR = 0.9


def retention_noise(probes: int | None) -> float:
    """Two standard errors of the difference between two versions' retention on the same `probes` questions
    (at a retention of 0.7, where the embedded model sits): differences smaller than this are noise. With the
    embedded model's 31 retention probes, 0.23. On the H200 lever runs (docs/probes.md) retention fell to
    0.55-0.77 in the first epoch and then wandered within this band while recall rose from 0.2 to 1.0."""
    n = max(1, probes or 30)
    return round(2 * (2 * 0.7 * 0.3 / n) ** 0.5, 2)


def choose_best(candidates: list[tuple[float, float | None]], probes: int | None = None) -> int:
    """The index of the best of (probe recall, probe retention) pairs, in saving order: the highest recall
    among those keeping retention >= RETENTION_FLOOR (ties: more retention, then the later one). When none
    keeps it, the highest recall among those whose retention is within the measurement's noise of the one
    that kept most: ranking by the noise alone picked early, half-trained versions (docs/probes.md)."""
    retention = [1.0 if r is None else r for _, r in candidates]
    kept = [i for i, r in enumerate(retention) if r >= RETENTION_FLOOR]
    if not kept:
        top = max(retention)
        kept = [i for i, r in enumerate(retention) if r >= top - retention_noise(probes) - 1e-9]
    return max(kept, key=lambda i: (candidates[i][0], retention[i], i))


def best_version(versions: list[Version]) -> Version:
    """Knowledge objective (versions with probe scores): choose_best over their final probe scores. Otherwise
    (skill): the lowest validation loss. No scores: the latest."""
    probed = [v for v in versions if v.probe_recall is not None]
    if probed:
        probes = max((v.manifest.get("retention_probes") or 0 for v in probed), default=0) or None
        return probed[choose_best([(v.probe_recall, v.probe_retention) for v in probed], probes)]
    scored = [v for v in versions if v.eval_loss is not None]
    return min(scored, key=lambda v: (v.eval_loss, -v.number)) if scored else versions[-1]


def best_rule(versions: list[Version]) -> str:
    """What `best` means for these versions, in one line."""
    if any(v.probe_recall is not None for v in versions):
        return (f"highest probe recall among versions keeping retention >= {RETENTION_FLOOR:.0%} of the base "
                f"model's (when none does: among those within the measurement's noise of the one that kept most)")
    return "lowest validation loss"


def versions_table(run: Run) -> list[dict]:
    """One row per version with its metrics (recall and retention: the probes', objective knowledge); the best
    version (best_version) is marked."""
    versions = run.versions()
    if not versions:
        return []
    best = best_version(versions).number
    rows = []
    for v in versions:
        m = v.manifest
        rows.append({
            "version": v.name,
            "best": "*" if v.number == best else "",
            "parent": m.get("parent") or "",
            "epochs": m.get("cumulative_epochs"),
            "steps": m.get("cumulative_steps"),
            "train_loss": m.get("final_train_loss"),
            "eval_loss": m.get("final_eval_loss"),
            "recall": m.get("final_probe_recall"),
            "retention": m.get("final_probe_retention"),
            "seconds": m.get("train_seconds"),
            "peak_mem_gib": m.get("peak_memory_gib"),
            "created": m.get("created"),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no versions)"
    cols = list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    widths = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(fmt(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
