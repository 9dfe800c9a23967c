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

    def history(self) -> list[dict]:
        f = self.path / "history.json"
        return json.loads(f.read_text()) if f.exists() else []


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
        """A version by number (3, 'v003', '3'), 'latest' / None, or 'best' (lowest validation loss)."""
        versions = self.versions()
        if not versions:
            raise FileNotFoundError(f"{self.root}: no adapter versions yet; train first.")
        if which in (None, "latest"):
            return versions[-1]
        if which == "best":
            return best_version(versions)
        n = int(str(which).lstrip("v"))
        for v in versions:
            if v.number == n:
                return v
        raise FileNotFoundError(f"{self.root}: no version v{n:03d}; there are "
                                f"{', '.join(v.name for v in versions)}.")


def best_version(versions: list[Version]) -> Version:
    scored = [v for v in versions if v.eval_loss is not None]
    return min(scored, key=lambda v: (v.eval_loss, -v.number)) if scored else versions[-1]


def versions_table(run: Run) -> list[dict]:
    """One row per version with its metrics; the best by validation loss is marked."""
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
