"""Regenerates the README's generated sections (knob table, bad-input table) from the code.

    python scripts/update_readme.py          # rewrite README.md
    python scripts/update_readme.py --check  # exit 1 if README.md is out of date (tests use this)
"""

import dataclasses
import io
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def knob_table() -> str:
    from unslothify.config import EMBEDDED_RECIPE, AugmentConfig, knob_fields
    from unslothify.knobs import describe

    rows = ["| knob | default | allowed | what it does |", "|---|---|---|---|"]
    for f in knob_fields():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, list):
            default = ", ".join(default)
        cpu = f" (embedded model: `{EMBEDDED_RECIPE[f.name]}`)" if f.name in EMBEDDED_RECIPE else ""
        help_text = f.metadata["help"] + (f" *Overfitting: {f.metadata['overfit']}.*" if f.metadata.get("overfit") else "")
        rows.append(f"| `{f.name}` | `{default}`{cpu} | {describe(f)} | {help_text} |")
    for f in dataclasses.fields(AugmentConfig):
        rows.append(f"| `augment.{f.name}` | `{f.default}` | {describe(f)} | {f.metadata['help']} |")
    return "\n".join(rows)


def bad_input_table() -> str:
    import bad_input_report

    out = io.StringIO()
    with redirect_stdout(out):
        bad_input_report.main()
    return out.getvalue().strip()


def colab_table() -> str:
    """An "Open in Colab" badge per notebook, from the repository URL the notebooks clone."""
    from unslothify.runtime import REPO_URL

    repo = REPO_URL.removeprefix("https://github.com/")
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    rows = ["| notebook | open |", "|---|---|"]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        url = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{nb.name}"
        rows.append(f"| `{nb.stem}` | [![Open In Colab]({badge})]({url}) |")
    return "\n".join(rows)


SECTIONS = {"knobs": knob_table, "bad-input": bad_input_table, "colab": colab_table}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    readme = ROOT / "README.md"
    current = readme.read_text(encoding="utf-8")
    new = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if new == current else 1)
    readme.write_text(new, encoding="utf-8")
