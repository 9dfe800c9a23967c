"""Helpers that keep notebook cells short: setup, tables, the live plot."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config, load_config, recipe_of
from ..model.choice import resolve_model_name


def start(project_dir: str = "..", config_path: str = "config.yaml", overrides: dict | None = None) -> Config:
    """Work from the project folder (paths in the config are relative to it), show our errors as messages, and
    load the config."""
    os.chdir(project_dir)
    show_errors_as_messages()
    path = config_path if config_path and Path(config_path).exists() else None
    cfg = load_config(path, **(overrides or {}))
    name, reason = resolve_model_name(cfg.model)
    recipe, why = recipe_of(cfg)
    print(f"Project: {Path.cwd()}\nConfig: {path or 'no config.yaml'}{' + overrides' if overrides else ''} over recipe "
          f"{recipe or 'none'} ({why}); model: {name} ({reason}); run folder: {cfg.output_dir}")
    return cfg


def user_errors() -> tuple:
    """The errors a user acts on from their message alone: bad data or knobs, a step not run yet, something to
    install, an export that failed its check, a GPU out of memory."""
    from ..data.items import DataError
    from ..errors import ExportError, OutOfMemory, SetupError, StepMissing
    from ..knobs import ConfigError

    return DataError, ConfigError, ExportError, SetupError, StepMissing, OutOfMemory


def show_errors_as_messages():
    """In a notebook, a user error shows as its message (what is wrong, where, what to do) instead of a
    traceback through our internals; `%tb` still prints the whole traceback. Other errors are untouched."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def as_message(shell, etype, value, tb, tb_offset=None):
        # The exception alone, through IPython's own call, which adds that `%tb` prints the whole traceback: the
        # cell fails with an error output (Run All stops there, as for any error).
        shell.showtraceback((etype, value, tb), exception_only=True)

    shell.set_custom_exc(user_errors(), as_message)


def _html_table(rows: list[dict], max_chars: int = 160) -> str:
    import html

    if not rows:
        return "<i>(empty)</i>"
    cols = list(rows[0])
    head = "".join(f"<th style='text-align:left'>{html.escape(str(c))}</th>" for c in cols)

    def cell(v):
        s = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
        s = s if len(s) <= max_chars else s[:max_chars] + " ..."
        return f"<td style='text-align:left;vertical-align:top'>{html.escape(s)}</td>"

    body = "".join("<tr>" + "".join(cell(r[c]) for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(rows: list[dict], max_chars: int = 160):
    from IPython.display import HTML

    return HTML(_html_table(rows, max_chars))


def sample_rows(items, n: int = 5) -> list[dict]:
    rows = []
    for item in items[:n]:
        if item.messages is not None:
            user = next(m["content"] for m in item.messages if m["role"] == "user")
            answer = item.messages[-1]["content"]
        else:
            user, answer = "", item.text
        rows.append({"line": item.source_line or item.line, "kind": item.kind, "prompt": user, "answer": answer})
    return rows


def versions(run_dir: str | Path):
    from ..runs import Run, versions_table

    return table(versions_table(Run(run_dir)))


class LossPlot:
    """Train/validation loss that redraws in place while training runs, on the cumulative epoch axis."""

    def __init__(self, session):
        from .plots import LiveFigure

        self.session = session
        self.figure = LiveFigure()

    def start(self):
        """A new figure for a new training call; the previous call's figure stays where it was drawn."""
        from .plots import LiveFigure

        self.figure = LiveFigure()

    def __call__(self, history):
        from .plots import loss_curves

        marks = [(v.name, v.manifest.get("cumulative_epochs", 0)) for v in self.session.run.versions()]
        self.figure.update(loss_curves(history, title=f"Loss, run {self.session.run.root.name}", versions=marks))


def comparison_rows(details: list[dict]) -> list[dict]:
    return [{"question": d["question"], "expected": " | ".join(d["expected"]), "base": d["base_answer"],
             "base ok": "yes" if d["base_recalled"] else "", "tuned": d["answer"],
             "tuned ok": "yes" if d["recalled"] else ""} for d in details]
