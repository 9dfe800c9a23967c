"""Figures a user would rather look at than read: token lengths, loss curves, recall bars."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:
        return False


def length_histogram(lengths: list[int], max_seq_length: int, path: str | Path | None = None, title: str = ""):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#3a7ca5", edgecolor="white")
    ax.axvline(max_seq_length, color="#c0392b", linestyle="--", label=f"max_seq_length = {max_seq_length}")
    ax.set_xlabel("tokens per item (chat template included)")
    ax.set_ylabel("items")
    ax.set_title(title or f"Token lengths of {len(lengths)} items")
    ax.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def loss_curves(history: list[dict], path: str | Path | None = None, title: str = "Loss", versions=None):
    """Train and validation loss against cumulative epochs, saved versions as dotted lines; under the knowledge
    objective a second panel beside it, on the same epoch axis: probe recall and retention."""
    plt = _plt()
    probed = [h for h in history if "probe_recall" in h]
    if probed:
        fig, (ax, kx) = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
    else:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        kx = None
    train = [(h["epoch"], h["loss"]) for h in history if "loss" in h]
    val = [(h["epoch"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train), color="#3a7ca5", alpha=0.25, linewidth=1, label="train (each step)")
        ax.plot(*zip(*smoothed(train)), color="#3a7ca5", label="train (smoothed)")
    if val:
        ax.plot(*zip(*val), "o-", color="#e67e22", label="validation" + (" (the probes' answers)" if probed else ""))
    ax.set_xlabel("epoch (cumulative)")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if train or val:
        ax.legend(fontsize=8)
    if kx is not None:
        from ..runs import RETENTION_FLOOR

        _with_band(kx, probed, "probe_recall", "probe_n", 40, "o-", "#27ae60", "recall (knowledge probes)")
        kept = [h for h in probed if "probe_retention" in h]
        if kept:
            _with_band(kx, kept, "probe_retention", "retention_n", 48, "s--", "#8e44ad",
                       "retention (share of the base's answers)")
            kx.axhline(RETENTION_FLOOR, color="#8e44ad", linestyle=":", linewidth=1)
        kx.set_ylim(-0.02, 1.05)
        kx.set_xlabel("epoch (cumulative)")
        kx.set_ylabel("share answered")
        kx.set_title("What the model knows")
        kx.legend(fontsize=8, loc="best")
    for axis in (ax, kx) if kx is not None else (ax,):
        for name, epoch in versions or []:
            axis.axvline(epoch, color="grey", linestyle=":", linewidth=1)
            axis.text(epoch, axis.get_ylim()[1], name, fontsize=7, ha="right", va="top", rotation=90, color="grey")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def _with_band(ax, points: list[dict], key: str, n_key: str, n_default: int, style: str, color: str, label: str):
    """A share against epochs, with a band of one standard error (40 probes at 0.5: +-0.08): differences
    inside the band are the probes' noise, not the model's."""
    from ..score.probes import standard_error

    xs = [h["epoch"] for h in points]
    ys = [h[key] for h in points]
    errors = [standard_error(y, int(h.get(n_key) or n_default)) for h, y in zip(points, ys)]
    ax.plot(xs, ys, style, color=color, label=f"{label}, +-1 s.e.")
    ax.fill_between(xs, [y - e for y, e in zip(ys, errors)], [y + e for y, e in zip(ys, errors)], color=color,
                    alpha=0.15, linewidth=0)


def smoothed(points: list[tuple[float, float]], span: int = 10) -> list[tuple[float, float]]:
    """An exponential moving average (as TensorBoard's smoothing): per-step losses of small batches jump."""
    alpha = 2 / (span + 1)
    out, avg = [], None
    for x, y in points:
        avg = y if avg is None else alpha * y + (1 - alpha) * avg
        out.append((x, avg))
    return out


def recall_bars(scores: dict[str, dict[str, float]], path: str | Path | None = None, title: str = "Recall"):
    """scores: {'base': {'held-out': 0.1, ...}, 'tuned': {...}}."""
    plt = _plt()
    groups = list(next(iter(scores.values())).keys())
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.2))
    width = 0.8 / len(scores)
    colors = ["#95a5a6", "#27ae60", "#3a7ca5", "#8e44ad"]
    for i, (label, vals) in enumerate(scores.items()):
        xs = [g + i * width for g in range(len(groups))]
        bars = ax.bar(xs, [vals[g] for g in groups], width, label=label, color=colors[i % len(colors)])
        for b, v in zip(bars, [vals[g] for g in groups]):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_xticks([g + width * (len(scores) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("recall")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


class LiveFigure:
    """A figure that redraws in place in a notebook output (no-op outside one)."""

    def __init__(self):
        self.handle = None

    def update(self, fig):
        plt = _plt()
        if _in_notebook():
            from IPython.display import display

            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)
        plt.close(fig)
